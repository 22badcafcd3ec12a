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
inline Tensor operator-(const Tensor& x) { return neg(x); }

// Matrix products. matmul: [M,K] x [K,N] -> [M,N]; [B,M,K] x [B,K,N] -> [B,M,N]; a 3-D operand with a
// 2-D one shares the 2-D matrix across the batch. linear: x [N,in], weight [out,in], bias [out] or
// undefined -> x weight^T + bias [N,out], one fused op (the Linear layer's).
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

// Along one dim.
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);

// Losses. cross_entropy: logits [N,C] (float), labels [N] (I64 in [0, C)).
Tensor cross_entropy(const Tensor& logits, const Tensor& labels, Reduction r = Reduction::Mean);
Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction r = Reduction::Mean);

// Inverted dropout: in training, zeroes each element with probability p and scales the rest by 1/(1-p);
// the identity otherwise.
Tensor dropout(const Tensor& x, double p, bool training, Generator& gen = default_generator());

// Broadcasts x to shape (recorded: the gradient is summed back).
Tensor expand(const Tensor& x, const Shape& shape);

// The broadcast shape of a and b, or an Error naming `op` and both shapes.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

// Threads used by the CPU backend (OpenMP and Eigen). Results of float reductions depend on it.
void set_num_threads(int n);
int num_threads();

}  // namespace tapegrad
