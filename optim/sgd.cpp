// SGD with momentum (equations in include/tapegrad/optim/sgd.hpp).
#include "tapegrad/optim/sgd.hpp"

#include "../src/optim_kernels.hpp"

namespace tapegrad::optim {

SGD::SGD(std::vector<Tensor> params, double lr, SGDOptions options)
    : Optimizer("sgd", std::move(params), lr), options_(options), momentum_buffer_(this->params().size()) {
  check_nonnegative("momentum", options_.momentum);
  check_nonnegative("dampening", options_.dampening);
  check_nonnegative("weight_decay", options_.weight_decay);
  TG_CHECK(!options_.nesterov || (options_.momentum > 0 && options_.dampening == 0),
           "sgd: nesterov = true requires momentum > 0 and dampening = 0 (got momentum = ",
           format_number(options_.momentum), ", dampening = ", format_number(options_.dampening), ")");
}

void SGD::init_state(size_t i, const Tensor& p) {
  if (options_.momentum != 0) momentum_buffer_[i] = zeros_like(p);
}

std::vector<std::pair<std::string, Tensor>> SGD::state_tensors(size_t i) const {
  if (options_.momentum == 0) return {};
  return {{"momentum_buffer", momentum_buffer_[i]}};
}

void SGD::update(size_t i, Tensor& p, const Tensor& g, int64_t step) {
  backend::SgdScalars s;
  s.lr = lr();
  s.momentum = options_.momentum;
  s.dampening = options_.dampening;
  s.weight_decay = options_.weight_decay;
  s.nesterov = options_.nesterov;
  s.first_step = step == 1;
  backend::sgd_update(p, g, momentum_buffer_[i], s);
}

std::vector<std::pair<std::string, std::string>> SGD::hparams() const {
  return {{"momentum", format_number(options_.momentum)},
          {"dampening", format_number(options_.dampening)},
          {"nesterov", options_.nesterov ? "true" : "false"},
          {"weight_decay", format_number(options_.weight_decay)}};
}

}  // namespace tapegrad::optim
