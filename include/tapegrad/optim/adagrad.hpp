// Adagrad: per-coordinate learning rates from the sum of squared gradients. Paper: Duchi, Hazan and
// Singer, "Adaptive Subgradient Methods for Online Learning and Stochastic Optimization" (JMLR 2011).
// Reference implementation: torch.optim.Adagrad, PyTorch 1.13, single-tensor path (foreach=False).
//
//   given lr, lr_decay, weight decay lambda, eps; s_0 = initial_accumulator_value
//   for t = 1, 2, ...:
//     d_t  = g_t + lambda * p_{t-1}                          (coupled weight decay)
//     lr_t = lr / (1 + (t - 1) * lr_decay)
//     s_t  = s_{t-1} + d_t^2
//     p_t  = p_{t-1} - lr_t * d_t / (sqrt(s_t) + eps)         (eps outside the square root)
//
// Defaults lr = 1e-2, lr_decay = 0, weight_decay = 0, initial_accumulator_value = 0, eps = 1e-10; all
// must be >= 0. State per parameter: "sum". Every option, and lr, may differ between parameter groups
// (torch 1.13 differs in one: it fills every group's sum with the constructor's initial_accumulator_value).
#pragma once

#include "tapegrad/optim/optimizer.hpp"

namespace tapegrad::optim {

struct AdagradOptions {
  double lr_decay = 0;
  double weight_decay = 0;
  double initial_accumulator_value = 0;
  double eps = 1e-10;
};

class Adagrad : public Optimizer {
 public:
  explicit Adagrad(std::vector<Tensor> params, double lr = 1e-2, AdagradOptions options = {});
  // Another parameter group with its own lr and options (name: "" gives its index).
  void add_param_group(std::vector<Tensor> params, double lr, AdagradOptions options, std::string name = "");
  const AdagradOptions& options(size_t group = 0) const {
    check_group(group, "options");
    return options_[group];
  }
  std::vector<LrStats> lr_telemetry() const override;
  Tensor effective_lr(size_t i) const override;

 protected:
  void init_state(size_t i, const Tensor& p) override;
  std::vector<std::pair<std::string, Tensor>> state_tensors(size_t i) const override;
  void update(size_t group, const std::vector<size_t>& index, const std::vector<Tensor>& grads,
              int64_t step) override;
  std::vector<std::pair<std::string, std::string>> hparams(size_t group) const override;

 private:
  void check(const AdagradOptions& o) const;
  std::vector<AdagradOptions> options_;  // per group
  std::vector<Tensor> sum_;
};

}  // namespace tapegrad::optim
