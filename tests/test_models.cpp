// The CIFAR models of the paper: parameter counts of the reference code, output shapes, state-dict names,
// a training step, checkpoints by name. Kept fast: f32, batch 1 or 2, one forward of each big model.
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>

#include "tapegrad/models/densenet.hpp"
#include "tapegrad/models/resnet.hpp"
#include "tapegrad/tapegrad.hpp"

namespace tg = tapegrad;
using tg::Shape;
using tg::Tensor;

TEST_CASE("ResNet-20: 269,722 parameters, option-A shortcuts, a training step, names") {
  tg::Generator g(0);
  auto net = tg::models::resnet20(10, g);
  CHECK(net->num_parameters() == 269722);
  auto sd = net->state_dict();
  for (const char* k : {"conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "layer2.0.bn2.num_batches_tracked",
                        "layer3.2.conv2.weight", "linear.weight", "linear.bias"})
    CHECK_MESSAGE(sd.count(k), k);
  CHECK_FALSE(sd.count("layer2.0.shortcut.0.weight"));  // option A has no parameters
  Tensor x = tg::randn({2, 3, 32, 32}, g);
  Tensor y = (*net)(x);
  CHECK(y.shape() == Shape{2, 10});
  tg::cross_entropy(y, tg::from_vector(std::vector<int64_t>{3, 7}, {2})).backward();
  for (auto& [name, p] : net->named_parameters()) CHECK_MESSAGE(p.grad().defined(), name);
  CHECK(tg::tape_size() == 0);
}

TEST_CASE("ResNet-34 (kuangliu): 21,282,122 parameters, output [1, 10], names") {
  tg::Generator g(0);
  auto net = tg::models::resnet34(10, g);
  CHECK(net->num_parameters() == 21282122);
  auto sd = net->state_dict();
  for (const char* k : {"conv1.weight", "layer1.0.conv1.weight", "layer2.0.shortcut.0.weight",
                        "layer2.0.shortcut.1.running_var", "layer4.2.bn2.bias", "linear.weight"})
    CHECK_MESSAGE(sd.count(k), k);
  tg::NoGradGuard ng;
  CHECK((*net)(tg::randn({1, 3, 32, 32}, g)).shape() == Shape{1, 10});
}

TEST_CASE("DenseNet-121 (kuangliu): 6,956,298 parameters, output [1, 10], names") {
  tg::Generator g(0);
  auto net = tg::models::densenet121(10, g);
  CHECK(net->num_parameters() == 6956298);
  auto sd = net->state_dict();
  for (const char* k : {"conv1.weight", "dense1.0.bn1.weight", "dense1.5.conv2.weight", "trans1.conv.weight",
                        "trans3.bn.running_mean", "dense4.15.conv1.weight", "bn.num_batches_tracked", "linear.bias"})
    CHECK_MESSAGE(sd.count(k), k);
  CHECK(net->linear->in_features == 1024);
  tg::NoGradGuard ng;
  CHECK((*net)(tg::randn({1, 3, 32, 32}, g)).shape() == Shape{1, 10});
}

TEST_CASE("a ResNet-20 checkpoint saves and loads by name, BN buffers included") {
  tg::Generator g1(1), g2(2);
  auto a = tg::models::resnet20(10, g1), b = tg::models::resnet20(10, g2);
  (*a)(tg::randn({2, 3, 32, 32}, g1));  // moves the running statistics and counts a batch
  std::string path =
      (std::filesystem::temp_directory_path() / ("tg_resnet20_" + std::to_string(::getpid()) + ".safetensors")).string();
  tg::save_checkpoint(path, *a, nullptr);
  tg::load_checkpoint(path, *b, nullptr);
  std::filesystem::remove(path);
  auto sa = a->state_dict(), sb = b->state_dict();
  CHECK(sa.size() == sb.size());
  for (auto& [name, t] : sa) CHECK_MESSAGE(t.to_vector() == sb.at(name).to_vector(), name);
  CHECK(sb.at("layer1.0.bn1.num_batches_tracked").item() == 1);
  a->eval();
  b->eval();
  Tensor x = tg::randn({1, 3, 32, 32}, g1);
  CHECK((*a)(x).to_vector() == (*b)(x).to_vector());
}

namespace {

// One f64 training step of a model built by make from the same seed, with BatchNorm2d's fused batch_norm_relu
// or with batch_norm, add and relu apart: the loss, every parameter's gradient, every buffer afterwards.
template <class Make>
std::vector<std::vector<double>> fused_step(bool fuse, Make make) {
  tg::nn::BatchNorm2d::fuse = fuse;
  tg::Generator g(21);
  auto net = make(g);
  net->to(tg::DType::F64);
  Tensor x = tg::randn({3, 3, 8, 8}, g, tg::DType::F64);
  Tensor loss = tg::cross_entropy((*net)(x), tg::from_vector(std::vector<int64_t>{1, 0, 2}, {3}));
  loss.backward();
  tg::nn::BatchNorm2d::fuse = true;
  std::vector<std::vector<double>> out{loss.to_vector()};
  for (auto& [name, p] : net->named_parameters()) out.push_back(p.grad().to_vector());
  for (auto& [name, b] : net->named_buffers()) out.push_back(b.to_vector());
  return out;
}

}  // namespace

TEST_CASE("the fused batch norm + ReLU (+ residual) in ResNet and DenseNet: the unfused step's numbers (f64)") {
  auto resnet = [](tg::Generator& g) {
    return std::make_shared<tg::models::ResNet>(std::vector<int64_t>{1, 1}, std::vector<int64_t>{4, 8}, 4,
                                                tg::models::BasicBlock::Shortcut::ZeroPad, 3, g);
  };
  auto resnet_projection = [](tg::Generator& g) {
    return std::make_shared<tg::models::ResNet>(std::vector<int64_t>{1, 1}, std::vector<int64_t>{4, 8}, 4,
                                                tg::models::BasicBlock::Shortcut::Projection, 3, g);
  };
  auto densenet = [](tg::Generator& g) {
    return std::make_shared<tg::models::DenseNet>(std::vector<int64_t>{2, 2}, 4, 0.5, 3, g);
  };
  // Each tensor to 1e-12 of its largest element: the fused backward's sums may be split into vector lanes
  // differently, and those last-bit differences travel through the layers below.
  auto check = [](const std::vector<std::vector<double>>& a, const std::vector<std::vector<double>>& b) {
    REQUIRE(a.size() == b.size());
    for (size_t k = 0; k < a.size(); ++k) {
      REQUIRE(a[k].size() == b[k].size());
      double big = 0;
      for (double v : b[k]) big = std::max(big, std::abs(v));
      for (size_t i = 0; i < a[k].size(); ++i) CHECK(std::abs(a[k][i] - b[k][i]) <= 1e-12 * big);
    }
  };
  check(fused_step(true, resnet), fused_step(false, resnet));
  check(fused_step(true, resnet_projection), fused_step(false, resnet_projection));
  check(fused_step(true, densenet), fused_step(false, densenet));
}

TEST_CASE("a ResNet-20 checkpoint of the unfused layers loads into the fused ones: same names, same outputs") {
  tg::Generator g1(1), g2(2);
  tg::nn::BatchNorm2d::fuse = false;
  auto a = tg::models::resnet20(10, g1);
  (*a)(tg::randn({2, 3, 32, 32}, g1));  // moves the running statistics
  std::string path =
      (std::filesystem::temp_directory_path() / ("tg_resnet20_unfused_" + std::to_string(::getpid()) + ".safetensors"))
          .string();
  tg::save_checkpoint(path, *a, nullptr);
  tg::nn::BatchNorm2d::fuse = true;
  auto b = tg::models::resnet20(10, g2);
  tg::load_checkpoint(path, *b, nullptr);
  std::filesystem::remove(path);
  auto sa = a->state_dict(), sb = b->state_dict();
  CHECK(sa.size() == sb.size());
  for (auto& [name, t] : sa) CHECK_MESSAGE(t.to_vector() == sb.at(name).to_vector(), name);
  a->eval();
  b->eval();
  Tensor x = tg::randn({1, 3, 32, 32}, g1);
  tg::nn::BatchNorm2d::fuse = false;
  auto ya = (*a)(x).to_vector();
  tg::nn::BatchNorm2d::fuse = true;
  auto yb = (*b)(x).to_vector();
  REQUIRE(ya.size() == yb.size());
  for (size_t i = 0; i < ya.size(); ++i) CHECK(yb[i] == doctest::Approx(ya[i]).epsilon(1e-6));
}
