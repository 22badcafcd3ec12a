// DenseNet-121 as in the AdaBound paper's reference code (kuangliu/pytorch-cifar, models/densenet.py):
// bottleneck blocks [6, 12, 24, 16], growth rate 32, transitions with reduction 0.5, a CIFAR stem (one 3x3
// conv to 2 * growth channels, no pooling), then BN, ReLU, 4x4 average pool and linear -> 10.
// 6,956,298 parameters. PyTorch's default initialisation.
//
//   x [N,3,32,32] -> conv1 [N,64,32,32] -> dense1 [N,256,32,32] -> trans1 [N,128,16,16] -> dense2 [N,512,16,16]
//     -> trans2 [N,256,8,8] -> dense3 [N,1024,8,8] -> trans3 [N,512,4,4] -> dense4 [N,1024,4,4]
//     -> bn relu avg_pool 4 -> [N,1024] -> linear -> [N,10]
//
// State-dict names are the reference code's: "dense1.0.bn1.weight", "dense1.0.conv2.weight",
// "trans1.conv.weight", "bn.running_var", "linear.bias", ...
#pragma once

#include <memory>
#include <vector>

#include "tapegrad/nn/conv.hpp"
#include "tapegrad/nn/layers.hpp"

namespace tapegrad::models {

// out = concat(conv2(relu(bn2(conv1(relu(bn1(x)))))), x) along channels: in -> in + growth.
class DenseBottleneck : public nn::Layer {
 public:
  DenseBottleneck(int64_t in_planes, int64_t growth, Generator& gen);
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<nn::BatchNorm2d> bn1, bn2;
  std::shared_ptr<nn::Conv2d> conv1, conv2;
};

// out = avg_pool2d(conv(relu(bn(x))), 2).
class DenseTransition : public nn::Layer {
 public:
  DenseTransition(int64_t in_planes, int64_t out_planes, Generator& gen);
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<nn::BatchNorm2d> bn;
  std::shared_ptr<nn::Conv2d> conv;
};

class DenseNet : public nn::Layer {
 public:
  // in_channels: 3 (RGB); 1 for grey images (the Fashion-MNIST stand-in for CIFAR-10).
  DenseNet(const std::vector<int64_t>& blocks, int64_t growth, double reduction, int64_t num_classes, Generator& gen,
           int64_t in_channels = 3);
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<nn::Conv2d> conv1;
  std::vector<std::shared_ptr<nn::Sequential>> dense;    // "dense1" .. "dense4"
  std::vector<std::shared_ptr<DenseTransition>> trans;   // "trans1" .. "trans3"
  std::shared_ptr<nn::BatchNorm2d> bn;
  std::shared_ptr<nn::Linear> linear;

 private:
  int64_t in_channels_ = 3;
};

std::shared_ptr<DenseNet> densenet121(int64_t num_classes = 10, Generator& gen = default_generator(),
                                      int64_t in_channels = 3);

}  // namespace tapegrad::models
