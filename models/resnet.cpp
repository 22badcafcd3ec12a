#include "tapegrad/models/resnet.hpp"

#include <string>

#include "tapegrad/autograd.hpp"
#include "tapegrad/nn/init.hpp"
#include "tapegrad/ops.hpp"

namespace tapegrad::models {

BasicBlock::BasicBlock(int64_t in_planes, int64_t planes, int64_t stride, Shortcut kind, Generator& gen)
    : nn::Layer("BasicBlock"), kind_(kind), in_planes_(in_planes), planes_(planes), stride_(stride) {
  conv1 = register_module("conv1", std::make_shared<nn::Conv2d>(in_planes, planes, 3, stride, 1, false, gen));
  bn1 = register_module("bn1", std::make_shared<nn::BatchNorm2d>(planes));
  conv2 = register_module("conv2", std::make_shared<nn::Conv2d>(planes, planes, 3, 1, 1, false, gen));
  bn2 = register_module("bn2", std::make_shared<nn::BatchNorm2d>(planes));
  shortcut = register_module("shortcut", std::make_shared<nn::Sequential>());
  bool reshape = stride != 1 || in_planes != planes;
  if (reshape && kind == Shortcut::Projection) {
    shortcut->push_back(std::make_shared<nn::Conv2d>(in_planes, planes, 1, stride, 0, false, gen));
    shortcut->push_back(std::make_shared<nn::BatchNorm2d>(planes));
  }
  TG_CHECK(!reshape || kind == Shortcut::Projection || planes == in_planes + 2 * (planes / 4),
           "BasicBlock: a zero-padded shortcut from ", in_planes, " to ", planes, " channels needs planes = 2 * in_planes");
}

Tensor BasicBlock::forward(const Tensor& x) {
  Tensor out = conv2->forward(bn1->forward_relu(conv1->forward(x)));
  Tensor skip = x;
  if (kind_ == Shortcut::ZeroPad && (stride_ != 1 || in_planes_ != planes_)) {
    // x[:, :, ::stride, ::stride] with planes/4 zero channels on each side (option A).
    Tensor sub = stride_ != 1 ? max_pool2d(x, 1, stride_) : x;
    Tensor pad = zeros({sub.size(0), planes_ / 4, sub.size(2), sub.size(3)}, {sub.dtype(), sub.device()});
    skip = concat({pad, sub, pad}, 1);
  } else {
    skip = shortcut->forward(x);
  }
  return bn2->forward_relu(out, skip);  // relu(bn2(out) + skip) in one op
}

ResNet::ResNet(const std::vector<int64_t>& blocks, const std::vector<int64_t>& widths, int64_t stem,
               BasicBlock::Shortcut kind, int64_t num_classes, Generator& gen, int64_t in_channels)
    : nn::Layer("ResNet"), in_channels_(in_channels) {
  TG_CHECK(!blocks.empty() && blocks.size() == widths.size(), "ResNet: ", blocks.size(), " stage block counts for ",
           widths.size(), " widths");
  TG_CHECK(in_channels >= 1, "ResNet: in_channels ", in_channels, " must be >= 1");
  conv1 = register_module("conv1", std::make_shared<nn::Conv2d>(in_channels, stem, 3, 1, 1, false, gen));
  bn1 = register_module("bn1", std::make_shared<nn::BatchNorm2d>(stem));
  int64_t in = stem;
  for (size_t s = 0; s < blocks.size(); ++s) {
    auto layer = register_module("layer" + std::to_string(s + 1), std::make_shared<nn::Sequential>());
    for (int64_t b = 0; b < blocks[s]; ++b) {
      int64_t stride = (b == 0 && s > 0) ? 2 : 1;
      layer->push_back(std::make_shared<BasicBlock>(in, widths[s], stride, kind, gen));
      in = widths[s];
    }
    layers.push_back(layer);
  }
  linear = register_module("linear", std::make_shared<nn::Linear>(in, num_classes, true, gen));
  if (kind == BasicBlock::Shortcut::ZeroPad) {  // akamaster's _weights_init: kaiming_normal_ on conv/linear weights
    NoGradGuard ng;
    for (auto& [name, p] : named_parameters())
      if (p.dim() >= 2) nn::init::kaiming_normal_(p, 0.0, nn::init::Nonlinearity::LeakyReLU, gen);
  }
  pool_ = kind == BasicBlock::Shortcut::Projection ? 4 : 0;
}

Tensor ResNet::forward(const Tensor& x) {
  TG_CHECK(x.dim() == 4 && x.size(1) == in_channels_, "ResNet: input ", x.shape(), " is not a batch of ",
           in_channels_ == 3 ? "RGB images" : "images", " [N, ", in_channels_, ", H, W]");
  Tensor out = bn1->forward_relu(conv1->forward(x));
  for (auto& l : layers) out = l->forward(out);
  out = pool_ ? avg_pool2d(out, pool_) : avg_pool2d(out, out.size(3));
  return linear->forward(out.reshape({out.size(0), -1}));
}

std::shared_ptr<ResNet> resnet34(int64_t num_classes, Generator& gen, int64_t in_channels) {
  return std::make_shared<ResNet>(std::vector<int64_t>{3, 4, 6, 3}, std::vector<int64_t>{64, 128, 256, 512}, 64,
                                  BasicBlock::Shortcut::Projection, num_classes, gen, in_channels);
}

std::shared_ptr<ResNet> resnet20(int64_t num_classes, Generator& gen, int64_t in_channels) {
  return std::make_shared<ResNet>(std::vector<int64_t>{3, 3, 3}, std::vector<int64_t>{16, 32, 64}, 16,
                                  BasicBlock::Shortcut::ZeroPad, num_classes, gen, in_channels);
}

}  // namespace tapegrad::models
