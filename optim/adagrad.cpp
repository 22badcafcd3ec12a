// Adagrad (equations in include/tapegrad/optim/adagrad.hpp).
#include "tapegrad/optim/adagrad.hpp"

#include "../src/optim_kernels.hpp"

namespace tapegrad::optim {

Adagrad::Adagrad(std::vector<Tensor> params, double lr, AdagradOptions options)
    : Optimizer("adagrad", std::move(params), lr), options_(options), sum_(this->params().size()) {
  check_nonnegative("lr_decay", options_.lr_decay);
  check_nonnegative("weight_decay", options_.weight_decay);
  check_nonnegative("initial_accumulator_value", options_.initial_accumulator_value);
  check_nonnegative("eps", options_.eps);
}

void Adagrad::init_state(size_t i, const Tensor& p) {
  sum_[i] = full(p.shape(), options_.initial_accumulator_value, p.dtype());
}

std::vector<std::pair<std::string, Tensor>> Adagrad::state_tensors(size_t i) const { return {{"sum", sum_[i]}}; }

void Adagrad::update(size_t i, Tensor& p, const Tensor& g, int64_t step) {
  backend::AdagradScalars s;
  s.clr = lr() / (1 + static_cast<double>(step - 1) * options_.lr_decay);
  s.weight_decay = options_.weight_decay;
  s.eps = options_.eps;
  backend::adagrad_update(p, g, sum_[i], s);
}

std::vector<std::pair<std::string, std::string>> Adagrad::hparams() const {
  return {{"lr_decay", format_number(options_.lr_decay)},
          {"weight_decay", format_number(options_.weight_decay)},
          {"initial_accumulator_value", format_number(options_.initial_accumulator_value)},
          {"eps", format_number(options_.eps)}};
}

}  // namespace tapegrad::optim
