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

enum class Unary { Exp, Log, Sqrt, Tanh, Sigmoid, Relu, Pow };
enum class Binary { Add, Sub, Mul, Div };

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

// The contracts of each kernel are the comments in kernels.inc.

#include "kernels.inc"

// The CPU thread count (OpenMP and Eigen).
void set_num_threads(int n);
int num_threads();

}  // namespace tapegrad::backend
