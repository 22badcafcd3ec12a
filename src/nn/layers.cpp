// Linear, ReLU, Tanh, Dropout, Sequential.
#include "tapegrad/nn/layers.hpp"

#include <cmath>

#include "tapegrad/nn/init.hpp"
#include "tapegrad/ops.hpp"

namespace tapegrad::nn {

Linear::Linear(int64_t in, int64_t out, bool with_bias, Generator& gen, DType dtype)
    : Layer("Linear"), in_features(in), out_features(out) {
  TG_CHECK(in > 0 && out > 0, "Linear: features must be positive, got in=", in, " out=", out);
  weight = register_parameter("weight", empty({out, in}, dtype));
  init::kaiming_uniform_(weight, std::sqrt(5.0), init::Nonlinearity::LeakyReLU, gen);
  if (with_bias) {
    double bound = 1.0 / std::sqrt(static_cast<double>(in));
    bias = register_parameter("bias", empty({out}, dtype));
    init::uniform_(bias, -bound, bound, gen);
  }
}

Tensor Linear::forward(const Tensor& x) { return linear(x, weight, bias); }

Tensor ReLU::forward(const Tensor& x) { return relu(x); }
Tensor Tanh::forward(const Tensor& x) { return tanh(x); }

Tensor GELU::forward(const Tensor& x) { return gelu(x, tanh_approximation); }
Tensor SiLU::forward(const Tensor& x) { return silu(x); }
Tensor LeakyReLU::forward(const Tensor& x) { return leaky_relu(x, negative_slope); }

LayerNorm::LayerNorm(Shape shape, double eps_, bool affine, DType dtype)
    : Layer("LayerNorm"), normalized_shape(std::move(shape)), eps(eps_) {
  bool positive = !normalized_shape.empty();
  for (int64_t n : normalized_shape) positive = positive && n > 0;
  TG_CHECK(positive && eps >= 0, "LayerNorm: invalid options normalized_shape=", normalized_shape, " eps=", eps);
  if (affine) {
    weight = register_parameter("weight", ones(normalized_shape, dtype));
    bias = register_parameter("bias", zeros(normalized_shape, dtype));
  }
}
Tensor LayerNorm::forward(const Tensor& x) { return layer_norm(x, normalized_shape, weight, bias, eps); }

Dropout::Dropout(double p_, Generator& gen) : Layer("Dropout"), p(p_), gen_(&gen) {
  TG_CHECK(p >= 0.0 && p < 1.0, "Dropout: p must be in [0, 1), got ", p);
}
Tensor Dropout::forward(const Tensor& x) { return dropout(x, p, is_training(), *gen_); }

Sequential::Sequential(std::initializer_list<std::shared_ptr<Layer>> layers) : Layer("Sequential") {
  for (auto& l : layers) push_back(l);
}

void Sequential::push_back(std::shared_ptr<Layer> layer) {
  register_module(std::to_string(layers_.size()), layer);
  layers_.push_back(std::move(layer));
}

const std::shared_ptr<Layer>& Sequential::operator[](size_t i) const {
  TG_CHECK(i < layers_.size(), "Sequential: index ", i, " is out of range (", layers_.size(), " layers)");
  return layers_[i];
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor y = x;
  for (auto& l : layers_) y = l->forward(y);
  return y;
}

}  // namespace tapegrad::nn
