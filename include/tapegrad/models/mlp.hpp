// The perceptron of the AdaBound paper's MNIST experiment (Luo et al., ICLR 2019, section 5):
// one hidden layer with ReLU.
//
//   x [N, in] (or [N, 1, H, W], flattened) -> fc1 -> ReLU -> fc2 -> logits [N, out]
//
// Parameters: fc1.weight [hidden, in], fc1.bias [hidden], fc2.weight [out, hidden], fc2.bias [out],
// initialised as PyTorch's nn.Linear from `gen` (same seed, same weights).
#pragma once

#include <memory>

#include "tapegrad/nn/layers.hpp"

namespace tapegrad::models {

class MLP : public nn::Layer {
 public:
  MLP(int64_t in = 784, int64_t hidden = 256, int64_t out = 10, Generator& gen = default_generator());
  Tensor forward(const Tensor& x) override;

  std::shared_ptr<nn::Linear> fc1, fc2;
};

}  // namespace tapegrad::models
