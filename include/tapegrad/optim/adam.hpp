// Adam, AMSGrad and AdamW: one update rule, two flags.
//
// Papers: Kingma and Ba, "Adam: A Method for Stochastic Optimization" (ICLR 2015); Reddi, Kale and
// Kumar, "On the Convergence of Adam and Beyond" (ICLR 2018) for AMSGrad; Loshchilov and Hutter,
// "Decoupled Weight Decay Regularization" (ICLR 2019) for AdamW. Reference implementation:
// torch.optim.Adam and torch.optim.AdamW, PyTorch 1.13, single-tensor path (foreach=False).
//
//   given lr, beta1, beta2, eps, weight decay lambda; m_0 = v_0 = vmax_0 = 0
//   for t = 1, 2, ...:
//     AdamW:  p_{t-1} = p_{t-1} * (1 - lr * lambda)             (decoupled: before the step, times lr)
//     else:   d_t = g_t + lambda * p_{t-1}                       (coupled: the decay enters the gradient)
//     m_t = beta1 * m_{t-1} + (1 - beta1) * d_t
//     v_t = beta2 * v_{t-1} + (1 - beta2) * d_t^2
//     AMSGrad: vmax_t = max(vmax_{t-1}, v_t), and vmax_t replaces v_t below (the maximum of the raw,
//              not bias-corrected, second moments)
//     p_t = p_{t-1} - lr / (1 - beta1^t) * m_t / (sqrt(v_t) / sqrt(1 - beta2^t) + eps)
//
// eps is added after the bias correction of sqrt(v) (torch; AdaBound differs). Defaults: lr = 1e-3,
// betas = (0.9, 0.999), eps = 1e-8, weight_decay = 0 (AdamW: 1e-2), amsgrad = false. Constraints:
// lr, eps, weight_decay >= 0; 0 <= beta < 1. State per parameter: "exp_avg", "exp_avg_sq",
// "max_exp_avg_sq" (AMSGrad). Every option, and lr, may differ between parameter groups (amsgrad too: the
// name is group 0's).
#pragma once

#include <array>

#include "tapegrad/optim/optimizer.hpp"

namespace tapegrad::optim {

struct AdamOptions {
  std::array<double, 2> betas{0.9, 0.999};
  double eps = 1e-8;
  double weight_decay = 0;
  bool amsgrad = false;
};

struct AdamWOptions {
  std::array<double, 2> betas{0.9, 0.999};
  double eps = 1e-8;
  double weight_decay = 1e-2;
  bool amsgrad = false;
};

class Adam : public Optimizer {
 public:
  explicit Adam(std::vector<Tensor> params, double lr = 1e-3, AdamOptions options = {});
  // Another parameter group with its own lr and options (name: "" gives its index).
  void add_param_group(std::vector<Tensor> params, double lr, AdamOptions options, std::string name = "");
  const AdamOptions& options(size_t group = 0) const {
    check_group(group, "options");
    return options_[group];
  }
  std::vector<LrStats> lr_telemetry() const override;
  // lr / (1 - beta1^t) / (sqrt(v) / sqrt(1 - beta2^t) + eps) per element (AMSGrad: vmax for v).
  Tensor effective_lr(size_t i) const override;
  bool decoupled_weight_decay() const { return decoupled_; }

 protected:
  Adam(std::vector<Tensor> params, double lr, AdamOptions options, bool decoupled);
  void init_state(size_t i, const Tensor& p) override;
  std::vector<std::pair<std::string, Tensor>> state_tensors(size_t i) const override;
  void update(size_t group, const std::vector<size_t>& index, const std::vector<Tensor>& grads,
              int64_t step) override;
  std::vector<std::pair<std::string, std::string>> hparams(size_t group) const override;

 private:
  struct State {
    Tensor exp_avg, exp_avg_sq, max_exp_avg_sq;
  };
  void check(const AdamOptions& o) const;
  std::vector<AdamOptions> options_;  // per group
  bool decoupled_;
  std::vector<State> state_;
};

// Adam with amsgrad = true.
class AMSGrad : public Adam {
 public:
  explicit AMSGrad(std::vector<Tensor> params, double lr = 1e-3, AdamOptions options = {});
};

// Adam with decoupled weight decay (default weight_decay = 1e-2, as torch.optim.AdamW).
class AdamW : public Adam {
 public:
  explicit AdamW(std::vector<Tensor> params, double lr = 1e-3, AdamWOptions options = {});
  void add_param_group(std::vector<Tensor> params, double lr, AdamWOptions options, std::string name = "");
};

}  // namespace tapegrad::optim
