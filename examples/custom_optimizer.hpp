// RMSprop as a user-side optimizer: what it takes to add an algorithm without touching the library.
// A subclass of optim::Optimizer names its state, creates it, and updates the parameters of one group per
// call; the base does the rest (groups, lr and schedulers, skipped gradients, state_dict, checkpoints).
//
// Tieleman and Hinton, Lecture 6.5 (Coursera, 2012); reference: torch.optim.RMSprop (not centered, no
// momentum), checked against it in tests/test_optim.cpp on the golden file's "rmsprop" cases.
//
//   given lr, alpha, eps, weight decay lambda; v_0 = 0
//   for t = 1, 2, ...:
//     d_t = g_t + lambda * p_{t-1}
//     v_t = alpha * v_{t-1} + (1 - alpha) * d_t^2
//     p_t = p_{t-1} - lr * d_t / (sqrt(v_t) + eps)
#pragma once

#include <tapegrad/ops.hpp>
#include <tapegrad/optim/optimizer.hpp>

struct RMSpropOptions {
  double alpha = 0.99, eps = 1e-8, weight_decay = 0;
};

class RMSprop : public tapegrad::optim::Optimizer {
 public:
  explicit RMSprop(std::vector<tapegrad::Tensor> params, double lr = 1e-2, RMSpropOptions options = {})
      : Optimizer("rmsprop", std::move(params), lr), o_(options), square_avg_(this->params().size()) {
    check_range("alpha", o_.alpha, 0.0, false, 1.0, false);
    check_nonnegative("eps", o_.eps);
    check_nonnegative("weight_decay", o_.weight_decay);
  }

 protected:
  void init_state(size_t i, const tapegrad::Tensor& p) override { square_avg_[i] = tapegrad::zeros_like(p); }
  std::vector<std::pair<std::string, tapegrad::Tensor>> state_tensors(size_t i) const override {
    return {{"square_avg", square_avg_[i]}};
  }
  // Plain ops, one parameter after the other (step() runs this under NoGradGuard); the built-in optimizers
  // call one fused kernel instead.
  void update(size_t group, const std::vector<size_t>& index, const std::vector<tapegrad::Tensor>& grads,
              int64_t /*step*/) override {
    using namespace tapegrad;
    for (size_t k = 0; k < index.size(); ++k) {
      Tensor p = params()[index[k]], v = square_avg_[index[k]];
      const Tensor d = o_.weight_decay != 0 ? add(grads[k], mul(p, o_.weight_decay)) : grads[k];
      v.copy_(add(mul(v, o_.alpha), mul(mul(d, 1 - o_.alpha), d)));  // torch: addcmul, (1 - alpha) d first
      p.copy_(sub(p, mul(div(d, add(sqrt(v), o_.eps)), lr(group))));
    }
  }
  std::vector<std::pair<std::string, std::string>> hparams(size_t) const override {
    using tapegrad::optim::format_number;
    return {{"alpha", format_number(o_.alpha)}, {"eps", format_number(o_.eps)},
            {"weight_decay", format_number(o_.weight_decay)}};
  }

 private:
  RMSpropOptions o_;
  std::vector<tapegrad::Tensor> square_avg_;
};
