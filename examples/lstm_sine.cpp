// lstm_sine: a sequence model that learns to continue sine waves.
//
// Each sample is a wave sin(w t + phase) over T = 32 steps, with w in [0.15, 0.45] and the phase drawn at
// random; the model (an LSTM of 32 units, then a linear read-out at every step) reads x_0 .. x_{t} and
// predicts x_{t+1}. The first 4 steps are left out of the loss: the period cannot be told from fewer
// values. The loader gives batches x [B, T, 1], which become [T, B, 1] (sequence first) for the LSTM; the
// inputs get a little noise (std 0.03) in training, so that the model learns to correct small errors
// instead of compounding them when it runs on its own predictions.
// After training, the model runs on its own: it reads 16 values of unseen waves and then feeds back its
// predictions for 16 more steps. Exit code 0 when the held-out one-step error is below 1e-3 and the free
// run stays within 0.1 (root mean square) of the true waves, 1 otherwise.
#include <cmath>
#include <cstdio>
#include <memory>
#include <numbers>
#include <vector>

#include <tapegrad/datasets/loader.hpp>
#include <tapegrad/tapegrad.hpp>

namespace tg = tapegrad;

constexpr int64_t kSteps = 32, kWarmup = 4;

// x [T, B, 1] -> predictions [T, B, 1], with the LSTM's final state.
class SineModel : public tg::nn::Module {
 public:
  explicit SineModel(tg::Generator& gen) : Module("SineModel") {
    lstm = register_module("lstm", std::make_shared<tg::nn::LSTM>(1, 32, 1, 0.0, true, gen));
    head = register_module("head", std::make_shared<tg::nn::Linear>(32, 1, true, gen));
  }
  tg::nn::LSTMResult operator()(const tg::Tensor& x, const tg::nn::LSTMState& state = {}) {
    tg::nn::LSTMResult r = (*lstm)(x, state);
    const int64_t t = x.size(0), b = x.size(1);
    r.output = (*head)(r.output.reshape({t * b, 32})).reshape({t, b, 1});
    return r;
  }
  std::shared_ptr<tg::nn::LSTM> lstm;
  std::shared_ptr<tg::nn::Linear> head;
};

// n waves of kSteps + 1 values: x = values 0..T-1, y = values 1..T (the next value), each [n, T, 1].
static std::shared_ptr<tg::datasets::TensorDataset> waves(int64_t n, tg::Generator& gen) {
  std::vector<float> x, y;
  for (int64_t i = 0; i < n; ++i) {
    const double w = gen.uniform(0.15, 0.45), phase = gen.uniform(0, 2 * std::numbers::pi);
    for (int64_t t = 0; t < kSteps; ++t) {
      x.push_back(static_cast<float>(std::sin(w * static_cast<double>(t) + phase)));
      y.push_back(static_cast<float>(std::sin(w * static_cast<double>(t + 1) + phase)));
    }
  }
  return std::make_shared<tg::datasets::TensorDataset>(tg::from_vector(x, {n, kSteps, 1}),
                                                        tg::from_vector(y, {n, kSteps, 1}), "waves");
}

// The loss over steps kWarmup.. of sequence-first predictions and targets.
static tg::Tensor loss_after_warmup(const tg::Tensor& predicted, const tg::Tensor& target) {
  return tg::mse_loss(predicted.slice(0, kWarmup, kSteps), target.slice(0, kWarmup, kSteps));
}

int main() {
  tg::Generator gen(2);
  const auto train = waves(512, gen), test = waves(128, gen);
  SineModel model(gen);
  auto opt = tg::optim::make("adam:lr=1e-2", model.parameters());
  tg::datasets::DataLoader loader(train, {.batch_size = 32, .seed = 4});
  for (int64_t epoch = 0; epoch < 60; ++epoch) {
    if (epoch == 45) opt->set_lr(2e-3);
    loader.set_epoch(epoch);
    for (int64_t b = 0; b < loader.num_batches(); ++b) {
      const tg::datasets::Batch batch = loader.batch(b);  // x, y [32, T, 1]
      opt->zero_grad();
      const tg::Tensor x = batch.x.permute({1, 0, 2}), y = batch.y.permute({1, 0, 2});  // [T, 32, 1]
      const tg::Tensor noisy = x + tg::randn(x.shape(), gen) * 0.03;
      loss_after_warmup(model(noisy).output, y).backward();
      opt->step();
    }
  }

  tg::NoGradGuard no_grad;
  tg::datasets::DataLoader test_loader(test, {.batch_size = test->size(), .shuffle = false});
  const tg::datasets::Batch all = test_loader.batch(0);
  const tg::Tensor x = all.x.permute({1, 0, 2}), y = all.y.permute({1, 0, 2});  // [T, 128, 1]
  const double one_step = loss_after_warmup(model(x).output, y).item();

  // Free run: read the first half, then feed each prediction back as the next input.
  const int64_t seen = kSteps / 2;
  tg::nn::LSTMResult r = model(x.slice(0, 0, seen));
  tg::Tensor next = r.output.slice(0, seen - 1, seen);  // [1, 128, 1]: the prediction of value `seen`
  double squared = 0;
  for (int64_t t = seen; t < kSteps; ++t) {
    squared += tg::mse_loss(next, x.slice(0, t, t + 1)).item();
    r = model(next, r.state);
    next = r.output;
  }
  const double free_rms = std::sqrt(squared / static_cast<double>(kSteps - seen));
  std::printf("lstm_sine: held-out one-step MSE %.2e; free run of %lld steps on its own predictions: RMS error %.3f\n",
              one_step, static_cast<long long>(kSteps - seen), free_rms);
  if (!(one_step < 1e-3 && free_rms < 0.1)) {
    std::printf("FAILED: expected a one-step MSE below 1e-3 and a free-run RMS error below 0.1\n");
    return 1;
  }
  return 0;
}
