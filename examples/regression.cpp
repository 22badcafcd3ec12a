// regression: a small network fitted to a smooth function of two variables, with float targets.
//
// The data is a TensorDataset of x [N, 2] and y [N, 1] = sin(2 x0) + x1^2 / 2, the loader shuffles it from a
// seed into batches of 64, an MLP 2 -> 32 -> 32 -> 1 (tanh) is trained with Adam on the mean squared error.
// The program checks itself: the held-out error must fall below 2% of the targets' variance (what a network
// that only learnt the mean would get is 100%). Exit code 0 on success, 1 otherwise.
#include <cmath>
#include <cstdio>
#include <memory>
#include <vector>

#include <tapegrad/datasets/loader.hpp>
#include <tapegrad/tapegrad.hpp>

namespace tg = tapegrad;

// n points of [-2, 2]^2 and their targets.
static std::shared_ptr<tg::datasets::TensorDataset> make_data(int64_t n, tg::Generator& gen) {
  std::vector<float> x(static_cast<size_t>(2 * n)), y(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const double a = gen.uniform(-2, 2), b = gen.uniform(-2, 2);
    x[2 * i] = static_cast<float>(a);
    x[2 * i + 1] = static_cast<float>(b);
    y[i] = static_cast<float>(std::sin(2 * a) + b * b / 2);
  }
  return std::make_shared<tg::datasets::TensorDataset>(tg::from_vector(x, {n, 2}), tg::from_vector(y, {n, 1}));
}

int main() {
  tg::Generator gen(1);
  const auto train = make_data(1024, gen), test = make_data(256, gen);

  tg::nn::Sequential model{std::make_shared<tg::nn::Linear>(2, 32, true, gen), std::make_shared<tg::nn::Tanh>(),
                           std::make_shared<tg::nn::Linear>(32, 32, true, gen), std::make_shared<tg::nn::Tanh>(),
                           std::make_shared<tg::nn::Linear>(32, 1, true, gen)};
  auto opt = tg::optim::make("adam:lr=1e-2", model.parameters());
  tg::datasets::DataLoader loader(train, {.batch_size = 64, .seed = 7});

  for (int64_t epoch = 0; epoch < 60; ++epoch) {
    loader.set_epoch(epoch);
    for (int64_t b = 0; b < loader.num_batches(); ++b) {
      const tg::datasets::Batch batch = loader.batch(b);  // x [64, 2], y [64, 1]
      opt->zero_grad();
      tg::mse_loss(model(batch.x), batch.y).backward();
      opt->step();
    }
    if (epoch == 29) opt->set_lr(1e-3);  // a finer second half
  }

  tg::datasets::DataLoader test_loader(test, {.batch_size = 256, .shuffle = false});
  const tg::datasets::Batch all = test_loader.batch(0);  // the whole held-out set
  tg::NoGradGuard no_grad;
  const double mse = tg::mse_loss(model(all.x), all.y).item();
  const double var = tg::mean(tg::pow(all.y - tg::mean(all.y), 2)).item();
  std::printf("regression: held-out MSE %.5f, target variance %.4f (%.2f%%)\n", mse, var, 100 * mse / var);
  if (!(mse < 0.02 * var)) {
    std::printf("FAILED: the held-out MSE should be below 2%% of the variance\n");
    return 1;
  }
  return 0;
}
