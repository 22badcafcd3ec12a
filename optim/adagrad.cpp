// Adagrad (equations in include/tapegrad/optim/adagrad.hpp).
#include "tapegrad/optim/adagrad.hpp"

#include <cmath>

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

// The rate that multiplied d_t in the last update(): lr_t / (sqrt(s_t) + eps), lr_t = lr / (1 + (t - 1) lr_decay).
Tensor Adagrad::effective_lr(size_t i) const {
  Optimizer::effective_lr(i);  // checks the index
  if (steps(i) == 0) return {};
  const double clr = lr() / (1 + static_cast<double>(steps(i) - 1) * options_.lr_decay);
  std::vector<double> rate = sum_[i].to_vector<double>();
  for (double& v : rate) v = clr / (std::sqrt(v) + options_.eps);
  return from_vector(rate, sum_[i].shape());
}

std::vector<LrStats> Adagrad::lr_telemetry() const {
  std::vector<LrStats> out;
  for (size_t i = 0; i < params().size(); ++i) {
    if (steps(i) == 0) continue;
    LrStats s;
    s.param = i;
    s.step = steps(i);
    s.lr = lr_quantiles(effective_lr(i).to_vector<double>());
    out.push_back(s);
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> Adagrad::hparams() const {
  return {{"lr_decay", format_number(options_.lr_decay)},
          {"weight_decay", format_number(options_.weight_decay)},
          {"initial_accumulator_value", format_number(options_.initial_accumulator_value)},
          {"eps", format_number(options_.eps)}};
}

}  // namespace tapegrad::optim
