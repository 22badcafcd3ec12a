// Adagrad (equations in include/tapegrad/optim/adagrad.hpp).
#include "tapegrad/optim/adagrad.hpp"

#include <cmath>

#include "../src/backend.hpp"

namespace tapegrad::optim {
namespace {

// The kernel's scalars for step t of a group; clr is also the numerator of effective_lr.
backend::AdagradScalars scalars(const AdagradOptions& o, double lr, int64_t step) {
  backend::AdagradScalars s;
  s.clr = lr / (1 + static_cast<double>(step - 1) * o.lr_decay);
  s.weight_decay = o.weight_decay;
  s.eps = o.eps;
  return s;
}

}  // namespace

Adagrad::Adagrad(std::vector<Tensor> params, double lr, AdagradOptions options)
    : Optimizer("adagrad", std::move(params), lr), options_{options}, sum_(this->params().size()) {
  check(options);
}

void Adagrad::add_param_group(std::vector<Tensor> params, double lr, AdagradOptions options, std::string name) {
  check(options);
  add_group(std::move(params), lr, std::move(name));
  options_.push_back(options);
  sum_.resize(this->params().size());
}

void Adagrad::check(const AdagradOptions& o) const {
  check_nonnegative("lr_decay", o.lr_decay);
  check_nonnegative("weight_decay", o.weight_decay);
  check_nonnegative("initial_accumulator_value", o.initial_accumulator_value);
  check_nonnegative("eps", o.eps);
}

void Adagrad::init_state(size_t i, const Tensor& p) {
  sum_[i] = full(p.shape(), options_[group_of(i)].initial_accumulator_value, {p.dtype(), p.device()});
}

std::vector<std::pair<std::string, Tensor>> Adagrad::state_tensors(size_t i) const { return {{"sum", sum_[i]}}; }

void Adagrad::update(size_t group, const std::vector<size_t>& index, const std::vector<Tensor>& grads,
                     int64_t step) {
  std::vector<Tensor> p, sum;
  for (size_t i : index) {
    p.push_back(params()[i]);
    sum.push_back(sum_[i]);
  }
  backend::adagrad_update(p, grads, sum, scalars(options_[group], lr(group), step));
}

// The rate that multiplied d_t in the last update(): lr_t / (sqrt(s_t) + eps), lr_t = lr / (1 + (t - 1) lr_decay).
Tensor Adagrad::effective_lr(size_t i) const {
  Optimizer::effective_lr(i);  // checks the index
  if (steps(i) == 0) return {};
  const size_t g = group_of(i);
  const backend::AdagradScalars s = scalars(options_[g], lr(g), steps(i));
  std::vector<double> rate = sum_[i].to_vector<double>();
  for (double& v : rate) v = s.clr / (std::sqrt(v) + s.eps);
  return from_vector(rate, sum_[i].shape());
}

std::vector<LrStats> Adagrad::lr_telemetry() const {
  std::vector<LrStats> out;
  for (size_t i = 0; i < params().size(); ++i) {
    if (steps(i) == 0) continue;
    LrStats s;
    s.param = i;
    s.group = group_of(i);
    s.step = steps(i);
    s.lr = lr_quantiles(effective_lr(i).to_vector<double>());
    out.push_back(s);
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> Adagrad::hparams(size_t group) const {
  const AdagradOptions& o = options_[group];
  return {{"lr_decay", format_number(o.lr_decay)},
          {"weight_decay", format_number(o.weight_decay)},
          {"initial_accumulator_value", format_number(o.initial_accumulator_value)},
          {"eps", format_number(o.eps)}};
}

}  // namespace tapegrad::optim
