// The CIFAR models of the paper: parameter counts of the reference code, output shapes, state-dict names,
// a training step, checkpoints by name. Kept fast: f32, batch 1 or 2, one forward of each big model.
#include <doctest/doctest.h>

#include <unistd.h>

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
