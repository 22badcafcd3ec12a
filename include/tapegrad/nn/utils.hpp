// Gradient utilities.
#pragma once

#include <vector>

#include "tapegrad/tensor.hpp"

namespace tapegrad::nn {

// torch.nn.utils.clip_grad_norm_ (PyTorch 1.13, the 2-norm): over the parameters whose grad() is defined,
// total = sqrt(sum_p ||g_p||^2) (accumulated in f64); when max_norm / (total + 1e-6) < 1, every gradient is
// multiplied in place by that factor. Returns total, the norm before clipping. A NaN or Inf total is
// returned and the gradients are left as they are (torch would multiply them by NaN): the caller's
// divergence check sees it. max_norm must be > 0.
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

}  // namespace tapegrad::nn
