// The convolutional layers: Conv2d, BatchNorm2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Flatten.
// All take NCHW tensors; parameter and buffer names are PyTorch's, so state dicts carry over by name.
#pragma once

#include <functional>

#include "tapegrad/nn/module.hpp"

namespace tapegrad::nn {

// y = conv2d(x, weight, bias, stride, padding). weight [out, in, k, k], bias [out] (optional).
// PyTorch's initialisation: weight ~ kaiming_uniform(a = sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
// bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in * k * k; weight drawn first, then bias.
class Conv2d : public Layer {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, int64_t stride = 1, int64_t padding = 0,
         bool bias = true, Generator& gen = default_generator(), DType dtype = DType::F32);
  Tensor forward(const Tensor& x) override;
  int64_t in_channels, out_channels, kernel_size, stride, padding;
  Tensor weight, bias;
};

// Batch normalisation over [N, C, H, W] per channel. Parameters weight (1) and bias (0) [C]; buffers
// running_mean (0), running_var (1) [C] and num_batches_tracked (i64 scalar), as PyTorch names them.
// Training normalises with the batch statistics and moves the running ones by `momentum` (unbiased
// variance), counting the batch; evaluation normalises with the running statistics.
class BatchNorm2d : public Layer {
 public:
  explicit BatchNorm2d(int64_t num_features, double eps = 1e-5, double momentum = 0.1, DType dtype = DType::F32);
  Tensor forward(const Tensor& x) override;
  // relu(forward(x) + residual) (residual undefined: relu(forward(x))) as one fused op (batch_norm_relu):
  // the same parameters, buffers and results, less memory traffic. A training_forward hook, or fuse = false,
  // runs the three ops instead.
  Tensor forward_relu(const Tensor& x, const Tensor& residual = Tensor());
  // Process-wide: false makes forward_relu run batch_norm, add and relu apart (bench_cnn --unfused).
  static inline bool fuse = true;
  int64_t num_features;
  double eps, momentum;
  Tensor weight, bias, running_mean, running_var, num_batches_tracked;
  // When set, replaces the training forward (after counting the batch): dist::DataParallel installs the
  // synchronised batch statistics of all ranks here.
  std::function<Tensor(BatchNorm2d&, const Tensor&)> training_forward;
};

// stride 0 means stride = kernel_size (PyTorch's default).
class MaxPool2d : public Layer {
 public:
  explicit MaxPool2d(int64_t kernel_size, int64_t stride = 0, int64_t padding = 0);
  Tensor forward(const Tensor& x) override;
  int64_t kernel_size, stride, padding;
};

class AvgPool2d : public Layer {
 public:
  explicit AvgPool2d(int64_t kernel_size, int64_t stride = 0, int64_t padding = 0);
  Tensor forward(const Tensor& x) override;
  int64_t kernel_size, stride, padding;
};

// [N, C, H, W] -> [N, C, out_h, out_w]; (1, 1) is global average pooling.
class AdaptiveAvgPool2d : public Layer {
 public:
  explicit AdaptiveAvgPool2d(int64_t out_h = 1, int64_t out_w = 1);
  Tensor forward(const Tensor& x) override;
  int64_t out_h, out_w;
};

// Flattens dims start_dim..end_dim into one ([N, C, H, W] -> [N, C*H*W] by default).
class Flatten : public Layer {
 public:
  explicit Flatten(int64_t start_dim = 1, int64_t end_dim = -1)
      : Layer("Flatten"), start_dim(start_dim), end_dim(end_dim) {}
  Tensor forward(const Tensor& x) override { return x.flatten(start_dim, end_dim); }
  int64_t start_dim, end_dim;
};

}  // namespace tapegrad::nn
