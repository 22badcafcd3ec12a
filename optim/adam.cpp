// Adam, AMSGrad, AdamW (equations in include/tapegrad/optim/adam.hpp).
#include "tapegrad/optim/adam.hpp"

#include <cmath>

#include "../src/backend.hpp"

namespace tapegrad::optim {
namespace {

// The kernel's scalars for step t of a group: the bias corrections, and AdamW's decay factor.
backend::AdamScalars scalars(const AdamOptions& o, bool decoupled, double lr, int64_t step) {
  const double t = static_cast<double>(step);
  backend::AdamScalars s;
  s.beta1 = o.betas[0];
  s.beta2 = o.betas[1];
  s.eps = o.eps;
  s.weight_decay = o.weight_decay;
  s.decoupled = decoupled;
  s.decay = 1 - lr * o.weight_decay;
  s.step_size = lr / (1 - std::pow(s.beta1, t));
  s.bias_correction2_sqrt = std::sqrt(1 - std::pow(s.beta2, t));
  return s;
}

AdamOptions plain(const AdamWOptions& o) { return {o.betas, o.eps, o.weight_decay, o.amsgrad}; }

}  // namespace

Adam::Adam(std::vector<Tensor> params, double lr, AdamOptions options) : Adam(std::move(params), lr, options, false) {}

Adam::Adam(std::vector<Tensor> params, double lr, AdamOptions options, bool decoupled)
    : Optimizer(decoupled ? "adamw" : options.amsgrad ? "amsgrad" : "adam", std::move(params), lr),
      options_{options},
      decoupled_(decoupled),
      state_(this->params().size()) {
  check(options);
}

void Adam::add_param_group(std::vector<Tensor> params, double lr, AdamOptions options, std::string name) {
  check(options);
  add_group(std::move(params), lr, std::move(name));
  options_.push_back(options);
  state_.resize(this->params().size());
}

void Adam::check(const AdamOptions& o) const {
  check_nonnegative("eps", o.eps);
  check_range("betas[0]", o.betas[0], 0.0, false, 1.0, true);
  check_range("betas[1]", o.betas[1], 0.0, false, 1.0, true);
  check_nonnegative("weight_decay", o.weight_decay);
}

AMSGrad::AMSGrad(std::vector<Tensor> params, double lr, AdamOptions options)
    : Adam(std::move(params), lr, [&] { options.amsgrad = true; return options; }()) {}

AdamW::AdamW(std::vector<Tensor> params, double lr, AdamWOptions o) : Adam(std::move(params), lr, plain(o), true) {}

void AdamW::add_param_group(std::vector<Tensor> params, double lr, AdamWOptions options, std::string name) {
  Adam::add_param_group(std::move(params), lr, plain(options), std::move(name));
}

void Adam::init_state(size_t i, const Tensor& p) {
  State& s = state_[i];
  s.exp_avg = zeros_like(p);
  s.exp_avg_sq = zeros_like(p);
  if (options_[group_of(i)].amsgrad) s.max_exp_avg_sq = zeros_like(p);
}

std::vector<std::pair<std::string, Tensor>> Adam::state_tensors(size_t i) const {
  const State& s = state_[i];
  std::vector<std::pair<std::string, Tensor>> out{{"exp_avg", s.exp_avg}, {"exp_avg_sq", s.exp_avg_sq}};
  if (options_[group_of(i)].amsgrad) out.emplace_back("max_exp_avg_sq", s.max_exp_avg_sq);
  return out;
}

void Adam::update(size_t group, const std::vector<size_t>& index, const std::vector<Tensor>& grads, int64_t step) {
  const AdamOptions& o = options_[group];
  std::vector<Tensor> p, m, v, vmax;
  for (size_t i : index) {
    p.push_back(params()[i]);
    m.push_back(state_[i].exp_avg);
    v.push_back(state_[i].exp_avg_sq);
    if (o.amsgrad) vmax.push_back(state_[i].max_exp_avg_sq);
  }
  backend::adam_update(p, grads, m, v, vmax, scalars(o, decoupled_, lr(group), step));
}

// The rate that multiplies m_t in update(): lr / (1 - beta1^t) / (sqrt(v_t) / sqrt(1 - beta2^t) + eps).
Tensor Adam::effective_lr(size_t i) const {
  Optimizer::effective_lr(i);  // checks the index
  if (steps(i) == 0) return {};
  const size_t g = group_of(i);
  const backend::AdamScalars s = scalars(options_[g], decoupled_, lr(g), steps(i));
  const State& st = state_[i];
  const Tensor& v = options_[g].amsgrad ? st.max_exp_avg_sq : st.exp_avg_sq;
  std::vector<double> rate = v.to_vector<double>();
  for (double& x : rate) x = s.step_size / (std::sqrt(x) / s.bias_correction2_sqrt + s.eps);
  return from_vector(rate, v.shape());
}

std::vector<LrStats> Adam::lr_telemetry() const {
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

std::vector<std::pair<std::string, std::string>> Adam::hparams(size_t group) const {
  const AdamOptions& o = options_[group];
  return {{"betas", format_number(o.betas[0]) + "/" + format_number(o.betas[1])},
          {"eps", format_number(o.eps)},
          {"weight_decay", format_number(o.weight_decay)},
          {"amsgrad", o.amsgrad ? "true" : "false"}};
}

}  // namespace tapegrad::optim
