// custom_op: a new differentiable op written outside the library, with the public record() API.
//
// softplus(x) = log(1 + exp(x)), computed stably as max(x, 0) + log1p(exp(-|x|)); its derivative is
// sigmoid(x). The forward loops over the elements; when an input requires grad, record() puts a node on
// the tape whose backward turns the output gradient g into g * sigmoid(x) (x saved detached: the node
// keeps the values it needs, not the graph behind them). The program checks the gradient against central
// finite differences in f64, checks that nothing is recorded under NoGradGuard, then trains a small
// network with softplus activations. Exit code 0 on success, 1 otherwise.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <vector>

#include <tapegrad/tapegrad.hpp>

namespace tg = tapegrad;

template <class T>
static void softplus_forward(const T* x, T* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::max(x[i], T(0)) + std::log1p(std::exp(-std::abs(x[i])));
}

// y = softplus(x), any shape, F32 or F64;  dx = g * sigmoid(x)
tg::Tensor softplus(const tg::Tensor& x) {
  TG_CHECK(x.dtype() != tg::DType::I64 && x.device() == tg::Device::CPU, "softplus: x ", x.shape(), " of ",
           x.dtype(), " on ", x.device(), ": expected a float tensor on the CPU");
  tg::Tensor y = tg::empty(x.shape(), x.dtype());
  if (x.dtype() == tg::DType::F32) softplus_forward(x.data<float>(), y.data<float>(), x.numel());
  else softplus_forward(x.data<double>(), y.data<double>(), x.numel());
  if (tg::needs_grad({x}))
    tg::record("softplus", {x}, {y}, [x = x.detach()](const tg::Grads& g) {
      return tg::Grads{g[0] * tg::sigmoid(x)};
    });
  return y;
}

// A layer that applies it, so that it chains in a Sequential.
class Softplus : public tg::nn::Layer {
 public:
  Softplus() : Layer("Softplus") {}
  tg::Tensor forward(const tg::Tensor& x) override { return softplus(x); }
};

// The largest relative difference between the gradient of f(a) = sum(w * softplus(a @ b)) with respect to a
// and central finite differences, in f64.
static double gradient_error(tg::Generator& gen) {
  const tg::Tensor a = tg::randn({3, 4}, gen, tg::DType::F64).requires_grad_();
  const tg::Tensor b = tg::mul(tg::randn({4, 5}, gen, tg::DType::F64), 2.0);
  const tg::Tensor w = tg::randn({3, 5}, gen, tg::DType::F64);
  auto f = [&](const tg::Tensor& x) { return tg::sum(w * softplus(tg::matmul(x, b))); };
  f(a).backward();
  const auto grad = a.grad().to_vector<double>();
  double worst = 0;
  const double h = 1e-6;
  tg::NoGradGuard no_grad;
  for (int64_t i = 0; i < a.numel(); ++i) {
    tg::Tensor plus = a.clone(), minus = a.clone();
    plus.data<double>()[i] += h;
    minus.data<double>()[i] -= h;
    const double numeric = (f(plus).item() - f(minus).item()) / (2 * h);
    worst = std::max(worst, std::abs(numeric - grad[i]) / std::max(1.0, std::abs(numeric)));
  }
  return worst;
}

int main() {
  tg::Generator gen(5);
  const double error = gradient_error(gen);
  std::printf("custom_op: softplus gradient vs finite differences (f64): largest relative error %.2e\n", error);

  // One node on the tape while recording, none under NoGradGuard.
  const tg::Tensor leaf = tg::randn({8}, gen).requires_grad_();
  const size_t before = tg::tape_size();
  const tg::Tensor recorded = softplus(leaf);
  const size_t recorded_nodes = tg::tape_size() - before;
  size_t recorded_under_guard = 0;
  {
    tg::NoGradGuard no_grad;
    const tg::Tensor y = softplus(leaf);
    recorded_under_guard = tg::tape_size() - before - recorded_nodes;
  }

  // Fit |x| on [-2, 2] with softplus hidden units (a smooth cousin of relu).
  const tg::Tensor x = tg::arange(-2.0, 2.0, 1.0 / 64).reshape({-1, 1});
  const tg::Tensor target = tg::sqrt(x * x);
  tg::nn::Sequential model{std::make_shared<tg::nn::Linear>(1, 16, true, gen), std::make_shared<Softplus>(),
                           std::make_shared<tg::nn::Linear>(16, 1, true, gen)};
  auto opt = tg::optim::make("adam:lr=3e-2", model.parameters());
  double loss = 0;
  for (int step = 0; step < 1500; ++step) {
    opt->zero_grad();
    const tg::Tensor l = tg::mse_loss(model(x), target);
    l.backward();
    opt->step();
    loss = l.item();
  }
  std::printf("custom_op: nodes recorded: %zu, under NoGradGuard: %zu; fitting |x| with softplus units: MSE %.2e\n",
              recorded_nodes, recorded_under_guard, loss);
  if (!(error < 1e-7 && recorded_nodes == 1 && recorded_under_guard == 0 && loss < 1e-3)) {
    std::printf("FAILED: expected a gradient error below 1e-7, one node (none under the guard), an MSE below 1e-3\n");
    return 1;
  }
  return 0;
}
