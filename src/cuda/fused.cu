// The CUDA twin of the fused batch norm + ReLU (+ residual) kernels (contracts: src/kernels.inc): batch norm
// itself is the plain twin's (cuda::batch_norm_forward_training / _inference / _backward, cuDNN), the ReLU
// and residual epilogue and the backward's mask are one small elementwise kernel each, on the same stream.
#include <cuda_runtime.h>

#include <algorithm>

#include "../internal.hpp"
#include "common.hpp"
#include "cuda.hpp"

namespace tapegrad::cuda {

namespace {

constexpr int kThreads = 256;

unsigned blocks(int64_t n) { return static_cast<unsigned>(std::clamp<int64_t>((n + kThreads - 1) / kThreads, 1, 65535)); }

#define TG_GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < (n); i += int64_t{blockDim.x} * gridDim.x)

// y = max(0, y + r) (r null: max(0, y)), in place on batch norm's output: the CPU twin's arithmetic.
template <class T>
__global__ void relu_epilogue_kernel(T* y, const T* r, int64_t n) {
  TG_GRID_STRIDE(i, n) {
    T v = y[i];
    if (r) v = v + r[i];
    y[i] = v > T(0) ? v : T(0);
  }
}

// g = gy where y > 0, else 0 (relu's convention at 0).
template <class T>
__global__ void relu_mask_kernel(const T* gy, const T* y, T* g, int64_t n) {
  TG_GRID_STRIDE(i, n) g[i] = y[i] > T(0) ? gy[i] : T(0);
}

void relu_epilogue(Tensor& y, const Tensor& residual) {
  const int64_t n = y.numel();
  if (n == 0) return;
  dispatch_float(y.dtype(), "batch_norm_relu", [&]<class T>() {
    relu_epilogue_kernel<T><<<blocks(n), kThreads, 0, stream()>>>(ptr<T>(y), ptr<T>(residual), n);
  });
  TG_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void batch_norm_relu_forward_training(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                      const Tensor& residual, double eps, double momentum, Tensor& running_mean,
                                      Tensor& running_var, Tensor& y, Tensor& save_mean, Tensor& save_invstd) {
  batch_norm_forward_training(x, weight, bias, eps, momentum, running_mean, running_var, y, save_mean, save_invstd);
  relu_epilogue(y, residual);
}

void batch_norm_relu_forward_inference(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                       const Tensor& residual, const Tensor& running_mean,
                                       const Tensor& running_var, double eps, Tensor& y) {
  batch_norm_forward_inference(x, weight, bias, running_mean, running_var, eps, y);
  relu_epilogue(y, residual);
}

// The masked gradient is written to gresidual when that is wanted (it is the same tensor), else to a temporary.
void batch_norm_relu_backward(const Tensor& gy, const Tensor& y, const Tensor& x, const Tensor& weight,
                              const Tensor& mean, const Tensor& invstd, bool batch_stats, Tensor& gx,
                              Tensor& gweight, Tensor& gbias, Tensor& gresidual) {
  Tensor g = gresidual.defined() ? gresidual : make_tensor(gy.shape(), gy.dtype(), gy.device());
  const int64_t n = gy.numel();
  if (n > 0) {
    dispatch_float(gy.dtype(), "batch_norm_relu_backward", [&]<class T>() {
      relu_mask_kernel<T><<<blocks(n), kThreads, 0, stream()>>>(ptr<T>(gy), ptr<T>(y), ptr<T>(g), n);
    });
    TG_CUDA_CHECK(cudaGetLastError());
  }
  batch_norm_backward(g, x, weight, mean, invstd, batch_stats, gx, gweight, gbias);
}

}  // namespace tapegrad::cuda
