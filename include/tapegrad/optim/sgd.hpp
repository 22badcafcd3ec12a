// SGD: stochastic gradient descent with optional momentum, dampening, Nesterov momentum and (coupled)
// weight decay. Reference implementation: torch.optim.SGD, PyTorch 1.13, single-tensor path
// (foreach=False). Nesterov momentum as formulated by Sutskever et al., "On the importance of
// initialization and momentum in deep learning" (ICML 2013), in PyTorch's form.
//
//   given lr, momentum mu, dampening tau, weight decay lambda; buf b created at the first step
//   for t = 1, 2, ...:
//     d_t = g_t + lambda * p_{t-1}                          (coupled: the decay enters the gradient)
//     if mu != 0:
//       b_t = d_t                                           (t = 1: no dampening on the first step)
//       b_t = mu * b_{t-1} + (1 - tau) * d_t                (t > 1)
//       d_t = d_t + mu * b_t   if nesterov,  else  d_t = b_t
//     p_t = p_{t-1} - lr * d_t
//
// lr has no default (as in torch). Constraints: lr, momentum, dampening, weight_decay >= 0;
// nesterov needs momentum > 0 and dampening = 0. State per parameter: "momentum_buffer" (mu != 0).
// Every option, and lr, may differ between parameter groups (add_param_group).
#pragma once

#include "tapegrad/optim/optimizer.hpp"

namespace tapegrad::optim {

struct SGDOptions {
  double momentum = 0;
  double dampening = 0;
  bool nesterov = false;
  double weight_decay = 0;
};

class SGD : public Optimizer {
 public:
  SGD(std::vector<Tensor> params, double lr, SGDOptions options = {});
  // Another parameter group with its own lr and options (name: "" gives its index).
  void add_param_group(std::vector<Tensor> params, double lr, SGDOptions options, std::string name = "");
  const SGDOptions& options(size_t group = 0) const {
    check_group(group, "options");
    return options_[group];
  }

 protected:
  void init_state(size_t i, const Tensor& p) override;
  std::vector<std::pair<std::string, Tensor>> state_tensors(size_t i) const override;
  void update(size_t group, const std::vector<size_t>& index, const std::vector<Tensor>& grads,
              int64_t step) override;
  std::vector<std::pair<std::string, std::string>> hparams(size_t group) const override;

 private:
  void check(const SGDOptions& o) const;
  std::vector<SGDOptions> options_;  // per group
  std::vector<Tensor> momentum_buffer_;
};

}  // namespace tapegrad::optim
