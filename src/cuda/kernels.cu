// The CUDA twin's small kernels: elementwise with broadcasting, reductions, softmax, the fused cross-entropy,
// dropout, embedding, layout. Contracts: src/kernels.inc. All work goes on the one stream (common.hpp); no
// kernel waits for the device. Each kernel mirrors its CPU twin's arithmetic, so that f64 results agree to
// rounding (tests/test_backend_ops.cpp).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "../internal.hpp"
#include "../philox.hpp"
#include "common.hpp"
#include "cuda.hpp"

namespace tapegrad::cuda {

namespace {

constexpr int kThreads = 256;  // threads per block, everywhere
constexpr int kMaxDims = 8;

// Blocks for a grid-stride loop over n items.
unsigned blocks(int64_t n) { return static_cast<unsigned>(std::clamp<int64_t>((n + kThreads - 1) / kThreads, 1, 65535)); }

#define TG_LAUNCH_CHECK() TG_CUDA_CHECK(cudaGetLastError())
#define TG_GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < (n); i += int64_t{blockDim.x} * gridDim.x)

// ---- device errors ---------------------------------------------------------------------------------

struct DeviceError {
  int kind;  // 0 none, 1 cross_entropy label, 2 embedding index
  long long value, position, bound;
};
__device__ DeviceError g_error;

__device__ void report(int kind, long long value, long long position, long long bound) {
  if (atomicCAS(&g_error.kind, 0, kind) == 0) {
    g_error.value = value;
    g_error.position = position;
    g_error.bound = bound;
  }
}

// ---- block reductions ------------------------------------------------------------------------------

// max that propagates NaN (as the CPU's Eigen PropagateNaN and std::max over a NaN-free row)
template <class T>
__device__ T nan_max(T a, T b) { return (a != a || a > b) ? a : b; }

// The block's reduction of v (every thread gets it); all threads of the block must call it.
template <class T, class F>
__device__ T block_reduce(T v, F f) {
  __shared__ T buf[kThreads];
  buf[threadIdx.x] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) buf[threadIdx.x] = f(buf[threadIdx.x], buf[threadIdx.x + s]);
    __syncthreads();
  }
  T r = buf[0];
  __syncthreads();
  return r;
}
struct Sum {
  template <class T> __device__ T operator()(T a, T b) const { return a + b; }
};
struct Max {
  template <class T> __device__ T operator()(T a, T b) const { return nan_max(a, b); }
};

// ---- elementwise -----------------------------------------------------------------------------------

template <class T>
__device__ T apply_unary(Unary op, T v, T p) {
  switch (op) {
    case Unary::Exp: return exp(v);
    case Unary::Log: return log(v);
    case Unary::Sqrt: return sqrt(v);
    case Unary::Tanh: return tanh(v);
    case Unary::Sigmoid: return T(1) / (T(1) + exp(-v));
    case Unary::Relu: return v > T(0) ? v : T(0);
    case Unary::Pow: return p == T(2) ? v * v : pow(v, p);
  }
  return v;
}

template <class T>
__global__ void unary_kernel(Unary op, const T* x, T* y, int64_t n, T p) {
  TG_GRID_STRIDE(i, n) y[i] = apply_unary(op, x[i], p);
}

template <class T>
__global__ void unary_backward_kernel(Unary op, const T* g, const T* x, const T* y, T* gx, int64_t n, T p) {
  TG_GRID_STRIDE(i, n) {
    T gv = g[i];
    switch (op) {
      case Unary::Exp: gx[i] = gv * y[i]; break;
      case Unary::Log: gx[i] = gv / x[i]; break;
      case Unary::Sqrt: gx[i] = gv / (T(2) * y[i]); break;
      case Unary::Tanh: gx[i] = gv * (T(1) - y[i] * y[i]); break;
      case Unary::Sigmoid: gx[i] = gv * y[i] * (T(1) - y[i]); break;
      case Unary::Relu: gx[i] = y[i] > T(0) ? gv : T(0); break;
      case Unary::Pow: gx[i] = gv * p * pow(x[i], p - T(1)); break;
    }
  }
}

// Broadcast geometry: per output dim (right-aligned, rank r), its size and a's and b's strides (0 where
// broadcast).
struct Broadcast {
  int r = 0;
  int64_t size[kMaxDims], sa[kMaxDims], sb[kMaxDims];
};

Broadcast broadcast(const Shape& as, const Shape& bs, const Shape& os, const char* op) {
  Broadcast g;
  g.r = static_cast<int>(os.size());
  TG_CHECK(g.r <= kMaxDims, op, ": ", g.r, " dims; the CUDA kernels take at most ", kMaxDims);
  int64_t st_a = 1, st_b = 1;
  for (int k = g.r - 1; k >= 0; --k) {
    int ka = k - (g.r - static_cast<int>(as.size())), kb = k - (g.r - static_cast<int>(bs.size()));
    int64_t da = ka >= 0 ? as[ka] : 1, db = kb >= 0 ? bs[kb] : 1;
    g.size[k] = os[k];
    g.sa[k] = da == 1 ? 0 : st_a;
    g.sb[k] = db == 1 ? 0 : st_b;
    st_a *= da;
    st_b *= db;
  }
  return g;
}

template <class T>
__device__ T apply_binary(Binary op, T u, T v) {
  switch (op) {
    case Binary::Add: return u + v;
    case Binary::Sub: return u - v;
    case Binary::Mul: return u * v;
    case Binary::Div: return u / v;
  }
  return u;
}

// op < 0: out = a broadcast (expand)
template <class T>
__global__ void binary_kernel(int op, const T* a, const T* b, T* out, int64_t n, Broadcast g) {
  TG_GRID_STRIDE(i, n) {
    int64_t oa = 0, ob = 0, rem = i;
    for (int k = g.r - 1; k >= 0; --k) {
      int64_t ix = rem % g.size[k];
      rem /= g.size[k];
      oa += ix * g.sa[k];
      ob += ix * g.sb[k];
    }
    out[i] = op < 0 ? a[oa] : apply_binary(static_cast<Binary>(op), a[oa], b[ob]);
  }
}

template <class T>
__global__ void affine_kernel(const T* x, T alpha, T beta, T* out, int64_t n) {
  TG_GRID_STRIDE(i, n) out[i] = alpha * x[i] + beta;
}

// ---- reductions ------------------------------------------------------------------------------------

// out[o, i] = sum_r x[o, r, i]: one block per (o, i).
template <class T>
__global__ void reduce_mid_kernel(const T* x, int64_t outer, int64_t n, int64_t inner, T* out) {
  for (int64_t s = blockIdx.x; s < outer * inner; s += gridDim.x) {
    const T* p = x + (s / inner) * n * inner + s % inner;
    T acc = 0;
    for (int64_t r = threadIdx.x; r < n; r += blockDim.x) acc += p[r * inner];
    acc = block_reduce(acc, Sum{});
    if (threadIdx.x == 0) out[s] = acc;
  }
}

template <class T>
void reduce_mid(const T* x, int64_t outer, int64_t n, int64_t inner, T* out) {
  if (outer * inner == 0) return;
  reduce_mid_kernel<<<blocks(outer * inner * kThreads), kThreads, 0, stream()>>>(x, outer, n, inner, out);
  TG_LAUNCH_CHECK();
}

template <class T>
__global__ void max_dim_kernel(const T* x, int64_t outer, int64_t n, int64_t inner, T* values, int64_t* indices) {
  TG_GRID_STRIDE(s, outer * inner) {
    const T* p = x + (s / inner) * n * inner + s % inner;
    T best = p[0];
    int64_t arg = 0;
    for (int64_t r = 1; r < n; ++r) {
      T v = p[r * inner];
      if (v > best || (v != v && best == best)) best = v, arg = r;
    }
    if (values) values[s] = best;
    indices[s] = arg;
  }
}

template <class T>
__global__ void max_dim_backward_kernel(const T* g, const int64_t* idx, int64_t outer, int64_t n, int64_t inner, T* gx) {
  TG_GRID_STRIDE(s, outer * inner) gx[((s / inner) * n + idx[s]) * inner + s % inner] = g[s];
}

// Partial sums of squares in f64, one per block, then one block adds them: a fixed order, so the result does
// not change from run to run.
template <class T>
__global__ void sum_squares_kernel(const T* x, int64_t n, double* part) {
  double acc = 0;
  TG_GRID_STRIDE(i, n) acc += static_cast<double>(x[i]) * static_cast<double>(x[i]);
  acc = block_reduce(acc, Sum{});
  if (threadIdx.x == 0) part[blockIdx.x] = acc;
}
__global__ void sum_kernel(const double* part, int64_t n, double* out) {
  double acc = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) acc += part[i];
  acc = block_reduce(acc, Sum{});
  if (threadIdx.x == 0) *out = acc;
}

// ---- softmax, losses, dropout ----------------------------------------------------------------------

// One block per (o, i) row of x [outer, n, inner].
template <class T>
__global__ void softmax_kernel(const T* x, int64_t outer, int64_t n, int64_t inner, bool log_, T* y) {
  for (int64_t s = blockIdx.x; s < outer * inner; s += gridDim.x) {
    const int64_t base = (s / inner) * n * inner + s % inner;
    T mx = -INFINITY;
    for (int64_t r = threadIdx.x; r < n; r += blockDim.x) mx = max(mx, x[base + r * inner]);
    mx = block_reduce(mx, Max{});
    T sum = 0;
    for (int64_t r = threadIdx.x; r < n; r += blockDim.x) sum += exp(x[base + r * inner] - mx);
    sum = block_reduce(sum, Sum{});
    if (log_) {
      T lse = mx + log(sum);
      for (int64_t r = threadIdx.x; r < n; r += blockDim.x) y[base + r * inner] = x[base + r * inner] - lse;
    } else {
      T inv = T(1) / sum;
      for (int64_t r = threadIdx.x; r < n; r += blockDim.x) y[base + r * inner] = exp(x[base + r * inner] - mx) * inv;
    }
  }
}

template <class T>
__global__ void softmax_backward_kernel(const T* g, const T* y, int64_t outer, int64_t n, int64_t inner, bool log_,
                                        T* gx) {
  for (int64_t s = blockIdx.x; s < outer * inner; s += gridDim.x) {
    const int64_t base = (s / inner) * n * inner + s % inner;
    T acc = 0;
    for (int64_t r = threadIdx.x; r < n; r += blockDim.x) {
      int64_t j = base + r * inner;
      acc += log_ ? g[j] : g[j] * y[j];
    }
    acc = block_reduce(acc, Sum{});
    for (int64_t r = threadIdx.x; r < n; r += blockDim.x) {
      int64_t j = base + r * inner;
      gx[j] = log_ ? g[j] - exp(y[j]) * acc : y[j] * (g[j] - acc);
    }
  }
}

// One block per row of logits [N, C].
template <class T>
__global__ void cross_entropy_kernel(const T* x, const int64_t* labels, int64_t N, int64_t C, T* loss, T* lse) {
  for (int64_t i = blockIdx.x; i < N; i += gridDim.x) {
    const T* row = x + i * C;
    T mx = -INFINITY;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) mx = nan_max(mx, row[c]);
    mx = block_reduce(mx, Max{});
    T sum = 0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) sum += exp(row[c] - mx);
    sum = block_reduce(sum, Sum{});
    if (threadIdx.x == 0) {
      int64_t l = labels[i];
      T s = mx + log(sum);
      lse[i] = s;
      if (l < 0 || l >= C) {
        report(1, l, i, C);
        loss[i] = NAN;
      } else {
        loss[i] = s - row[l];
      }
    }
  }
}

template <class T>
__global__ void cross_entropy_backward_kernel(const T* x, const T* lse, const int64_t* labels, const T* g,
                                              bool scalar_g, T factor, int64_t N, int64_t C, T* gx) {
  TG_GRID_STRIDE(j, N * C) {
    int64_t i = j / C, c = j % C;
    T s = factor * (scalar_g ? g[0] : g[i]);
    T v = exp(x[j] - lse[i]) * s;
    gx[j] = c == labels[i] ? v - s : v;
  }
}

template <class T>
__global__ void dropout_kernel(double p, uint64_t seed, T keep, T* mask, int64_t n) {
  TG_GRID_STRIDE(i, n) mask[i] = philox_uniform(seed, static_cast<uint64_t>(i)) < p ? T(0) : keep;
}

// ---- embedding -------------------------------------------------------------------------------------

template <class T>
__global__ void embedding_kernel(const T* w, const int64_t* idx, int64_t V, int64_t E, int64_t N, T* y) {
  TG_GRID_STRIDE(j, N * E) {
    int64_t n = j / E, v = idx[n];
    if (v < 0 || v >= V) {
      if (j % E == 0) report(2, v, n, V);
      y[j] = 0;
    } else {
      y[j] = w[v * E + j % E];
    }
  }
}

// One thread per column, the rows added in token order: the CPU's order, so the sums agree exactly.
template <class T>
__global__ void embedding_backward_kernel(const T* g, const int64_t* idx, int64_t V, int64_t E, int64_t N, T* gw) {
  TG_GRID_STRIDE(c, E) {
    for (int64_t n = 0; n < N; ++n) {
      int64_t v = idx[n];
      if (v >= 0 && v < V) gw[v * E + c] += g[n * E + c];
    }
  }
}

// ---- layout ----------------------------------------------------------------------------------------

struct Permutation {
  int r = 0;
  int64_t size[kMaxDims], stride[kMaxDims];  // per out dim: its size and its stride in x
};

template <class T>
__global__ void permute_kernel(const T* x, T* out, int64_t n, Permutation p) {
  TG_GRID_STRIDE(i, n) {
    int64_t off = 0, rem = i;
    for (int k = p.r - 1; k >= 0; --k) {
      off += (rem % p.size[k]) * p.stride[k];
      rem /= p.size[k];
    }
    out[i] = x[off];
  }
}

template <class S, class D>
__global__ void convert_kernel(const S* src, D* dst, int64_t n) {
  TG_GRID_STRIDE(i, n) dst[i] = static_cast<D>(src[i]);
}

template <class T>
__global__ void fill_kernel(T* p, T v, int64_t n) {
  TG_GRID_STRIDE(i, n) p[i] = v;
}

template <class T>
__global__ void add_bias_rows_kernel(T* y, const T* b, int64_t m, int64_t n) {
  TG_GRID_STRIDE(i, n) y[i] += b[i % m];
}

void zero(Tensor& t) {
  TG_CUDA_CHECK(cudaMemsetAsync(t.raw_data(), 0, static_cast<size_t>(t.numel()) * size_of(t.dtype()), stream()));
}

}  // namespace

// ---- the facade's CUDA twins ---------------------------------------------------------------------------

void throw_device_error() {
  DeviceError e{};
  TG_CUDA_CHECK(cudaMemcpyFromSymbol(&e, g_error, sizeof e));
  if (e.kind == 0) return;
  DeviceError none{};
  TG_CUDA_CHECK(cudaMemcpyToSymbol(g_error, &none, sizeof none));
  const char* what = e.kind == 1 ? "cross_entropy: label " : "embedding: index ";
  TG_FAIL(what, e.value, " at position ", e.position, " is out of range [0, ", e.bound,
          ") (found on the GPU; reported at the next point where the host waited)");
}

void unary(Unary op, const Tensor& x, Tensor& y, double param) {
  dispatch_float(x.dtype(), "unary", [&]<class T>() {
    if (x.numel() == 0) return;
    unary_kernel<T><<<blocks(x.numel()), kThreads, 0, stream()>>>(op, ptr<T>(x), ptr<T>(y), x.numel(),
                                                                   static_cast<T>(param));
    TG_LAUNCH_CHECK();
  });
}

void unary_backward(Unary op, const Tensor& g, const Tensor& x, const Tensor& y, Tensor& gx, double param) {
  dispatch_float(g.dtype(), "unary_backward", [&]<class T>() {
    if (g.numel() == 0) return;
    unary_backward_kernel<T><<<blocks(g.numel()), kThreads, 0, stream()>>>(
        op, ptr<T>(g), ptr<T>(x), ptr<T>(y), ptr<T>(gx), g.numel(), static_cast<T>(param));
    TG_LAUNCH_CHECK();
  });
}

void binary(Binary op, const Tensor& a, const Tensor& b, Tensor& out) {
  dispatch_float(a.dtype(), "binary", [&]<class T>() {
    if (out.numel() == 0) return;
    binary_kernel<T><<<blocks(out.numel()), kThreads, 0, stream()>>>(
        static_cast<int>(op), ptr<T>(a), ptr<T>(b), ptr<T>(out), out.numel(),
        broadcast(a.shape(), b.shape(), out.shape(), "binary"));
    TG_LAUNCH_CHECK();
  });
}

void affine(const Tensor& x, double alpha, double beta, Tensor& out) {
  dispatch_float(x.dtype(), "affine", [&]<class T>() {
    if (x.numel() == 0) return;
    affine_kernel<T><<<blocks(x.numel()), kThreads, 0, stream()>>>(ptr<T>(x), static_cast<T>(alpha),
                                                                    static_cast<T>(beta), ptr<T>(out), x.numel());
    TG_LAUNCH_CHECK();
  });
}

void expand(const Tensor& x, Tensor& out) {
  dispatch_float(x.dtype(), "expand", [&]<class T>() {
    if (out.numel() == 0) return;
    binary_kernel<T><<<blocks(out.numel()), kThreads, 0, stream()>>>(
        -1, ptr<T>(x), ptr<T>(x), ptr<T>(out), out.numel(), broadcast(x.shape(), x.shape(), out.shape(), "expand"));
    TG_LAUNCH_CHECK();
  });
}

// As the CPU twin: each maximal run of reduced dims (out's shape right-aligned to x's rank) is one reduce_mid.
void sum_to(const Tensor& x, Tensor& out) {
  dispatch_float(x.dtype(), "sum_to", [&]<class T>() {
    const Shape& xs = x.shape();
    size_t r = xs.size();
    Shape os(r, 1);
    for (size_t k = 0; k < out.shape().size(); ++k) os[r - out.shape().size() + k] = out.shape()[k];
    Shape cur = xs;
    Tensor src = x;
    for (size_t k = 0;;) {
      while (k < r && cur[k] == os[k]) ++k;
      if (k == r) break;
      size_t k1 = k;
      while (k1 < r && cur[k1] != os[k1]) ++k1;
      int64_t outer = 1, n = 1, inner = 1;
      for (size_t j = 0; j < k; ++j) outer *= cur[j];
      for (size_t j = k; j < k1; ++j) n *= cur[j];
      for (size_t j = k1; j < r; ++j) inner *= cur[j];
      for (size_t j = k; j < k1; ++j) cur[j] = 1;
      bool last = true;
      for (size_t j = k1; j < r; ++j) last = last && cur[j] == os[j];
      Tensor dst = last ? out : make_tensor(cur, x.dtype(), Device::CUDA);
      reduce_mid(ptr<T>(src), outer, n, inner, ptr<T>(dst));
      src = dst;
      k = k1;
      if (last) return;
    }
    if (src.impl_ptr() != out.impl_ptr() && out.numel() > 0)
      TG_CUDA_CHECK(cudaMemcpyAsync(out.raw_data(), src.raw_data(), out.numel() * sizeof(T), cudaMemcpyDeviceToDevice,
                                    stream()));
  });
}

void max_dim(const Tensor& x, int64_t outer, int64_t n, int64_t inner, Tensor& values, Tensor& indices) {
  dispatch_float(x.dtype(), "max", [&]<class T>() {
    if (outer * inner == 0) return;
    max_dim_kernel<T><<<blocks(outer * inner), kThreads, 0, stream()>>>(ptr<T>(x), outer, n, inner, ptr<T>(values),
                                                                         ptr<int64_t>(indices));
    TG_LAUNCH_CHECK();
  });
}

void max_dim_backward(const Tensor& g, const Tensor& indices, int64_t outer, int64_t n, int64_t inner, Tensor& gx) {
  dispatch_float(g.dtype(), "max_backward", [&]<class T>() {
    zero(gx);
    if (outer * inner == 0) return;
    max_dim_backward_kernel<T><<<blocks(outer * inner), kThreads, 0, stream()>>>(
        ptr<T>(g), ptr<int64_t>(indices), outer, n, inner, ptr<T>(gx));
    TG_LAUNCH_CHECK();
  });
}

void argmax(const Tensor& x, int64_t outer, int64_t n, int64_t inner, Tensor& out) {
  dispatch_float(x.dtype(), "argmax", [&]<class T>() {
    if (outer * inner == 0) return;
    max_dim_kernel<T><<<blocks(outer * inner), kThreads, 0, stream()>>>(ptr<T>(x), outer, n, inner, nullptr,
                                                                         ptr<int64_t>(out));
    TG_LAUNCH_CHECK();
  });
}

void add_bias_rows(Tensor& y, const Tensor& bias) {
  dispatch_float(y.dtype(), "add_bias_rows", [&]<class T>() {
    if (y.numel() == 0) return;
    add_bias_rows_kernel<T><<<blocks(y.numel()), kThreads, 0, stream()>>>(ptr<T>(y), ptr<T>(bias), bias.numel(),
                                                                           y.numel());
    TG_LAUNCH_CHECK();
  });
}

void sum_rows(const Tensor& x, Tensor& out) {
  dispatch_float(x.dtype(), "sum_rows", [&]<class T>() {
    int64_t m = out.numel(), rows = x.numel() / std::max<int64_t>(m, 1);
    reduce_mid(ptr<T>(x), 1, rows, m, ptr<T>(out));
  });
}

void sum_squares(const Tensor& x, Tensor& out) {
  dispatch_float(x.dtype(), "sum_squares", [&]<class T>() {
    const unsigned nb = std::min(blocks(x.numel()), 1024u);
    Tensor part = make_tensor({nb}, DType::F64, Device::CUDA);
    sum_squares_kernel<T><<<nb, kThreads, 0, stream()>>>(ptr<T>(x), x.numel(), ptr<double>(part));
    TG_LAUNCH_CHECK();
    sum_kernel<<<1, kThreads, 0, stream()>>>(ptr<double>(part), nb, ptr<double>(out));
    TG_LAUNCH_CHECK();
  });
}

void softmax(const Tensor& x, int64_t outer, int64_t n, int64_t inner, bool log, Tensor& y) {
  dispatch_float(x.dtype(), "softmax", [&]<class T>() {
    if (outer * inner == 0) return;
    softmax_kernel<T><<<blocks(outer * inner * kThreads), kThreads, 0, stream()>>>(ptr<T>(x), outer, n, inner, log,
                                                                                    ptr<T>(y));
    TG_LAUNCH_CHECK();
  });
}

void softmax_backward(const Tensor& g, const Tensor& y, int64_t outer, int64_t n, int64_t inner, bool log,
                      Tensor& gx) {
  dispatch_float(g.dtype(), "softmax_backward", [&]<class T>() {
    if (outer * inner == 0) return;
    softmax_backward_kernel<T><<<blocks(outer * inner * kThreads), kThreads, 0, stream()>>>(
        ptr<T>(g), ptr<T>(y), outer, n, inner, log, ptr<T>(gx));
    TG_LAUNCH_CHECK();
  });
}

void cross_entropy(const Tensor& logits, const Tensor& labels, Tensor& loss, Tensor& lse) {
  const int64_t N = logits.size(0), C = logits.size(1);
  dispatch_float(logits.dtype(), "cross_entropy", [&]<class T>() {
    if (N == 0) return;
    cross_entropy_kernel<T><<<blocks(N * kThreads), kThreads, 0, stream()>>>(
        ptr<T>(logits), ptr<int64_t>(labels), N, C, ptr<T>(loss), ptr<T>(lse));
    TG_LAUNCH_CHECK();
  });
}

void cross_entropy_backward(const Tensor& logits, const Tensor& lse, const Tensor& labels, const Tensor& g,
                            double factor, Tensor& glogits) {
  const int64_t N = logits.size(0), C = logits.size(1);
  dispatch_float(logits.dtype(), "cross_entropy_backward", [&]<class T>() {
    if (N * C == 0) return;
    cross_entropy_backward_kernel<T><<<blocks(N * C), kThreads, 0, stream()>>>(
        ptr<T>(logits), ptr<T>(lse), ptr<int64_t>(labels), ptr<T>(g), g.numel() == 1, static_cast<T>(factor), N, C,
        ptr<T>(glogits));
    TG_LAUNCH_CHECK();
  });
}

void dropout_mask(double p, uint64_t seed, Tensor& mask) {
  dispatch_float(mask.dtype(), "dropout", [&]<class T>() {
    if (mask.numel() == 0) return;
    dropout_kernel<T><<<blocks(mask.numel()), kThreads, 0, stream()>>>(p, seed, static_cast<T>(1.0 / (1.0 - p)),
                                                                        ptr<T>(mask), mask.numel());
    TG_LAUNCH_CHECK();
  });
}

void embedding_forward(const Tensor& weight, const Tensor& indices, Tensor& y) {
  const int64_t V = weight.size(0), E = weight.size(1), N = indices.numel();
  dispatch_float(weight.dtype(), "embedding", [&]<class T>() {
    if (N * E == 0) return;
    embedding_kernel<T><<<blocks(N * E), kThreads, 0, stream()>>>(ptr<T>(weight), ptr<int64_t>(indices), V, E, N,
                                                                   ptr<T>(y));
    TG_LAUNCH_CHECK();
  });
}

void embedding_backward(const Tensor& gy, const Tensor& indices, Tensor& gweight) {
  const int64_t V = gweight.size(0), E = gweight.size(1), N = indices.numel();
  dispatch_float(gy.dtype(), "embedding_backward", [&]<class T>() {
    zero(gweight);
    if (N * E == 0) return;
    embedding_backward_kernel<T><<<blocks(E), kThreads, 0, stream()>>>(ptr<T>(gy), ptr<int64_t>(indices), V, E, N,
                                                                        ptr<T>(gweight));
    TG_LAUNCH_CHECK();
  });
}

void permute(const Tensor& x, const std::vector<int64_t>& dims, Tensor& out) {
  const Shape& xs = x.shape();
  const int r = static_cast<int>(xs.size());
  TG_CHECK(r <= kMaxDims, "permute: ", r, " dims; the CUDA kernels take at most ", kMaxDims);
  Permutation p;
  p.r = r;
  int64_t xstride[kMaxDims];
  for (int k = r - 1; k >= 0; --k) xstride[k] = k == r - 1 ? 1 : xstride[k + 1] * xs[k + 1];
  for (int k = 0; k < r; ++k) p.size[k] = xs[dims[k]], p.stride[k] = xstride[dims[k]];
  dispatch_all(x.dtype(), [&]<class T>() {
    if (out.numel() == 0) return;
    permute_kernel<T><<<blocks(out.numel()), kThreads, 0, stream()>>>(ptr<T>(x), ptr<T>(out), out.numel(), p);
    TG_LAUNCH_CHECK();
  });
}

// Block copies are strided 2-D copies: `outer` rows of a chunk each.
void copy_block(const Tensor& src, int64_t outer, int64_t src_n, int64_t inner, Tensor& dst, int64_t dst_n,
                int64_t dst_start) {
  const size_t es = size_of(src.dtype()), chunk = static_cast<size_t>(src_n * inner) * es;
  if (outer == 0 || chunk == 0) return;
  TG_CUDA_CHECK(cudaMemcpy2DAsync(static_cast<char*>(dst.raw_data()) + static_cast<size_t>(dst_start * inner) * es,
                                  static_cast<size_t>(dst_n * inner) * es, src.raw_data(), chunk, chunk,
                                  static_cast<size_t>(outer), cudaMemcpyDeviceToDevice, stream()));
}

void copy_block_from(const Tensor& src, int64_t outer, int64_t src_n, int64_t src_start, int64_t inner, Tensor& dst,
                     int64_t dst_n) {
  const size_t es = size_of(src.dtype()), chunk = static_cast<size_t>(dst_n * inner) * es;
  if (outer == 0 || chunk == 0) return;
  TG_CUDA_CHECK(cudaMemcpy2DAsync(dst.raw_data(), chunk,
                                  static_cast<const char*>(src.raw_data()) + static_cast<size_t>(src_start * inner) * es,
                                  static_cast<size_t>(src_n * inner) * es, chunk, static_cast<size_t>(outer),
                                  cudaMemcpyDeviceToDevice, stream()));
}

void convert(const Tensor& src, Tensor& dst) {
  if (src.numel() == 0) return;
  if (src.dtype() == dst.dtype()) {
    if (src.raw_data() != dst.raw_data())
      TG_CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), src.numel() * size_of(src.dtype()),
                                    cudaMemcpyDeviceToDevice, stream()));
    return;
  }
  dispatch_all(src.dtype(), [&]<class S>() {
    dispatch_all(dst.dtype(), [&]<class D>() {
      convert_kernel<S, D><<<blocks(src.numel()), kThreads, 0, stream()>>>(ptr<S>(src), ptr<D>(dst), src.numel());
      TG_LAUNCH_CHECK();
    });
  });
}

void fill(Tensor& t, double value) {
  dispatch_all(t.dtype(), [&]<class T>() {
    if (t.numel() == 0) return;
    fill_kernel<T><<<blocks(t.numel()), kThreads, 0, stream()>>>(ptr<T>(t), static_cast<T>(value), t.numel());
    TG_LAUNCH_CHECK();
  });
}

}  // namespace tapegrad::cuda
