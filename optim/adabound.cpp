// AdaBound, AMSBound, AdaBoundW (equations in include/tapegrad/optim/adabound.hpp).
#include "tapegrad/optim/adabound.hpp"

#include <algorithm>
#include <cmath>

#include "../src/backend.hpp"

namespace tapegrad::optim {
namespace {

// The kernel's scalars for step t of a group: the bias corrections in the step size, and the bounds around
// final_lr scaled by lr / lr_0.
backend::AdaBoundScalars scalars(const AdaBoundOptions& o, bool decoupled, double lr, double initial_lr,
                                 int64_t step) {
  const double t = static_cast<double>(step);
  backend::AdaBoundScalars s;
  s.beta1 = o.betas[0];
  s.beta2 = o.betas[1];
  s.eps = o.eps;
  s.weight_decay = o.weight_decay;
  s.decoupled = decoupled;
  const double bias_correction1 = 1 - std::pow(s.beta1, t);
  const double bias_correction2 = 1 - std::pow(s.beta2, t);
  s.step_size = lr * std::sqrt(bias_correction2) / bias_correction1;
  const double final_lr = o.final_lr * lr / initial_lr;
  s.lower_bound = final_lr * (1 - 1 / (o.gamma * t + 1));
  s.upper_bound = final_lr * (1 + 1 / (o.gamma * t));
  return s;
}

}  // namespace

AdaBound::AdaBound(std::vector<Tensor> params, double lr, AdaBoundOptions options)
    : AdaBound(std::move(params), lr, options, false) {}

AdaBound::AdaBound(std::vector<Tensor> params, double lr, AdaBoundOptions options, bool decoupled)
    : Optimizer(decoupled ? "adaboundw" : options.amsbound ? "amsbound" : "adabound", std::move(params), lr),
      options_{options},
      decoupled_(decoupled),
      state_(this->params().size()) {
  check(lr, options);
}

void AdaBound::add_param_group(std::vector<Tensor> params, double lr, AdaBoundOptions options, std::string name) {
  check(lr, options);
  add_group(std::move(params), lr, std::move(name));
  options_.push_back(options);
  state_.resize(this->params().size());
}

void AdaBound::check(double lr, const AdaBoundOptions& o) const {
  TG_CHECK(lr > 0, name_, ": invalid lr = ", format_number(lr),
           " (accepted: 0 < lr; final_lr is scaled by lr / initial lr)");
  check_nonnegative("eps", o.eps);
  check_range("betas[0]", o.betas[0], 0.0, false, 1.0, true);
  check_range("betas[1]", o.betas[1], 0.0, false, 1.0, true);
  check_nonnegative("final_lr", o.final_lr);
  check_range("gamma", o.gamma, 0.0, false, 1.0, true);
  check_nonnegative("weight_decay", o.weight_decay);
}

AMSBound::AMSBound(std::vector<Tensor> params, double lr, AdaBoundOptions options)
    : AdaBound(std::move(params), lr, [&] { options.amsbound = true; return options; }()) {}

AdaBoundW::AdaBoundW(std::vector<Tensor> params, double lr, AdaBoundOptions options)
    : AdaBound(std::move(params), lr, options, true) {}

void AdaBound::init_state(size_t i, const Tensor& p) {
  State& s = state_[i];
  s.exp_avg = zeros_like(p);
  s.exp_avg_sq = zeros_like(p);
  if (options_[group_of(i)].amsbound) s.max_exp_avg_sq = zeros_like(p);
}

std::vector<std::pair<std::string, Tensor>> AdaBound::state_tensors(size_t i) const {
  const State& s = state_[i];
  std::vector<std::pair<std::string, Tensor>> out{{"exp_avg", s.exp_avg}, {"exp_avg_sq", s.exp_avg_sq}};
  if (options_[group_of(i)].amsbound) out.emplace_back("max_exp_avg_sq", s.max_exp_avg_sq);
  return out;
}

void AdaBound::update(size_t group, const std::vector<size_t>& index, const std::vector<Tensor>& grads,
                      int64_t step) {
  const AdaBoundOptions& o = options_[group];
  std::vector<Tensor> p, m, v, vmax;
  for (size_t i : index) {
    p.push_back(params()[i]);
    m.push_back(state_[i].exp_avg);
    v.push_back(state_[i].exp_avg_sq);
    if (o.amsbound) vmax.push_back(state_[i].max_exp_avg_sq);
  }
  backend::adabound_update(p, grads, m, v, vmax, scalars(o, decoupled_, lr(group), initial_lr(group), step));
}

// The rate that multiplies m_t in update() before clipping, step_size / (sqrt(v_t) + eps), per element.
std::vector<double> AdaBound::unclamped_lr(size_t i, double& lower, double& upper) const {
  const size_t g = group_of(i);
  const backend::AdaBoundScalars s = scalars(options_[g], decoupled_, lr(g), initial_lr(g), steps(i));
  lower = s.lower_bound;
  upper = s.upper_bound;
  const State& st = state_[i];
  std::vector<double> rate = (options_[g].amsbound ? st.max_exp_avg_sq : st.exp_avg_sq).to_vector<double>();
  for (double& x : rate) x = s.step_size / (std::sqrt(x) + s.eps);
  return rate;
}

// The rate update() applied: clip(step_size / (sqrt(v_t) + eps), eta_l, eta_u).
Tensor AdaBound::effective_lr(size_t i) const {
  Optimizer::effective_lr(i);  // checks the index
  if (steps(i) == 0) return {};
  double lower = 0, upper = 0;
  std::vector<double> rate = unclamped_lr(i, lower, upper);
  for (double& x : rate) x = std::min(std::max(x, lower), upper);
  return from_vector(rate, state_[i].exp_avg.shape());
}

// The clipped rate's distribution and the unclipped one's; an element counts as clamped at a bound when its
// unclipped rate lies strictly beyond it.
std::vector<LrStats> AdaBound::lr_telemetry() const {
  std::vector<LrStats> out;
  for (size_t i = 0; i < params().size(); ++i) {
    if (steps(i) == 0) continue;
    LrStats s;
    s.param = i;
    s.group = group_of(i);
    s.step = steps(i);
    s.bounded = true;
    std::vector<double> raw = unclamped_lr(i, s.lower_bound, s.upper_bound);
    std::vector<double> clamped(raw.size());
    size_t below = 0, above = 0;
    for (size_t k = 0; k < raw.size(); ++k) {
      below += raw[k] < s.lower_bound;
      above += raw[k] > s.upper_bound;
      clamped[k] = std::min(std::max(raw[k], s.lower_bound), s.upper_bound);
    }
    const double n = static_cast<double>(std::max<size_t>(raw.size(), 1));
    s.frac_at_lower = static_cast<double>(below) / n;
    s.frac_at_upper = static_cast<double>(above) / n;
    s.lr = lr_quantiles(std::move(clamped));
    s.lr_unclamped = lr_quantiles(std::move(raw));
    out.push_back(s);
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> AdaBound::hparams(size_t group) const {
  const AdaBoundOptions& o = options_[group];
  return {{"betas", format_number(o.betas[0]) + "/" + format_number(o.betas[1])},
          {"final_lr", format_number(o.final_lr)},
          {"gamma", format_number(o.gamma)},
          {"eps", format_number(o.eps)},
          {"weight_decay", format_number(o.weight_decay)},
          {"amsbound", o.amsbound ? "true" : "false"}};
}

}  // namespace tapegrad::optim
