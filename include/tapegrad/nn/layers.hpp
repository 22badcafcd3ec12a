// The basic layers: Linear, the activations, LayerNorm, Dropout, Sequential.
#pragma once

#include <initializer_list>
#include <memory>
#include <vector>

#include "tapegrad/nn/module.hpp"

namespace tapegrad::nn {

// y = x W^T + b. x [*, in] -> [*, out] (any leading dims, as PyTorch). weight [out, in], bias [out]. PyTorch's initialisation:
// weight ~ kaiming_uniform(a = sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)), bias ~ U(-1/sqrt(in), 1/sqrt(in)).
class Linear : public Layer {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true,
         Generator& gen = default_generator(), DType dtype = DType::F32);
  Tensor forward(const Tensor& x) override;
  int64_t in_features, out_features;
  Tensor weight, bias;
};

class ReLU : public Layer {
 public:
  ReLU() : Layer("ReLU") {}
  Tensor forward(const Tensor& x) override;
};

class Tanh : public Layer {
 public:
  Tanh() : Layer("Tanh") {}
  Tensor forward(const Tensor& x) override;
};

// gelu (ops.hpp): exact by default, tanh_approximation as PyTorch's GELU(approximate="tanh").
class GELU : public Layer {
 public:
  explicit GELU(bool tanh_approximation = false) : Layer("GELU"), tanh_approximation(tanh_approximation) {}
  Tensor forward(const Tensor& x) override;
  bool tanh_approximation;
};

class SiLU : public Layer {
 public:
  SiLU() : Layer("SiLU") {}
  Tensor forward(const Tensor& x) override;
};

class LeakyReLU : public Layer {
 public:
  explicit LeakyReLU(double negative_slope = 0.01) : Layer("LeakyReLU"), negative_slope(negative_slope) {}
  Tensor forward(const Tensor& x) override;
  double negative_slope;
};

// Layer normalisation over the last dims, x [*, normalized_shape] (ops.hpp: layer_norm). With
// elementwise_affine, parameters weight (1) and bias (0) of normalized_shape, as PyTorch names them.
class LayerNorm : public Layer {
 public:
  explicit LayerNorm(Shape normalized_shape, double eps = 1e-5, bool elementwise_affine = true,
                     DType dtype = DType::F32);
  Tensor forward(const Tensor& x) override;
  Shape normalized_shape;
  double eps;
  Tensor weight, bias;
};

// Inverted dropout in training, identity in evaluation. The generator must outlive the layer.
class Dropout : public Layer {
 public:
  explicit Dropout(double p = 0.5, Generator& gen = default_generator());
  Tensor forward(const Tensor& x) override;
  double p;

 private:
  Generator* gen_;
};

// Chains layers; children are named "0", "1", ...
class Sequential : public Layer {
 public:
  Sequential() : Layer("Sequential") {}
  Sequential(std::initializer_list<std::shared_ptr<Layer>> layers);
  void push_back(std::shared_ptr<Layer> layer);
  Tensor forward(const Tensor& x) override;
  size_t size() const { return layers_.size(); }
  const std::shared_ptr<Layer>& operator[](size_t i) const;  // an Error beyond size()

 private:
  std::vector<std::shared_ptr<Layer>> layers_;
};

}  // namespace tapegrad::nn
