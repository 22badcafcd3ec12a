// Initialisation functions (PyTorch's formulas), in place, outside autograd.
#include "tapegrad/nn/init.hpp"

#include <cmath>

#include "../internal.hpp"

namespace tapegrad::nn::init {

static int64_t receptive(const Tensor& t) {
  int64_t r = 1;
  for (int64_t k = 2; k < t.dim(); ++k) r *= t.shape()[k];
  return r;
}
int64_t fan_in(const Tensor& t) {
  TG_CHECK(t.dim() >= 2, "init: fan in/out need at least 2 dims, got shape ", t.shape());
  return t.shape()[1] * receptive(t);
}
int64_t fan_out(const Tensor& t) {
  TG_CHECK(t.dim() >= 2, "init: fan in/out need at least 2 dims, got shape ", t.shape());
  return t.shape()[0] * receptive(t);
}

double calculate_gain(Nonlinearity nl, double param) {
  switch (nl) {
    case Nonlinearity::Linear:
    case Nonlinearity::Sigmoid: return 1.0;
    case Nonlinearity::Tanh: return 5.0 / 3.0;
    case Nonlinearity::ReLU: return std::sqrt(2.0);
    case Nonlinearity::LeakyReLU: return std::sqrt(2.0 / (1.0 + param * param));
  }
  return 1.0;
}

template <class F>
static void fill_with(Tensor& t, const char* op, F draw) {
  dispatch_float(t.dtype(), op, [&]<class T>() {
    T* p = t.data<T>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<T>(draw());
  });
}

void uniform_(Tensor& t, double lo, double hi, Generator& gen) {
  TG_CHECK(lo <= hi, "uniform_: lo ", lo, " > hi ", hi);
  fill_with(t, "uniform_", [&] { return gen.uniform(lo, hi); });
}
void normal_(Tensor& t, double mean, double std, Generator& gen) {
  TG_CHECK(std >= 0, "normal_: std must be >= 0, got ", std);
  fill_with(t, "normal_", [&] { return gen.normal(mean, std); });
}
void constant_(Tensor& t, double value) { t.fill_(value); }

void kaiming_uniform_(Tensor& t, double a, Nonlinearity nl, Generator& gen) {
  double bound = calculate_gain(nl, a) * std::sqrt(3.0 / static_cast<double>(fan_in(t)));
  uniform_(t, -bound, bound, gen);
}
void kaiming_normal_(Tensor& t, double a, Nonlinearity nl, Generator& gen) {
  normal_(t, 0.0, calculate_gain(nl, a) / std::sqrt(static_cast<double>(fan_in(t))), gen);
}
void xavier_uniform_(Tensor& t, double gain, Generator& gen) {
  double bound = gain * std::sqrt(6.0 / static_cast<double>(fan_in(t) + fan_out(t)));
  uniform_(t, -bound, bound, gen);
}
void xavier_normal_(Tensor& t, double gain, Generator& gen) {
  normal_(t, 0.0, gain * std::sqrt(2.0 / static_cast<double>(fan_in(t) + fan_out(t))), gen);
}

}  // namespace tapegrad::nn::init
