// Model parity across devices: the replications' models (ResNet-20, ResNet-34, DenseNet-121, the LSTM language
// model), built on the CPU from one seed and moved, give on the device under test the CPU's loss and parameter
// gradients on one batch (f32: 1e-4 relative on the loss and on every gradient's norm), and a 20-step training
// run from the same weights on the same batches gives the CPU's losses to 1e-3 relative. Batches are small (2
// images of 32x32, the smallest the CIFAR models' final 4x4 pooling allows) so that the CPU side stays fast.
//
// The device comes from TG_TEST_DEVICE (cuda or test), as in test_backend_ops. On cuda without a GPU it is
// SKIPPED (exit 77, "no CUDA device"); on the test device (the CPU kernels under another tag) it checks the
// plumbing: models, batches and optimizer state that silently stay on the CPU meet a test-device operand and throw.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "tapegrad/models/densenet.hpp"
#include "tapegrad/models/lstm_lm.hpp"
#include "tapegrad/models/resnet.hpp"
#include "tapegrad/nn/utils.hpp"
#include "tapegrad/optim/make.hpp"
#include "tapegrad/tapegrad.hpp"

namespace tg = tapegrad;
using tg::Device;
using tg::Tensor;

namespace {

Device g_device = Device::Test;

// A model of the replications, how to build it (on the CPU) and the loss of its batch `step` on a device.
struct ModelCase {
  std::string name;
  std::function<std::shared_ptr<tg::nn::Module>(tg::Generator&)> make;
  std::function<Tensor(tg::nn::Module&, int64_t step, Device)> loss;
  std::string optim;  // of the 20-step run
  double clip = 0;    // gradient norm clipping of the 20-step run (0: none)
};

// Batch `step` of a CIFAR-sized classifier: drawn on the host from the step alone, then sent to `d`.
Tensor image_loss(tg::nn::Module& m, int64_t step, Device d, int64_t batch) {
  tg::Generator data(100 + static_cast<uint64_t>(step));
  const Tensor x = tg::randn({batch, 3, 32, 32}, data), y = tg::randint(10, {batch}, data);
  return tg::cross_entropy(static_cast<tg::nn::Layer&>(m)(x.to(d)), y.to(d));  // [B, 10] -> mean
}

// ResNet-20, ResNet-34 or DenseNet-121 for CIFAR-10 (3 channels, 10 classes) on batches of `batch` images.
ModelCase cnn(const std::string& name, int64_t batch) {
  return {name,
          [name](tg::Generator& g) -> std::shared_ptr<tg::nn::Module> {
            if (name == "ResNet-20") return tg::models::resnet20(10, g, 3);
            if (name == "ResNet-34") return tg::models::resnet34(10, g, 3);
            return tg::models::densenet121(10, g, 3);
          },
          [batch](tg::nn::Module& m, int64_t step, Device d) { return image_loss(m, step, d, batch); },
          "adabound:lr=1e-3,final_lr=0.1,gamma=1e-3,weight_decay=5e-4"};
}

// The LSTM language model (2 layers, no dropout: the masks are not what is compared) on tokens [T, B].
ModelCase lstm_lm() {
  const tg::models::LMOptions o{.vocab = 60, .emb = 24, .hidden = 32, .layers = 2, .dropout = 0.0};
  return {"LSTM LM",
          [o](tg::Generator& g) { return std::make_shared<tg::models::LSTMLanguageModel>(o, g); },
          [o](tg::nn::Module& m, int64_t step, Device d) {
            tg::Generator data(200 + static_cast<uint64_t>(step));
            const Tensor tokens = tg::randint(o.vocab, {9, 4}, data);  // [T + 1, B]
            const Tensor input = tokens.slice(0, 0, 8), target = tokens.slice(0, 1, 9).reshape({32});
            auto& lm = static_cast<tg::models::LSTMLanguageModel&>(m);
            return tg::cross_entropy(lm(input.to(d), {}).logits, target.to(d));
          },
          "sgd:lr=1,momentum=0.9", 0.25};
}

std::shared_ptr<tg::nn::Module> build(const ModelCase& c, Device d) {
  tg::Generator init(1);
  auto model = c.make(init);  // on the CPU: the same weights on every device
  model->to(d);
  model->train();
  return model;
}

double norm_of(const Tensor& t) {
  double s = 0;
  for (double v : t.to_vector<double>()) s += v * v;
  return std::sqrt(s);
}

bool close(double a, double b, double rel) { return std::abs(a - b) <= rel * std::max(std::abs(b), 1e-6); }

// Forward and backward of batch 0: the loss and every parameter's gradient norm.
void check_one_batch(const ModelCase& c) {
  std::vector<std::pair<std::string, double>> norms[2];
  double losses[2];
  int k = 0;
  for (Device d : {Device::CPU, g_device}) {
    auto model = build(c, d);
    Tensor loss = c.loss(*model, 0, d);
    CHECK(loss.device() == d);
    loss.backward();
    losses[k] = loss.item();
    for (const auto& [name, p] : model->named_parameters()) {
      REQUIRE_MESSAGE(p.grad().defined(), c.name, ": parameter ", name, " has no gradient on ", tg::name(d));
      CHECK(p.grad().device() == d);
      norms[k].emplace_back(name, norm_of(p.grad()));
    }
    ++k;
  }
  INFO(c.name, ": loss cpu ", losses[0], ", ", std::string(tg::name(g_device)), " ", losses[1]);
  CHECK(std::isfinite(losses[0]));
  CHECK(close(losses[1], losses[0], 1e-4));
  REQUIRE(norms[0].size() == norms[1].size());
  int bad = 0;
  for (size_t i = 0; i < norms[0].size(); ++i)
    if (norms[0][i].first != norms[1][i].first || !close(norms[1][i].second, norms[0][i].second, 1e-4)) {
      if (++bad <= 5)  // the first few, by name
        FAIL_CHECK(c.name, ": gradient of ", norms[0][i].first, ": norm cpu ", norms[0][i].second, ", ",
                   std::string(tg::name(g_device)), " ", norms[1][i].second);
    }
  CHECK_MESSAGE(bad == 0, c.name, ": ", bad, " of ", norms[0].size(), " gradient norms differ by more than 1e-4");
}

// 20 steps of training on each device from the same weights on the same batches (two, in turn: the model can
// learn them, so the run is seen to train): the losses agree to 1e-3.
void check_training(const ModelCase& c) {
  constexpr int kSteps = 20;
  std::vector<double> losses[2];
  int k = 0;
  for (Device d : {Device::CPU, g_device}) {
    auto model = build(c, d);
    auto opt = tg::optim::make(c.optim, model->parameters());
    for (int64_t s = 0; s < kSteps; ++s) {
      opt->zero_grad();
      Tensor loss = c.loss(*model, s % 2, d);
      loss.backward();
      if (c.clip > 0) tg::nn::clip_grad_norm(model->parameters(), c.clip);
      opt->step();
      losses[k].push_back(loss.item());
    }
    ++k;
  }
  for (int s = 0; s < kSteps; ++s) {
    INFO(c.name, ": step ", s + 1, " loss cpu ", losses[0][s], ", ", std::string(tg::name(g_device)), " ",
         losses[1][s]);
    CHECK(std::isfinite(losses[0][s]));
    CHECK(close(losses[1][s], losses[0][s], 1e-3));
  }
  CHECK(losses[0][kSteps - 2] + losses[0][kSteps - 1] < losses[0][0] + losses[0][1]);  // it trained
}

}  // namespace

TEST_CASE("ResNet-20, batch 2: one batch's loss and gradients, and 20 training steps, as on the CPU") {
  const ModelCase c = cnn("ResNet-20", 2);
  check_one_batch(c);
  check_training(c);
}

TEST_CASE("ResNet-34, batch 2: one batch's loss and gradients, and 20 training steps, as on the CPU") {
  const ModelCase c = cnn("ResNet-34", 2);
  check_one_batch(c);
  check_training(c);
}

TEST_CASE("DenseNet-121, batch 2: one batch's loss and gradients, and 20 training steps, as on the CPU") {
  const ModelCase c = cnn("DenseNet-121", 2);
  check_one_batch(c);
  check_training(c);
}

TEST_CASE("LSTM language model, 2 layers: one batch's loss and gradients, and 20 training steps, as on the CPU") {
  const ModelCase c = lstm_lm();
  check_one_batch(c);
  check_training(c);
}

int main(int argc, char** argv) {
  const char* env = std::getenv("TG_TEST_DEVICE");
  g_device = tg::device_from_name(env ? env : "test");
  if (g_device == Device::CPU) {
    std::cerr << "TG_TEST_DEVICE=cpu: the suite compares a device against the CPU\n";
    return 2;
  }
  if (g_device == Device::CUDA && !tg::cuda_available()) {
    std::cout << "SKIP: no CUDA device (a CPU-only build, or no GPU on this machine)\n";
    return 77;
  }
  std::cout << "model parity: cpu vs " << std::string(tg::name(g_device)) << "\n";
  doctest::Context ctx;
  ctx.applyCommandLine(argc, argv);
  return ctx.run();
}
