// The functional API. Every op checks shapes and dtypes first (errors name the op and the shapes),
// computes through the backend facade, and records its backward on the tape when an input requires grad.
// Binary elementwise ops broadcast as NumPy does; their gradients are summed back to each input's shape.
#pragma once

#include <vector>

#include "tapegrad/tensor.hpp"

namespace tapegrad {

enum class Reduction { Mean, Sum };

// Elementwise, broadcasting.
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double b);
Tensor mul(const Tensor& a, double b);
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor pow(const Tensor& x, double exponent);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor abs(const Tensor& x);  // gradient sign(x), 0 at 0 (PyTorch's)
Tensor erf(const Tensor& x);

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator+(const Tensor& a, double b) { return add(a, b); }
inline Tensor operator+(double a, const Tensor& b) { return add(b, a); }
inline Tensor operator-(const Tensor& a, double b) { return add(a, -b); }
inline Tensor operator-(double a, const Tensor& b) { return add(neg(b), a); }
inline Tensor operator*(const Tensor& a, double b) { return mul(a, b); }
inline Tensor operator*(double a, const Tensor& b) { return mul(b, a); }
inline Tensor operator/(const Tensor& a, double b) { return mul(a, 1.0 / b); }
Tensor operator/(double a, const Tensor& b);  // a / b elementwise (1.0 / x)
inline Tensor operator-(const Tensor& x) { return neg(x); }

// Comparisons, broadcasting: masks of 1 and 0 (no gradient) in the inputs' float dtype; i64 inputs (labels,
// argmax) are compared exactly and give an f32 mask. NaN compares as IEEE says (only ne is true).
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
// out = cond != 0 ? a : b, broadcasting all three; exact (the other branch's NaN or Inf does not leak in).
// cond is a mask of any dtype; the gradient reaches a where cond holds and b elsewhere.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
// The tensors (same shape) joined along a new dim: [*] x n -> [..., n at dim, ...] (recorded).
Tensor stack(const std::vector<Tensor>& ts, int64_t dim = 0);

// Matrix products. matmul: [M,K] x [K,N] -> [M,N]; [B,M,K] x [B,K,N] -> [B,M,N]; a 3-D operand with a
// 2-D one shares the 2-D matrix across the batch. linear: x [N,in], weight [out,in], bias [out] or
// undefined -> x weight^T + bias [N,out], one fused op (the Linear layer's); x [*, in] of another rank has
// its leading dims flattened and restored ([B, T, in] -> [B, T, out], [in] -> [out]), as PyTorch.
Tensor matmul(const Tensor& a, const Tensor& b);
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

// Reductions. dims may be negative; keepdim keeps reduced dims as size 1.
Tensor sum(const Tensor& x);
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor mean(const Tensor& x);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor max(const Tensor& x);  // gradient goes to the first maximal element
Tensor max(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor argmax(const Tensor& x, int64_t dim);  // I64, no gradient

// Activations, composed of recorded ops. gelu: x Phi(x) = 0.5 x (1 + erf(x / sqrt(2))), or with
// tanh_approximation 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) (PyTorch's approximate="tanh").
// silu: x sigmoid(x). leaky_relu: x for x > 0, negative_slope x otherwise.
Tensor gelu(const Tensor& x, bool tanh_approximation = false);
Tensor silu(const Tensor& x);
Tensor leaky_relu(const Tensor& x, double negative_slope = 0.01);

// Layer normalisation over the last dims of x given by normalized_shape (x [*, normalized_shape]):
// y = (x - mean) / sqrt(var + eps) * weight + bias, biased variance; weight, bias of normalized_shape or
// undefined (1 and 0).
Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight = Tensor(),
                  const Tensor& bias = Tensor(), double eps = 1e-5);

// Along one dim.
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);

// Losses. cross_entropy: logits [N,C] (float), labels [N] (I64 in [0, C)).
Tensor cross_entropy(const Tensor& logits, const Tensor& labels, Reduction r = Reduction::Mean);
Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction r = Reduction::Mean);
// nll_loss: log-probabilities [N, C] (log_softmax's output), labels [N] (I64 in [0, C)): reduce_i -input[i, label_i].
Tensor nll_loss(const Tensor& log_probs, const Tensor& labels, Reduction r = Reduction::Mean);
// reduce of -(y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))), computed stably from the logits x; target y of x's
// shape in [0, 1]. Gradient (sigmoid(x) - y) g.
Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target, Reduction r = Reduction::Mean);
// reduce |input - target|
Tensor l1_loss(const Tensor& input, const Tensor& target, Reduction r = Reduction::Mean);
// d = input - target: 0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta (beta = 0: l1_loss). PyTorch's.
Tensor smooth_l1_loss(const Tensor& input, const Tensor& target, Reduction r = Reduction::Mean, double beta = 1.0);
// 0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta) = delta * smooth_l1_loss with beta = delta.
Tensor huber_loss(const Tensor& input, const Tensor& target, Reduction r = Reduction::Mean, double delta = 1.0);

// Inverted dropout: in training, zeroes each element with probability p and scales the rest by 1/(1-p);
// the identity otherwise.
Tensor dropout(const Tensor& x, double p, bool training, Generator& gen = default_generator());

// Convolution and pooling over NCHW tensors (square stride and padding, zero padding).
// conv2d: x [N,C,H,W], weight [K,C,R,S], bias [K] or undefined -> [N,K,P,Q], P = (H + 2 padding - R) / stride + 1.
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(), int64_t stride = 1,
              int64_t padding = 0);
// stride 0 means stride = kernel (PyTorch's default). max: padding is -inf; avg: padding counts as zeros
// in a divisor of kernel^2 (count_include_pad). padding <= kernel / 2.
Tensor max_pool2d(const Tensor& x, int64_t kernel, int64_t stride = 0, int64_t padding = 0);
Tensor avg_pool2d(const Tensor& x, int64_t kernel, int64_t stride = 0, int64_t padding = 0);
// Mean over oh x ow equal tiles; H and W must be multiples of oh and ow. global: [N,C,H,W] -> [N,C,1,1].
Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h, int64_t out_w);
Tensor global_avg_pool2d(const Tensor& x);

// Batch normalisation of x [N, C, ...] per channel, weight/bias [C] or undefined (1 and 0).
// training: batch statistics; running_mean/running_var [C], when defined, are updated in place as
//   running = (1 - momentum) running + momentum batch_stat, with the unbiased batch variance (PyTorch).
// evaluation: running statistics (required).
Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, bool training, double momentum = 0.1, double eps = 1e-5);
// relu(batch_norm(x, ...) + residual) as one op (one node, one pass forward and one backward): a ResNet
// block's end; residual undefined: relu(batch_norm(x, ...)). residual has x's shape (no broadcasting). The
// same values and gradients as the three ops (f64: the same output bits, gradients to rounding), relu's
// gradient 0 at 0.
Tensor batch_norm_relu(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                       const Tensor& bias, bool training, double momentum = 0.1, double eps = 1e-5,
                       const Tensor& residual = Tensor());

// Embedding lookup: weight [V, E], indices I64 [*] in [0, V) -> [*, E]. The gradient reaches only the rows
// used (a dense [V, E] tensor, zero elsewhere, as PyTorch's non-sparse embedding).
Tensor embedding(const Tensor& weight, const Tensor& indices);

// One LSTM layer over a whole sequence, PyTorch's gate order (i, f, g, o) and weight layout:
//   x [T, B, I]; h0, c0 [B, H] (undefined: zeros); w_ih [4H, I], w_hh [4H, H]; b_ih, b_hh [4H] (or both
//   undefined). a_t = x_t w_ih^T + b_ih + h_{t-1} w_hh^T + b_hh; i, f, o = sigmoid, g = tanh (of a's quarters);
//   c_t = f c_{t-1} + i g; h_t = o tanh(c_t).
// Returns y [T, B, H] (h_t of every step) and the final state h, c [B, H]. One tape node for the sequence;
// gradients flow into x, h0, c0 and the weights, and from y, h and c (so a state carried into the next call
// without detach() is differentiated through).
struct LstmOutput {
  Tensor y, h, c;
};
LstmOutput lstm(const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh,
                const Tensor& b_ih = Tensor(), const Tensor& b_hh = Tensor());

// One GRU layer over a whole sequence, PyTorch's gate order (r, z, n) and weight layout:
//   x [T, B, I]; h0 [B, H] (undefined: zeros); w_ih [3H, I], w_hh [3H, H]; b_ih, b_hh [3H] (or both undefined).
//   r = sigmoid(W_ir x_t + b_ir + W_hr h + b_hr), z = sigmoid(W_iz x_t + b_iz + W_hz h + b_hz),
//   n = tanh(W_in x_t + b_in + r * (W_hn h + b_hn)), h_t = (1 - z) * n + z * h.
// Returns y [T, B, H] (every h_t) and h [B, H] (the last). Composed of recorded ops, step by step.
struct GruOutput {
  Tensor y, h;
};
GruOutput gru(const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh, const Tensor& b_ih = Tensor(),
              const Tensor& b_hh = Tensor());

// Broadcasts x to shape (recorded: the gradient is summed back).
Tensor expand(const Tensor& x, const Shape& shape);

// The broadcast shape of a and b, or an Error naming `op` and both shapes.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

// Threads used by the CPU backend (OpenMP and Eigen). Results of float reductions depend on it.
void set_num_threads(int n);
int num_threads();

// The instruction-set level the CPU kernels run at: "avx512", "avx2" or "baseline", chosen at the first call
// from the CPU's features, or forced by the environment variable TG_CPU_ISA (an unknown level, or one this CPU
// lacks, throws an Error).
const char* cpu_isa();

// The FLOPs a f32 convolution of x [N, C, H, W] with w [K, C, R, S] executes on the CPU at this level, per pass:
// 2 K C R S per output for the direct products, 36 products of 2 K C per 4x4 output tile where Winograd runs
// (the transforms not counted). For benchmarks: the fraction of the FMA peak a convolution really uses.
struct ConvFlops {
  double forward = 0, data = 0, weight = 0;  // forward, data gradient, weight gradient
};
ConvFlops cpu_conv_flops(const Shape& x, const Shape& w, int64_t stride, int64_t padding);

}  // namespace tapegrad
