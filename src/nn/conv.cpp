// Conv2d, BatchNorm2d and the pooling layers.
#include "tapegrad/nn/conv.hpp"

#include <cmath>

#include "tapegrad/nn/init.hpp"
#include "tapegrad/ops.hpp"

namespace tapegrad::nn {

Conv2d::Conv2d(int64_t in, int64_t out, int64_t k, int64_t stride_, int64_t padding_, bool with_bias, Generator& gen,
               DType dtype)
    : Layer("Conv2d"), in_channels(in), out_channels(out), kernel_size(k), stride(stride_), padding(padding_) {
  TG_CHECK(in > 0 && out > 0 && k > 0 && stride >= 1 && padding >= 0, "Conv2d: invalid options in_channels=", in,
           " out_channels=", out, " kernel_size=", k, " stride=", stride, " padding=", padding);
  weight = register_parameter("weight", empty({out, in, k, k}, dtype));
  init::kaiming_uniform_(weight, std::sqrt(5.0), init::Nonlinearity::LeakyReLU, gen);
  if (with_bias) {
    double bound = 1.0 / std::sqrt(static_cast<double>(init::fan_in(weight)));
    bias = register_parameter("bias", empty({out}, dtype));
    init::uniform_(bias, -bound, bound, gen);
  }
}

Tensor Conv2d::forward(const Tensor& x) {
  TG_CHECK(x.defined() && x.dim() == 4, "Conv2d(", in_channels, ", ", out_channels, ", kernel_size=", kernel_size,
           "): expected a 4-D input [N, ", in_channels, ", H, W], got ", x.defined() ? x.dim() : 0, "-D ",
           x.defined() ? to_string(x.shape()) : "undefined", x.defined() && x.dim() == 3 ? " (add the batch dim: x.unsqueeze(0))" : "");
  TG_CHECK(x.size(1) == in_channels, "Conv2d(", in_channels, ", ", out_channels, ", kernel_size=",
           kernel_size, "): input ", x.shape(), " does not have ", in_channels, " channels (expected [N, ",
           in_channels, ", H, W])");
  return conv2d(x, weight, bias, stride, padding);
}

BatchNorm2d::BatchNorm2d(int64_t c, double eps_, double momentum_, DType dtype)
    : Layer("BatchNorm2d"), num_features(c), eps(eps_), momentum(momentum_) {
  TG_CHECK(c > 0 && eps > 0 && momentum >= 0 && momentum <= 1, "BatchNorm2d: invalid options num_features=", c,
           " eps=", eps, " momentum=", momentum);
  weight = register_parameter("weight", ones({c}, dtype));
  bias = register_parameter("bias", zeros({c}, dtype));
  running_mean = register_buffer("running_mean", zeros({c}, dtype));
  running_var = register_buffer("running_var", ones({c}, dtype));
  num_batches_tracked = register_buffer("num_batches_tracked", zeros({}, DType::I64));
}

namespace {
void check_bn_input(int64_t num_features, const Tensor& x) {
  TG_CHECK(x.defined() && x.dim() == 4, "BatchNorm2d(", num_features, "): expected a 4-D input [N, ", num_features,
           ", H, W], got ", x.defined() ? x.dim() : 0, "-D ", x.defined() ? to_string(x.shape()) : "undefined");
  TG_CHECK(x.dim() == 4 && x.size(1) == num_features, "BatchNorm2d(", num_features, "): input ", x.shape(),
           " does not fit (expected [N, ", num_features, ", H, W])");
}
}  // namespace

Tensor BatchNorm2d::forward(const Tensor& x) {
  check_bn_input(num_features, x);
  if (is_training()) num_batches_tracked.fill_(num_batches_tracked.item() + 1);
  if (is_training() && training_forward) return training_forward(*this, x);
  return batch_norm(x, running_mean, running_var, weight, bias, is_training(), momentum, eps);
}

Tensor BatchNorm2d::forward_relu(const Tensor& x, const Tensor& residual) {
  check_bn_input(num_features, x);
  TG_CHECK(!residual.defined() || residual.shape() == x.shape(), "BatchNorm2d(", num_features, ")::forward_relu: residual ",
           residual.defined() ? to_string(residual.shape()) : "", " does not fit input ", x.shape(),
           " (expected the same shape)");
  if (!fuse || (is_training() && training_forward)) {
    Tensor y = forward(x);
    return relu(residual.defined() ? y + residual : y);
  }
  if (is_training()) num_batches_tracked.fill_(num_batches_tracked.item() + 1);
  return batch_norm_relu(x, running_mean, running_var, weight, bias, is_training(), momentum, eps, residual);
}

MaxPool2d::MaxPool2d(int64_t k, int64_t s, int64_t p) : Layer("MaxPool2d"), kernel_size(k), stride(s), padding(p) {
  TG_CHECK(k >= 1 && s >= 0 && p >= 0, "MaxPool2d: invalid options kernel_size=", k, " stride=", s, " padding=", p);
}
Tensor MaxPool2d::forward(const Tensor& x) { return max_pool2d(x, kernel_size, stride, padding); }

AvgPool2d::AvgPool2d(int64_t k, int64_t s, int64_t p) : Layer("AvgPool2d"), kernel_size(k), stride(s), padding(p) {
  TG_CHECK(k >= 1 && s >= 0 && p >= 0, "AvgPool2d: invalid options kernel_size=", k, " stride=", s, " padding=", p);
}
Tensor AvgPool2d::forward(const Tensor& x) { return avg_pool2d(x, kernel_size, stride, padding); }

AdaptiveAvgPool2d::AdaptiveAvgPool2d(int64_t h, int64_t w) : Layer("AdaptiveAvgPool2d"), out_h(h), out_w(w) {
  TG_CHECK(h >= 1 && w >= 1, "AdaptiveAvgPool2d: output size must be positive, got ", h, "x", w);
}
Tensor AdaptiveAvgPool2d::forward(const Tensor& x) { return adaptive_avg_pool2d(x, out_h, out_w); }

}  // namespace tapegrad::nn
