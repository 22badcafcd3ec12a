// A user program built against an installed tapegrad (pkg-config) or tapegrad as a Meson subproject:
// trains y = 2x - 1 with a Linear layer and Adam, and checks that it learned.
#include <tapegrad/tapegrad.hpp>

#include <cmath>
#include <cstdio>

namespace tg = tapegrad;

int main() {
  tg::Generator gen(1);
  tg::nn::Linear layer(1, 1, true, gen);
  auto opt = tg::optim::make("adam:lr=0.05", layer.parameters());
  tg::Tensor x = tg::randn({64, 1}, gen);
  tg::Tensor y = x * 2.0 - 1.0;
  double loss = 0;
  for (int step = 0; step < 400; ++step) {
    opt->zero_grad();
    tg::Tensor l = tg::mse_loss(layer(x), y);
    l.backward();
    opt->step();
    loss = l.item();
  }
  double w = layer.weight.item(), b = layer.bias.item();
  std::printf("loss %.3g, w %.4f, b %.4f\n", loss, w, b);
  return std::abs(w - 2) < 1e-2 && std::abs(b + 1) < 1e-2 ? 0 : 1;
}
