// Initialisation functions, in place and outside autograd, drawing from a seeded generator.
// fan_in / fan_out of a tensor [out, in, k...] are in*prod(k) and out*prod(k), as in PyTorch.
#pragma once

#include "tapegrad/tensor.hpp"

namespace tapegrad::nn::init {

enum class Nonlinearity { Linear, ReLU, LeakyReLU, Tanh, Sigmoid };

int64_t fan_in(const Tensor& t);
int64_t fan_out(const Tensor& t);
double calculate_gain(Nonlinearity nl, double param = 0.01);

void uniform_(Tensor& t, double lo, double hi, Generator& gen = default_generator());
void normal_(Tensor& t, double mean, double std, Generator& gen = default_generator());
void constant_(Tensor& t, double value);
// bound = gain * sqrt(3 / fan_in), gain from nonlinearity with slope a (LeakyReLU by default, as PyTorch).
void kaiming_uniform_(Tensor& t, double a = 0.0, Nonlinearity nl = Nonlinearity::LeakyReLU,
                      Generator& gen = default_generator());
void kaiming_normal_(Tensor& t, double a = 0.0, Nonlinearity nl = Nonlinearity::LeakyReLU,
                     Generator& gen = default_generator());
// bound = gain * sqrt(6 / (fan_in + fan_out))
void xavier_uniform_(Tensor& t, double gain = 1.0, Generator& gen = default_generator());
void xavier_normal_(Tensor& t, double gain = 1.0, Generator& gen = default_generator());

}  // namespace tapegrad::nn::init
