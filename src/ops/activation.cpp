// Activations and layer normalisation, composed of recorded ops: the tape differentiates them through
// their parts (flashlight's way; none of them is a hot path here).
#include <cmath>

#include "common.hpp"

namespace tapegrad {

// exact: y = 0.5 x (1 + erf(x / sqrt 2));  dx = g (Phi(x) + x phi(x)) through mul, erf and add
// tanh:  y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
Tensor gelu(const Tensor& x, bool tanh_approximation) {
  check_float(x, "gelu");
  Tensor inner = tanh_approximation ? tanh((x + pow(x, 3.0) * 0.044715) * std::sqrt(2.0 / M_PI)) : erf(x * M_SQRT1_2);
  return x * 0.5 * (inner + 1.0);
}

// y = x sigmoid(x);  dx = g (s + x s (1 - s))
Tensor silu(const Tensor& x) { return x * sigmoid(x); }

// y = relu(x) - slope relu(-x);  dx = g for x > 0, slope g for x < 0
Tensor leaky_relu(const Tensor& x, double negative_slope) {
  check_float(x, "leaky_relu");
  return relu(x) - relu(-x) * negative_slope;
}

// x [*, S] with S = normalized_shape (k dims): mean and biased var over those k dims (kept as size 1),
// y = (x - mean) / sqrt(var + eps) * weight + bias;  weight, bias [S]
Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, const Tensor& bias,
                  double eps) {
  check_float(x, "layer_norm");
  const int64_t k = static_cast<int64_t>(normalized_shape.size());
  bool fits = k >= 1 && x.dim() >= k && std::equal(normalized_shape.begin(), normalized_shape.end(), x.shape().end() - k);
  TG_CHECK(fits, "layer_norm: input ", x.shape(), " does not end with normalized_shape ", normalized_shape);
  for (const Tensor* p : {&weight, &bias})
    if (p->defined())
      TG_CHECK(p->shape() == normalized_shape, "layer_norm: weight and bias must have normalized_shape ",
               normalized_shape, ", got ", p->shape());
  TG_CHECK(eps >= 0, "layer_norm: eps must be >= 0, got ", eps);
  std::vector<int64_t> dims;
  for (int64_t d = x.dim() - k; d < x.dim(); ++d) dims.push_back(d);
  Tensor centred = x - mean(x, dims, true);
  Tensor y = centred * pow(mean(centred * centred, dims, true) + eps, -0.5);
  if (weight.defined()) y = y * weight;
  if (bias.defined()) y = y + bias;
  return y;
}

}  // namespace tapegrad
