// SGD with momentum (equations in include/tapegrad/optim/sgd.hpp).
#include "tapegrad/optim/sgd.hpp"

#include "../src/backend.hpp"

namespace tapegrad::optim {
namespace {

// The kernel's scalars for one step of a group.
backend::SgdScalars scalars(const SGDOptions& o, double lr, int64_t step) {
  backend::SgdScalars s;
  s.lr = lr;
  s.momentum = o.momentum;
  s.dampening = o.dampening;
  s.weight_decay = o.weight_decay;
  s.nesterov = o.nesterov;
  s.first_step = step == 1;
  return s;
}

}  // namespace

SGD::SGD(std::vector<Tensor> params, double lr, SGDOptions options)
    : Optimizer("sgd", std::move(params), lr), options_{options}, momentum_buffer_(this->params().size()) {
  check(options);
}

void SGD::add_param_group(std::vector<Tensor> params, double lr, SGDOptions options, std::string name) {
  check(options);
  add_group(std::move(params), lr, std::move(name));
  options_.push_back(options);
  momentum_buffer_.resize(this->params().size());
}

void SGD::check(const SGDOptions& o) const {
  check_nonnegative("momentum", o.momentum);
  check_nonnegative("dampening", o.dampening);
  check_nonnegative("weight_decay", o.weight_decay);
  TG_CHECK(!o.nesterov || (o.momentum > 0 && o.dampening == 0),
           "sgd: nesterov = true requires momentum > 0 and dampening = 0 (got momentum = ", format_number(o.momentum),
           ", dampening = ", format_number(o.dampening), ")");
}

void SGD::init_state(size_t i, const Tensor& p) {
  if (options_[group_of(i)].momentum != 0) momentum_buffer_[i] = zeros_like(p);
}

std::vector<std::pair<std::string, Tensor>> SGD::state_tensors(size_t i) const {
  if (options_[group_of(i)].momentum == 0) return {};
  return {{"momentum_buffer", momentum_buffer_[i]}};
}

void SGD::update(size_t group, const std::vector<size_t>& index, const std::vector<Tensor>& grads, int64_t step) {
  const SGDOptions& o = options_[group];
  std::vector<Tensor> p, buf;
  for (size_t i : index) {
    p.push_back(params()[i]);
    if (o.momentum != 0) buf.push_back(momentum_buffer_[i]);
  }
  backend::sgd_update(p, grads, buf, scalars(o, lr(group), step));
}

std::vector<std::pair<std::string, std::string>> SGD::hparams(size_t group) const {
  const SGDOptions& o = options_[group];
  return {{"momentum", format_number(o.momentum)},
          {"dampening", format_number(o.dampening)},
          {"nesterov", o.nesterov ? "true" : "false"},
          {"weight_decay", format_number(o.weight_decay)}};
}

}  // namespace tapegrad::optim
