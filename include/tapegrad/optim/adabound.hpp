// AdaBound, AMSBound and AdaBoundW: Adam / AMSGrad whose per-coordinate step is clipped into bounds that
// tighten over time around final_lr, so the method moves from adaptive to SGD-like steps.
//
// Paper: Luo, Xiong, Liu and Sun, "Adaptive Gradient Methods with Dynamic Bound of Learning Rate"
// (ICLR 2019), Algorithm 2 (AdaBound) and AMSBound. Reference implementation: Luolc/AdaBound,
// adabound/adabound.py (classes AdaBound, with amsbound=True for AMSBound, and AdaBoundW).
//
//   given lr, beta1, beta2, final_lr, gamma, eps, weight decay lambda; lr_0 = lr at construction;
//   m_0 = v_0 = vmax_0 = 0
//   for t = 1, 2, ...:
//     d_t = g_t + lambda * p_{t-1}                       (AdaBound, AMSBound: coupled weight decay)
//     d_t = g_t                                          (AdaBoundW)
//     m_t = beta1 * m_{t-1} + (1 - beta1) * d_t
//     v_t = beta2 * v_{t-1} + (1 - beta2) * d_t^2
//     AMSBound: vmax_t = max(vmax_{t-1}, v_t) replaces v_t below (the maximum of the raw v)
//     alpha_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t)   (both bias corrections in the step size)
//     fl_t    = final_lr * lr / lr_0                     (a scheduled lr scales final_lr too; lr_0 and
//                                                         final_lr are the parameter group's)
//     eta_l   = fl_t * (1 - 1 / (gamma * t + 1))
//     eta_u   = fl_t * (1 + 1 / (gamma * t))
//     p_t = p_{t-1} - clip(alpha_t / (sqrt(v_t) + eps), eta_l, eta_u) * m_t
//     AdaBoundW: p_t = p_t - lambda * p_{t-1}            (decoupled, and NOT multiplied by lr)
//
// eps is added to sqrt(v_t) before any bias correction (unlike torch's Adam). Defaults: lr = 1e-3,
// betas = (0.9, 0.999), final_lr = 0.1, gamma = 1e-3, eps = 1e-8, weight_decay = 0, amsbound = false.
// Constraints: lr > 0 (final_lr is scaled by lr / lr_0), eps, final_lr, weight_decay >= 0;
// 0 <= beta < 1; 0 <= gamma < 1. State per parameter: "exp_avg", "exp_avg_sq", "max_exp_avg_sq"
// (AMSBound). Every option, and lr, may differ between parameter groups (as the reference's base_lrs
// and final_lr per group; amsbound too: the name is group 0's).
#pragma once

#include <array>
#include <utility>

#include "tapegrad/optim/optimizer.hpp"

namespace tapegrad::optim {

struct AdaBoundOptions {
  std::array<double, 2> betas{0.9, 0.999};
  double final_lr = 0.1;
  double gamma = 1e-3;
  double eps = 1e-8;
  double weight_decay = 0;
  bool amsbound = false;
};

class AdaBound : public Optimizer {
 public:
  explicit AdaBound(std::vector<Tensor> params, double lr = 1e-3, AdaBoundOptions options = {});
  // Another parameter group with its own lr (its lr_0) and options (name: "" gives its index).
  void add_param_group(std::vector<Tensor> params, double lr, AdaBoundOptions options, std::string name = "");
  const AdaBoundOptions& options(size_t group = 0) const {
    check_group(group, "options");
    return options_[group];
  }
  std::vector<LrStats> lr_telemetry() const override;
  Tensor effective_lr(size_t i) const override;  // the clipped rate
  bool decoupled_weight_decay() const { return decoupled_; }

 protected:
  AdaBound(std::vector<Tensor> params, double lr, AdaBoundOptions options, bool decoupled);
  void init_state(size_t i, const Tensor& p) override;
  std::vector<std::pair<std::string, Tensor>> state_tensors(size_t i) const override;
  void update(size_t group, const std::vector<size_t>& index, const std::vector<Tensor>& grads,
              int64_t step) override;
  std::vector<std::pair<std::string, std::string>> hparams(size_t group) const override;

 private:
  struct State {
    Tensor exp_avg, exp_avg_sq, max_exp_avg_sq;
  };
  void check(double lr, const AdaBoundOptions& o) const;
  std::vector<AdaBoundOptions> options_;  // per group
  bool decoupled_;
  std::vector<State> state_;

  // Parameter i's rate of its last step before clipping, step_size / (sqrt(v_t) + eps), and the bounds.
  std::vector<double> unclamped_lr(size_t i, double& lower, double& upper) const;
};

// AdaBound with amsbound = true.
class AMSBound : public AdaBound {
 public:
  explicit AMSBound(std::vector<Tensor> params, double lr = 1e-3, AdaBoundOptions options = {});
};

// AdaBound with decoupled weight decay, exactly as Luolc/AdaBound's AdaBoundW.
class AdaBoundW : public AdaBound {
 public:
  explicit AdaBoundW(std::vector<Tensor> params, double lr = 1e-3, AdaBoundOptions options = {});
};

}  // namespace tapegrad::optim
