// AdaBound, AMSBound, AdaBoundW (equations in include/tapegrad/optim/adabound.hpp).
#include "tapegrad/optim/adabound.hpp"

#include <algorithm>
#include <cmath>
#include <tuple>

#include "../src/optim_kernels.hpp"

namespace tapegrad::optim {

AdaBound::AdaBound(std::vector<Tensor> params, double lr, AdaBoundOptions options)
    : AdaBound(std::move(params), lr, options, false) {}

AdaBound::AdaBound(std::vector<Tensor> params, double lr, AdaBoundOptions options, bool decoupled)
    : Optimizer(decoupled ? "adaboundw" : options.amsbound ? "amsbound" : "adabound", std::move(params), lr),
      options_(options),
      decoupled_(decoupled),
      state_(this->params().size()) {
  TG_CHECK(lr > 0, name_, ": invalid lr = ", format_number(lr),
           " (accepted: 0 < lr; final_lr is scaled by lr / initial lr)");
  check_nonnegative("eps", options_.eps);
  check_range("betas[0]", options_.betas[0], 0.0, false, 1.0, true);
  check_range("betas[1]", options_.betas[1], 0.0, false, 1.0, true);
  check_nonnegative("final_lr", options_.final_lr);
  check_range("gamma", options_.gamma, 0.0, false, 1.0, true);
  check_nonnegative("weight_decay", options_.weight_decay);
}

AMSBound::AMSBound(std::vector<Tensor> params, double lr, AdaBoundOptions options)
    : AdaBound(std::move(params), lr, [&] { options.amsbound = true; return options; }()) {}

AdaBoundW::AdaBoundW(std::vector<Tensor> params, double lr, AdaBoundOptions options)
    : AdaBound(std::move(params), lr, options, true) {}

void AdaBound::init_state(size_t i, const Tensor& p) {
  State& s = state_[i];
  s.exp_avg = zeros_like(p);
  s.exp_avg_sq = zeros_like(p);
  if (options_.amsbound) s.max_exp_avg_sq = zeros_like(p);
}

std::vector<std::pair<std::string, Tensor>> AdaBound::state_tensors(size_t i) const {
  const State& s = state_[i];
  std::vector<std::pair<std::string, Tensor>> out{{"exp_avg", s.exp_avg}, {"exp_avg_sq", s.exp_avg_sq}};
  if (options_.amsbound) out.emplace_back("max_exp_avg_sq", s.max_exp_avg_sq);
  return out;
}

void AdaBound::update(size_t i, Tensor& p, const Tensor& g, int64_t step) {
  const double t = static_cast<double>(step);
  backend::AdaBoundScalars s;
  s.beta1 = options_.betas[0];
  s.beta2 = options_.betas[1];
  s.eps = options_.eps;
  s.weight_decay = options_.weight_decay;
  s.decoupled = decoupled_;
  const double bias_correction1 = 1 - std::pow(s.beta1, t);
  const double bias_correction2 = 1 - std::pow(s.beta2, t);
  s.step_size = lr() * std::sqrt(bias_correction2) / bias_correction1;
  const double final_lr = options_.final_lr * lr() / initial_lr();
  s.lower_bound = final_lr * (1 - 1 / (options_.gamma * t + 1));
  s.upper_bound = final_lr * (1 + 1 / (options_.gamma * t));
  State& st = state_[i];
  backend::adabound_update(p, g, st.exp_avg, st.exp_avg_sq, st.max_exp_avg_sq, s);
}

// The rate that multiplies m_t in update() before clipping, step_size / (sqrt(v_t) + eps), per element.
std::vector<double> AdaBound::unclamped_lr(size_t i) const {
  const double t = static_cast<double>(steps(i));
  const double step_size = lr() * std::sqrt(1 - std::pow(options_.betas[1], t)) / (1 - std::pow(options_.betas[0], t));
  const State& st = state_[i];
  std::vector<double> rate = (options_.amsbound ? st.max_exp_avg_sq : st.exp_avg_sq).to_vector<double>();
  for (double& x : rate) x = step_size / (std::sqrt(x) + options_.eps);
  return rate;
}

std::pair<double, double> AdaBound::bounds(size_t i) const {
  const double t = static_cast<double>(steps(i));
  const double final_lr = options_.final_lr * lr() / initial_lr();
  return {final_lr * (1 - 1 / (options_.gamma * t + 1)), final_lr * (1 + 1 / (options_.gamma * t))};
}

// The rate update() applied: clip(step_size / (sqrt(v_t) + eps), eta_l, eta_u).
Tensor AdaBound::effective_lr(size_t i) const {
  Optimizer::effective_lr(i);  // checks the index
  if (steps(i) == 0) return {};
  const auto [lower, upper] = bounds(i);
  std::vector<double> rate = unclamped_lr(i);
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
    s.step = steps(i);
    s.bounded = true;
    std::tie(s.lower_bound, s.upper_bound) = bounds(i);
    std::vector<double> raw = unclamped_lr(i);
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

std::vector<std::pair<std::string, std::string>> AdaBound::hparams() const {
  return {{"betas", format_number(options_.betas[0]) + "/" + format_number(options_.betas[1])},
          {"final_lr", format_number(options_.final_lr)},
          {"gamma", format_number(options_.gamma)},
          {"eps", format_number(options_.eps)},
          {"weight_decay", format_number(options_.weight_decay)},
          {"amsbound", options_.amsbound ? "true" : "false"}};
}

}  // namespace tapegrad::optim
