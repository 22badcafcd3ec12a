// The ResNets of the AdaBound paper's CIFAR-10 experiments.
//
// ResNet-34 as in the paper's reference code (kuangliu/pytorch-cifar, models/resnet.py): a 3x3 stem of 64
// channels (no max-pool), basic blocks [3, 4, 6, 3] with 64, 128, 256, 512 channels, projection shortcuts
// (1x1 conv + BN, "shortcut.0" / "shortcut.1") where the shape changes, 4x4 average pool, linear 512 -> 10.
// 21,282,122 parameters. PyTorch's default initialisation everywhere.
//
//   x [N,3,32,32] -> conv1 bn1 relu [N,64,32,32] -> layer1 [N,64,32,32] -> layer2 [N,128,16,16]
//     -> layer3 [N,256,8,8] -> layer4 [N,512,4,4] -> avg_pool 4 -> [N,512] -> linear -> [N,10]
//
// ResNet-20 as in He et al. 2016, section 4.2 (the layout of akamaster/pytorch_resnet_cifar10): a 3x3 stem of
// 16 channels, three stages of 3 basic blocks with 16, 32, 64 channels, identity shortcuts that subsample
// and zero-pad the channels where the shape changes (option A, no parameters), global average pool, linear
// 64 -> 10. 269,722 parameters. Conv and linear weights ~ kaiming_normal (as that code), biases PyTorch's.
//
// State-dict names are those of the reference code: "conv1.weight", "layer1.0.conv1.weight",
// "layer1.0.bn1.running_mean", "layer2.0.shortcut.0.weight", "linear.weight", ...
#pragma once

#include <memory>
#include <vector>

#include "tapegrad/nn/conv.hpp"
#include "tapegrad/nn/layers.hpp"

namespace tapegrad::models {

// Two 3x3 convs with BN; out = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)).
class BasicBlock : public nn::Layer {
 public:
  enum class Shortcut { Projection, ZeroPad };  // kuangliu (1x1 conv + BN) or option A (ResNet-20)
  BasicBlock(int64_t in_planes, int64_t planes, int64_t stride, Shortcut kind, Generator& gen);
  Tensor forward(const Tensor& x) override;

  std::shared_ptr<nn::Conv2d> conv1, conv2;
  std::shared_ptr<nn::BatchNorm2d> bn1, bn2;
  std::shared_ptr<nn::Sequential> shortcut;  // projection; empty for identity

 private:
  Shortcut kind_;
  int64_t in_planes_, planes_, stride_;
};

class ResNet : public nn::Layer {
 public:
  // widths: channels per stage; blocks: blocks per stage; stem: channels of the 3x3 stem.
  // in_channels: 3 (RGB); 1 for grey images (the Fashion-MNIST stand-in for CIFAR-10).
  ResNet(const std::vector<int64_t>& blocks, const std::vector<int64_t>& widths, int64_t stem,
         BasicBlock::Shortcut kind, int64_t num_classes, Generator& gen, int64_t in_channels = 3);
  Tensor forward(const Tensor& x) override;

  std::shared_ptr<nn::Conv2d> conv1;
  std::shared_ptr<nn::BatchNorm2d> bn1;
  std::vector<std::shared_ptr<nn::Sequential>> layers;  // "layer1", "layer2", ...
  std::shared_ptr<nn::Linear> linear;

 private:
  int64_t pool_ = 0;  // the reference's final avg_pool2d kernel (4); 0: the whole plane
  int64_t in_channels_ = 3;
};

std::shared_ptr<ResNet> resnet34(int64_t num_classes = 10, Generator& gen = default_generator(),
                                 int64_t in_channels = 3);
std::shared_ptr<ResNet> resnet20(int64_t num_classes = 10, Generator& gen = default_generator(),
                                 int64_t in_channels = 3);

}  // namespace tapegrad::models
