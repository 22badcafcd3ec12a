// The optimizer kernels: one fused update per algorithm, in place on a parameter and its state.
//
// Each facade function reads p, g and the state once and writes p and the state once (one pass over
// memory per parameter tensor). The optimizer classes (optim/) compute every per-step scalar (bias
// corrections, bounds, the decayed learning rate) and pass them in a small struct, so the kernels hold
// no schedules and no std::pow. Each facade dispatches on the device: CPU -> the cpu:: twin
// (src/cpu/optim_kernels.cpp), CUDA -> not implemented yet (throws naming kernel, device and dtype).
//
// Contract shared by all four: p, g and every defined state tensor are contiguous, have p's shape,
// dtype (f32 or f64) and device; state tensors never alias p or g. The scalars are doubles; the kernel
// rounds each one once to the tensor's type, as torch does when it passes a Python float to a kernel.
// The order of the floating-point operations follows the reference implementations (named in each
// optimizer's header) so that f64 trajectories agree to ~1e-15 per step.
#pragma once

#include "tapegrad/tensor.hpp"

namespace tapegrad::backend {

// torch.optim.SGD (single-tensor path). With momentum == 0, momentum_buffer is undefined.
//   d = g + weight_decay * p                               (only when weight_decay != 0)
//   buf = first_step ? d : momentum * buf + (1 - dampening) * d
//   d = nesterov ? d + momentum * buf : buf                 (only when momentum != 0)
//   p = p - lr * d
struct SgdScalars {
  double lr = 0, momentum = 0, dampening = 0, weight_decay = 0;
  bool nesterov = false;
  bool first_step = false;  // the buffer is initialised to d (torch: clone), not decayed
};
void sgd_update(Tensor& p, const Tensor& g, Tensor& momentum_buffer, const SgdScalars& s);

// torch.optim.Adagrad (single-tensor path).
//   d = g + weight_decay * p;  sum = sum + d * d;  p = p - clr * d / (sqrt(sum) + eps)
struct AdagradScalars {
  double clr = 0;  // lr / (1 + (step - 1) * lr_decay)
  double weight_decay = 0, eps = 0;
};
void adagrad_update(Tensor& p, const Tensor& g, Tensor& sum, const AdagradScalars& s);

// torch.optim.Adam / AdamW (single-tensor path); AMSGrad when max_exp_avg_sq is defined.
//   decoupled: p = p * decay (decay = 1 - lr * weight_decay), else d = g + weight_decay * p
//   m = beta1 * m + (1 - beta1) * d;  v = beta2 * v + (1 - beta2) * d * d;  vmax = max(vmax, v)
//   p = p - step_size * m / (sqrt(v or vmax) / bias_correction2_sqrt + eps)
struct AdamScalars {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0;
  bool decoupled = false;  // AdamW
  double decay = 1;        // AdamW: 1 - lr * weight_decay
  double step_size = 0;    // lr / (1 - beta1^t)
  double bias_correction2_sqrt = 1;  // sqrt(1 - beta2^t)
};
void adam_update(Tensor& p, const Tensor& g, Tensor& exp_avg, Tensor& exp_avg_sq, Tensor& max_exp_avg_sq,
                 const AdamScalars& s);

// Luolc/AdaBound AdaBound / AdaBoundW; AMSBound when max_exp_avg_sq is defined.
//   coupled: d = g + weight_decay * p
//   m = beta1 * m + (1 - beta1) * d;  v = beta2 * v + (1 - beta2) * d * d;  vmax = max(vmax, v)
//   p_new = p - clamp(step_size / (sqrt(v or vmax) + eps), lower, upper) * m
//   decoupled (AdaBoundW): p_new = p_new - weight_decay * p      (not multiplied by the lr)
struct AdaBoundScalars {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0;
  bool decoupled = false;  // AdaBoundW
  double step_size = 0;    // lr * sqrt(1 - beta2^t) / (1 - beta1^t)
  double lower_bound = 0, upper_bound = 0;
};
void adabound_update(Tensor& p, const Tensor& g, Tensor& exp_avg, Tensor& exp_avg_sq, Tensor& max_exp_avg_sq,
                     const AdaBoundScalars& s);

}  // namespace tapegrad::backend

namespace tapegrad::cpu {
void sgd_update(Tensor& p, const Tensor& g, Tensor& momentum_buffer, const backend::SgdScalars& s);
void adagrad_update(Tensor& p, const Tensor& g, Tensor& sum, const backend::AdagradScalars& s);
void adam_update(Tensor& p, const Tensor& g, Tensor& exp_avg, Tensor& exp_avg_sq, Tensor& max_exp_avg_sq,
                 const backend::AdamScalars& s);
void adabound_update(Tensor& p, const Tensor& g, Tensor& exp_avg, Tensor& exp_avg_sq, Tensor& max_exp_avg_sq,
                     const backend::AdaBoundScalars& s);
}  // namespace tapegrad::cpu
