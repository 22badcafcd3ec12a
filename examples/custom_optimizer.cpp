// A user-side optimizer (RMSprop, examples/custom_optimizer.hpp) training a small classifier, with a
// scheduler, like any built-in optimizer.
//
//   custom_optimizer        prints the loss every 50 steps
#include <cstdio>

#include <tapegrad/tapegrad.hpp>

#include "custom_optimizer.hpp"

using namespace tapegrad;

int main() {
  Generator gen(0);
  // Two Gaussian blobs in 2-D, labels 0 and 1.
  Tensor x = randn({200, 2}, gen);
  std::vector<int64_t> labels(200);
  for (int64_t i = 0; i < 200; ++i) labels[i] = i % 2;
  x = add(x, mul(from_vector(std::vector<float>(labels.begin(), labels.end()), {200, 1}), 3.0f));
  Tensor y = from_vector(labels, {200});

  nn::Linear hidden(2, 16, true, gen), out(16, 2, true, gen);
  std::vector<Tensor> params = hidden.parameters();
  for (const Tensor& p : out.parameters()) params.push_back(p);
  RMSprop opt(params, 1e-2, {.alpha = 0.9});
  optim::StepLR decay(opt, 100, 0.5);  // schedulers work with it too (here one "epoch" is one step)

  for (int step = 1; step <= 200; ++step) {
    Tensor loss = cross_entropy(out(tanh(hidden(x))), y);
    opt.zero_grad();
    loss.backward();
    opt.step();
    decay.step();
    if (step % 50 == 0) std::printf("step %3d  loss %.4f  lr %g\n", step, loss.item(), opt.lr());
  }
  std::printf("%s, state: %zu tensors\n", opt.describe().c_str(), opt.state_dict().size());
  return 0;
}
