#include "tapegrad/models/densenet.hpp"

#include <cmath>
#include <string>

#include "tapegrad/ops.hpp"

namespace tapegrad::models {

DenseBottleneck::DenseBottleneck(int64_t in_planes, int64_t growth, Generator& gen) : nn::Layer("Bottleneck") {
  bn1 = register_module("bn1", std::make_shared<nn::BatchNorm2d>(in_planes));
  conv1 = register_module("conv1", std::make_shared<nn::Conv2d>(in_planes, 4 * growth, 1, 1, 0, false, gen));
  bn2 = register_module("bn2", std::make_shared<nn::BatchNorm2d>(4 * growth));
  conv2 = register_module("conv2", std::make_shared<nn::Conv2d>(4 * growth, growth, 3, 1, 1, false, gen));
}

Tensor DenseBottleneck::forward(const Tensor& x) {
  Tensor out = conv1->forward(bn1->forward_relu(x));
  out = conv2->forward(bn2->forward_relu(out));
  return concat({out, x}, 1);
}

DenseTransition::DenseTransition(int64_t in_planes, int64_t out_planes, Generator& gen) : nn::Layer("Transition") {
  bn = register_module("bn", std::make_shared<nn::BatchNorm2d>(in_planes));
  conv = register_module("conv", std::make_shared<nn::Conv2d>(in_planes, out_planes, 1, 1, 0, false, gen));
}

Tensor DenseTransition::forward(const Tensor& x) { return avg_pool2d(conv->forward(bn->forward_relu(x)), 2); }

DenseNet::DenseNet(const std::vector<int64_t>& blocks, int64_t growth, double reduction, int64_t num_classes,
                   Generator& gen, int64_t in_channels)
    : nn::Layer("DenseNet"), in_channels_(in_channels) {
  TG_CHECK(!blocks.empty() && growth > 0 && reduction > 0 && reduction <= 1, "DenseNet: invalid options (",
           blocks.size(), " blocks, growth ", growth, ", reduction ", reduction, ")");
  TG_CHECK(in_channels >= 1, "DenseNet: in_channels ", in_channels, " must be >= 1");
  int64_t planes = 2 * growth;
  conv1 = register_module("conv1", std::make_shared<nn::Conv2d>(in_channels, planes, 3, 1, 1, false, gen));
  for (size_t s = 0; s < blocks.size(); ++s) {
    auto block = register_module("dense" + std::to_string(s + 1), std::make_shared<nn::Sequential>());
    for (int64_t b = 0; b < blocks[s]; ++b) {
      block->push_back(std::make_shared<DenseBottleneck>(planes, growth, gen));
      planes += growth;
    }
    dense.push_back(block);
    if (s + 1 < blocks.size()) {
      auto out_planes = static_cast<int64_t>(std::floor(static_cast<double>(planes) * reduction));
      trans.push_back(register_module("trans" + std::to_string(s + 1),
                                      std::make_shared<DenseTransition>(planes, out_planes, gen)));
      planes = out_planes;
    }
  }
  bn = register_module("bn", std::make_shared<nn::BatchNorm2d>(planes));
  linear = register_module("linear", std::make_shared<nn::Linear>(planes, num_classes, true, gen));
}

Tensor DenseNet::forward(const Tensor& x) {
  TG_CHECK(x.dim() == 4 && x.size(1) == in_channels_, "DenseNet: input ", x.shape(), " is not a batch of ",
           in_channels_ == 3 ? "RGB images" : "images", " [N, ", in_channels_, ", H, W]");
  Tensor out = conv1->forward(x);
  for (size_t s = 0; s < dense.size(); ++s) {
    out = dense[s]->forward(out);
    if (s < trans.size()) out = trans[s]->forward(out);
  }
  out = avg_pool2d(bn->forward_relu(out), 4);
  return linear->forward(out.reshape({out.size(0), -1}));
}

std::shared_ptr<DenseNet> densenet121(int64_t num_classes, Generator& gen, int64_t in_channels) {
  return std::make_shared<DenseNet>(std::vector<int64_t>{6, 12, 24, 16}, 32, 0.5, num_classes, gen, in_channels);
}

}  // namespace tapegrad::models
