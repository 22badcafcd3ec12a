// Adam, AMSGrad, AdamW (equations in include/tapegrad/optim/adam.hpp).
#include "tapegrad/optim/adam.hpp"

#include <cmath>

#include "../src/optim_kernels.hpp"

namespace tapegrad::optim {

Adam::Adam(std::vector<Tensor> params, double lr, AdamOptions options) : Adam(std::move(params), lr, options, false) {}

Adam::Adam(std::vector<Tensor> params, double lr, AdamOptions options, bool decoupled)
    : Optimizer(decoupled ? "adamw" : options.amsgrad ? "amsgrad" : "adam", std::move(params), lr),
      options_(options),
      decoupled_(decoupled),
      state_(this->params().size()) {
  check_nonnegative("eps", options_.eps);
  check_range("betas[0]", options_.betas[0], 0.0, false, 1.0, true);
  check_range("betas[1]", options_.betas[1], 0.0, false, 1.0, true);
  check_nonnegative("weight_decay", options_.weight_decay);
}

AMSGrad::AMSGrad(std::vector<Tensor> params, double lr, AdamOptions options)
    : Adam(std::move(params), lr, [&] { options.amsgrad = true; return options; }()) {}

AdamW::AdamW(std::vector<Tensor> params, double lr, AdamWOptions o)
    : Adam(std::move(params), lr, AdamOptions{o.betas, o.eps, o.weight_decay, o.amsgrad}, true) {}

void Adam::init_state(size_t i, const Tensor& p) {
  State& s = state_[i];
  s.exp_avg = zeros_like(p);
  s.exp_avg_sq = zeros_like(p);
  if (options_.amsgrad) s.max_exp_avg_sq = zeros_like(p);
}

std::vector<std::pair<std::string, Tensor>> Adam::state_tensors(size_t i) const {
  const State& s = state_[i];
  std::vector<std::pair<std::string, Tensor>> out{{"exp_avg", s.exp_avg}, {"exp_avg_sq", s.exp_avg_sq}};
  if (options_.amsgrad) out.emplace_back("max_exp_avg_sq", s.max_exp_avg_sq);
  return out;
}

void Adam::update(size_t i, Tensor& p, const Tensor& g, int64_t step) {
  const double t = static_cast<double>(step);
  backend::AdamScalars s;
  s.beta1 = options_.betas[0];
  s.beta2 = options_.betas[1];
  s.eps = options_.eps;
  s.weight_decay = options_.weight_decay;
  s.decoupled = decoupled_;
  s.decay = 1 - lr() * options_.weight_decay;
  s.step_size = lr() / (1 - std::pow(s.beta1, t));
  s.bias_correction2_sqrt = std::sqrt(1 - std::pow(s.beta2, t));
  State& st = state_[i];
  backend::adam_update(p, g, st.exp_avg, st.exp_avg_sq, st.max_exp_avg_sq, s);
}

// The rate that multiplies m_t in update(): lr / (1 - beta1^t) / (sqrt(v_t) / sqrt(1 - beta2^t) + eps).
Tensor Adam::effective_lr(size_t i) const {
  Optimizer::effective_lr(i);  // checks the index
  if (steps(i) == 0) return {};
  const double t = static_cast<double>(steps(i));
  const double step_size = lr() / (1 - std::pow(options_.betas[0], t));
  const double bc2_sqrt = std::sqrt(1 - std::pow(options_.betas[1], t));
  const State& st = state_[i];
  const Tensor& v = options_.amsgrad ? st.max_exp_avg_sq : st.exp_avg_sq;
  std::vector<double> rate = v.to_vector<double>();
  for (double& x : rate) x = step_size / (std::sqrt(x) / bc2_sqrt + options_.eps);
  return from_vector(rate, v.shape());
}

std::vector<LrStats> Adam::lr_telemetry() const {
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

std::vector<std::pair<std::string, std::string>> Adam::hparams() const {
  return {{"betas", format_number(options_.betas[0]) + "/" + format_number(options_.betas[1])},
          {"eps", format_number(options_.eps)},
          {"weight_decay", format_number(options_.weight_decay)},
          {"amsgrad", options_.amsgrad ? "true" : "false"}};
}

}  // namespace tapegrad::optim
