// The basic layers: Linear, ReLU, Tanh, Dropout, Sequential.
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
