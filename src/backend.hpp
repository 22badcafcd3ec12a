// The backend facade: one declaration per kernel with its contract. Ops call only these; each checks that
// its tensors share one device and dispatches to that device's twin: cpu:: (src/cpu/, also for the test
// device) or, in a CUDA build, cuda:: (src/cuda/). An unsupported device or dtype throws and names the
// kernel, device, dtype.
//
// Contracts shared by all kernels: outputs are preallocated by the caller, contiguous, with the shape
// and dtype stated; inputs and outputs share one device and (unless stated) one float dtype; outputs
// never alias inputs unless the kernel says "in place allowed".
#pragma once

#include <vector>

#include "tapegrad/tensor.hpp"

namespace tapegrad::backend {

enum class Unary { Exp, Log, Sqrt, Tanh, Sigmoid, Relu, Pow, Erf };
// Eq .. Ge give 1 or 0 (in the operands' dtype); Masked gives a where b != 0, else exactly 0.
enum class Binary { Add, Sub, Mul, Div, Eq, Ne, Lt, Le, Gt, Ge, Masked };

// Geometry of a 2-D convolution or pooling window over NCHW tensors: x [N, C, H, W] -> y [N, K, P, Q] with
// P = (H + 2 pad_h - R) / stride_h + 1, Q likewise (R x S the window; K = C for pooling).
struct Window2d {
  int64_t N = 0, C = 0, H = 0, W = 0;
  int64_t K = 0, R = 1, S = 1;
  int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;
  int64_t P = 0, Q = 0;
};

// The weights of one LSTM layer in PyTorch's layout, gate order i, f, g, o (rows q*H .. q*H + H - 1 of
// each matrix belong to gate q): w_ih [4H, I], w_hh [4H, H], b_ih and b_hh [4H] (both undefined: no bias).
// As kernel outputs (gradients), each undefined tensor is skipped.
struct LstmWeights {
  Tensor w_ih, w_hh, b_ih, b_hh;
};

// The per-step scalars of the fused optimizer updates (kernels.inc, end), computed once per step and group by
// the optimizer (optim/<name>.cpp) in double; each kernel rounds each one once to the tensors' type, as torch
// does when it passes a Python float to a kernel.
struct SgdScalars {
  double lr = 0, momentum = 0, dampening = 0, weight_decay = 0;
  bool nesterov = false;
  bool first_step = false;  // the buffer is initialised to d (torch: clone), not decayed
};
struct AdagradScalars {
  double clr = 0;  // lr / (1 + (step - 1) * lr_decay)
  double weight_decay = 0, eps = 0;
};
struct AdamScalars {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0;
  bool decoupled = false;            // AdamW
  double decay = 1;                  // AdamW: 1 - lr * weight_decay
  double step_size = 0;              // lr / (1 - beta1^t)
  double bias_correction2_sqrt = 1;  // sqrt(1 - beta2^t)
};
struct AdaBoundScalars {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0;
  bool decoupled = false;  // AdaBoundW
  double step_size = 0;    // lr * sqrt(1 - beta2^t) / (1 - beta1^t)
  double lower_bound = 0, upper_bound = 0;
};

// The contracts of each kernel are the comments in kernels.inc.

#include "kernels.inc"

// The CPU thread count (OpenMP and Eigen).
void set_num_threads(int n);
int num_threads();

}  // namespace tapegrad::backend
