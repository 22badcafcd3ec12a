// The pooling twins and batch norm's evaluation-mode input gradient as small kernels (contracts:
// src/kernels.inc). Pooling is not cuDNN's: the facade's max pool hands I64 argmax indices to its backward,
// and cuDNN's pooling backward wants x and y instead. Each backward is a gather, one thread per input element
// summing the outputs whose window holds it in the CPU twin's order (p, then q): deterministic, no atomics,
// and the same sums as the CPU's scatter.
#include <cuda_runtime.h>

#include <algorithm>
#include <limits>

#include "../internal.hpp"
#include "dnn.hpp"

namespace tapegrad::cuda {

namespace {

constexpr int kThreads = 256;
unsigned blocks(int64_t n) { return static_cast<unsigned>(std::clamp<int64_t>((n + kThreads - 1) / kThreads, 1, 65535)); }

#define TG_LAUNCH_CHECK() TG_CUDA_CHECK(cudaGetLastError())
#define TG_GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < (n); i += int64_t{blockDim.x} * gridDim.x)

// a * b rounded once, never contracted into a following add (the CPU twin rounds the product first).
__device__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }

// The window of output (p, q), clipped to the plane: rows [h0, h1), columns [w0, w1).
struct Clipped {
  int64_t h0, h1, w0, w1;
};
__device__ Clipped clip(const Window2d& g, int64_t p, int64_t q) {
  int64_t h0 = p * g.stride_h - g.pad_h, w0 = q * g.stride_w - g.pad_w;
  return {max(h0, int64_t{0}), min(h0 + g.R, g.H), max(w0, int64_t{0}), min(w0 + g.S, g.W)};
}

// The outputs whose window holds input (h, w): rows [p0, p1], columns [q0, q1] (empty when p0 > p1).
struct Covering {
  int64_t p0, p1, q0, q1;
};
__device__ int64_t first_covering(int64_t x, int64_t pad, int64_t k, int64_t stride) {
  const int64_t lo = x + pad - k + 1;  // the first window start that still reaches x
  return lo <= 0 ? 0 : (lo + stride - 1) / stride;
}
__device__ Covering covering(const Window2d& g, int64_t h, int64_t w) {
  return {first_covering(h, g.pad_h, g.R, g.stride_h), min(g.P - 1, (h + g.pad_h) / g.stride_h),
          first_covering(w, g.pad_w, g.S, g.stride_w), min(g.Q - 1, (w + g.pad_w) / g.stride_w)};
}

// One thread per output [N*C, P, Q]: the max of its window (NaN wins, as on the CPU) and where it is.
template <class T>
__global__ void max_pool_forward_kernel(const T* x, Window2d g, T* y, int64_t* idx, int64_t n) {
  TG_GRID_STRIDE(i, n) {
    const int64_t q = i % g.Q, p = (i / g.Q) % g.P, plane = i / (g.P * g.Q);
    const T* in = x + plane * g.H * g.W;
    const Clipped c = clip(g, p, q);
    T best = -std::numeric_limits<T>::infinity();
    int64_t arg = c.h0 * g.W + c.w0;
    for (int64_t h = c.h0; h < c.h1; ++h)
      for (int64_t w = c.w0; w < c.w1; ++w) {
        const T v = in[h * g.W + w];
        if (v > best || v != v) {
          best = v, arg = h * g.W + w;
          if (v != v) h = c.h1, w = c.w1;
        }
      }
    y[i] = best;
    idx[i] = arg;
  }
}

// One thread per input [N*C, H, W]: the sum of gy over the outputs whose argmax it is.
template <class T>
__global__ void max_pool_backward_kernel(const T* gy, const int64_t* idx, Window2d g, T* gx, int64_t n) {
  TG_GRID_STRIDE(i, n) {
    const int64_t w = i % g.W, h = (i / g.W) % g.H, plane = i / (g.H * g.W), self = h * g.W + w;
    const int64_t base = plane * g.P * g.Q;
    const Covering c = covering(g, h, w);
    T acc = 0;
    for (int64_t p = c.p0; p <= c.p1; ++p)
      for (int64_t q = c.q0; q <= c.q1; ++q)
        if (idx[base + p * g.Q + q] == self) acc += gy[base + p * g.Q + q];
    gx[i] = acc;
  }
}

// count_include_pad: the window's sum over R S, padding counted as zeros.
template <class T>
__global__ void avg_pool_forward_kernel(const T* x, Window2d g, T inv, T* y, int64_t n) {
  TG_GRID_STRIDE(i, n) {
    const int64_t q = i % g.Q, p = (i / g.Q) % g.P, plane = i / (g.P * g.Q);
    const T* in = x + plane * g.H * g.W;
    const Clipped c = clip(g, p, q);
    T acc = 0;
    for (int64_t h = c.h0; h < c.h1; ++h)
      for (int64_t w = c.w0; w < c.w1; ++w) acc += in[h * g.W + w];
    y[i] = mul_rn(acc, inv);
  }
}

template <class T>
__global__ void avg_pool_backward_kernel(const T* gy, Window2d g, T inv, T* gx, int64_t n) {
  TG_GRID_STRIDE(i, n) {
    const int64_t w = i % g.W, h = (i / g.W) % g.H, plane = i / (g.H * g.W);
    const T* in = gy + plane * g.P * g.Q;
    const Covering c = covering(g, h, w);
    T acc = 0;
    for (int64_t p = c.p0; p <= c.p1; ++p)
      for (int64_t q = c.q0; q <= c.q1; ++q) acc += mul_rn(in[p * g.Q + q], inv);
    gx[i] = acc;
  }
}

template <class T>
__global__ void scale_channels_kernel(const T* gy, const T* weight, const T* invstd, int64_t C, int64_t inner, T* gx,
                                      int64_t n) {
  TG_GRID_STRIDE(i, n) {
    const int64_t c = (i / inner) % C;
    const T k = weight ? mul_rn(weight[c], invstd[c]) : invstd[c];
    gx[i] = mul_rn(k, gy[i]);
  }
}

}  // namespace

void max_pool2d_forward(const Tensor& x, const Window2d& g, Tensor& y, Tensor& indices) {
  const int64_t n = g.N * g.C * g.P * g.Q;
  if (n == 0) return;
  dispatch_float(x.dtype(), "max_pool2d_forward", [&]<class T>() {
    max_pool_forward_kernel<T><<<blocks(n), kThreads, 0, stream()>>>(ptr<T>(x), g, ptr<T>(y), ptr<int64_t>(indices), n);
    TG_LAUNCH_CHECK();
  });
}

void max_pool2d_backward(const Tensor& gy, const Tensor& indices, const Window2d& g, Tensor& gx) {
  const int64_t n = g.N * g.C * g.H * g.W;
  if (n == 0) return;
  dispatch_float(gy.dtype(), "max_pool2d_backward", [&]<class T>() {
    max_pool_backward_kernel<T><<<blocks(n), kThreads, 0, stream()>>>(ptr<T>(gy), ptr<int64_t>(indices), g,
                                                                       ptr<T>(gx), n);
    TG_LAUNCH_CHECK();
  });
}

void avg_pool2d_forward(const Tensor& x, const Window2d& g, Tensor& y) {
  const int64_t n = g.N * g.C * g.P * g.Q;
  if (n == 0) return;
  dispatch_float(x.dtype(), "avg_pool2d_forward", [&]<class T>() {
    const T inv = T(1) / static_cast<T>(g.R * g.S);
    avg_pool_forward_kernel<T><<<blocks(n), kThreads, 0, stream()>>>(ptr<T>(x), g, inv, ptr<T>(y), n);
    TG_LAUNCH_CHECK();
  });
}

void avg_pool2d_backward(const Tensor& gy, const Window2d& g, Tensor& gx) {
  const int64_t n = g.N * g.C * g.H * g.W;
  if (n == 0) return;
  dispatch_float(gy.dtype(), "avg_pool2d_backward", [&]<class T>() {
    const T inv = T(1) / static_cast<T>(g.R * g.S);
    avg_pool_backward_kernel<T><<<blocks(n), kThreads, 0, stream()>>>(ptr<T>(gy), g, inv, ptr<T>(gx), n);
    TG_LAUNCH_CHECK();
  });
}

void batch_norm_backward_constant_stats(const Tensor& gy, const Tensor& weight, const Tensor& invstd, int64_t N,
                                        int64_t C, int64_t inner, Tensor& gx) {
  const int64_t n = N * C * inner;
  if (n == 0) return;
  dispatch_float(gy.dtype(), "batch_norm_backward", [&]<class T>() {
    scale_channels_kernel<T><<<blocks(n), kThreads, 0, stream()>>>(ptr<T>(gy), ptr<T>(weight), ptr<T>(invstd), C,
                                                                    inner, ptr<T>(gx), n);
    TG_LAUNCH_CHECK();
  });
}

}  // namespace tapegrad::cuda
