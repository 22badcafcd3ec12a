// The CPU twin of the convolution, batch-norm and pooling kernels (contracts: src/kernels.inc).
//
// Convolution is im2col + one Eigen product per sample, parallel over the batch: each thread unfolds its
// sample into a private column buffer [C*R*S, P*Q] and runs Eigen single-threaded on it (a 1x1 convolution
// with stride 1 and no padding uses the input plane as it is). Batch norm runs per channel, pooling per
// (sample, channel) plane, both parallel over those.
#include <omp.h>

#define EIGEN_DONT_PARALLELIZE
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "../internal.hpp"
#include "cpu.hpp"
#include "parallel.hpp"

namespace tapegrad::cpu {

namespace {

template <class T>
T* ptr(Tensor& t) { return t.defined() ? static_cast<T*>(t.raw_data()) : nullptr; }
template <class T>
const T* ptr(const Tensor& t) { return t.defined() ? static_cast<const T*>(t.raw_data()) : nullptr; }

template <class T>
using MatR = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using Map = Eigen::Map<MatR<T>>;
template <class T>
using CMap = Eigen::Map<const MatR<T>>;

bool is_pointwise(const Window2d& g) {
  return g.R == 1 && g.S == 1 && g.stride_h == 1 && g.stride_w == 1 && g.pad_h == 0 && g.pad_w == 0;
}

// The output columns q whose input column q stride - pad + s lies inside [0, W): [lo, hi).
inline void valid_columns(const Window2d& g, int64_t s, int64_t& lo, int64_t& hi) {
  int64_t off = s - g.pad_w;  // w = q stride + off
  lo = std::min(g.Q, off >= 0 ? 0 : (-off + g.stride_w - 1) / g.stride_w);
  hi = off >= g.W ? 0 : std::min(g.Q, (g.W - 1 - off) / g.stride_w + 1);
  hi = std::max(hi, lo);
}

// col [C*R*S, P*Q]: col[(c R + r) S + s, p Q + q] = x[c, p sh - ph + r, q sw - pw + s], 0 outside.
template <class T>
void im2col(const T* x, const Window2d& g, T* col) {
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t r = 0; r < g.R; ++r)
      for (int64_t s = 0; s < g.S; ++s) {
        T* row = col + ((c * g.R + r) * g.S + s) * g.P * g.Q;
        int64_t lo, hi, off = s - g.pad_w;
        valid_columns(g, s, lo, hi);
        for (int64_t p = 0; p < g.P; ++p) {
          int64_t h = p * g.stride_h - g.pad_h + r;
          T* out = row + p * g.Q;
          if (h < 0 || h >= g.H) {
            std::fill(out, out + g.Q, T(0));
            continue;
          }
          const T* in = x + (c * g.H + h) * g.W + off;
          std::fill(out, out + lo, T(0));
          if (g.stride_w == 1) {
            std::memcpy(out + lo, in + lo, static_cast<size_t>(hi - lo) * sizeof(T));
          } else {
            for (int64_t q = lo; q < hi; ++q) out[q] = in[q * g.stride_w];
          }
          std::fill(out + hi, out + g.Q, T(0));
        }
      }
}

// The adjoint of im2col: x [C, H, W] = sum of the col entries that read each element.
template <class T>
void col2im(const T* col, const Window2d& g, T* x) {
  std::fill(x, x + g.C * g.H * g.W, T(0));
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t r = 0; r < g.R; ++r)
      for (int64_t s = 0; s < g.S; ++s) {
        const T* row = col + ((c * g.R + r) * g.S + s) * g.P * g.Q;
        int64_t lo, hi, off = s - g.pad_w;
        valid_columns(g, s, lo, hi);
        for (int64_t p = 0; p < g.P; ++p) {
          int64_t h = p * g.stride_h - g.pad_h + r;
          if (h < 0 || h >= g.H) continue;
          T* out = x + (c * g.H + h) * g.W + off;
          const T* in = row + p * g.Q;
          if (g.stride_w == 1) {
#pragma omp simd
            for (int64_t q = lo; q < hi; ++q) out[q] += in[q];
          } else {
            for (int64_t q = lo; q < hi; ++q) out[q * g.stride_w] += in[q];
          }
        }
      }
}

// A per-thread column buffer of at least n elements, kept between calls (no allocation, no page faults,
// no zeroing: im2col writes every element).
template <class T>
T* scratch(int64_t n) {
  thread_local std::vector<T> buf;
  if (static_cast<int64_t>(buf.size()) < n) buf.resize(static_cast<size_t>(n));
  return buf.data();
}

// Calls body(thread, begin, end) on contiguous blocks of [0, n), one per thread (in order of thread).
template <class Body>
void per_thread(int64_t n, Body&& body) {
  int nt = (n > 1 && !omp_in_parallel()) ? static_cast<int>(std::min<int64_t>(omp_get_max_threads(), n)) : 1;
  if (nt == 1) {
    body(0, int64_t{0}, n);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    int64_t t = omp_get_thread_num(), k = omp_get_num_threads(), per = (n + k - 1) / k;
    int64_t b = std::min(n, t * per), e = std::min(n, b + per);
    body(static_cast<int>(t), b, e);
  }
}

int threads_for(int64_t n) {
  return (n > 1 && !omp_in_parallel()) ? static_cast<int>(std::min<int64_t>(omp_get_max_threads(), n)) : 1;
}

}  // namespace

// ---- convolution ----------------------------------------------------------------------------

// y_n [K, PQ] = w [K, CRS] col_n [CRS, PQ] + bias
void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Window2d& g, Tensor& y) {
  dispatch_float(x.dtype(), "conv2d_forward", [&]<class T>() {
    const T* px = ptr<T>(x);
    const T* pb = ptr<T>(bias);
    T* py = ptr<T>(y);
    const int64_t crs = g.C * g.R * g.S, pq = g.P * g.Q;
    CMap<T> W(ptr<T>(w), g.K, crs);
    const bool direct = is_pointwise(g);
    per_thread(g.N, [&](int, int64_t b, int64_t e) {
      T* col = direct ? nullptr : scratch<T>(crs * pq);
      for (int64_t n = b; n < e; ++n) {
        const T* xn = px + n * g.C * g.H * g.W;
        if (!direct) im2col(xn, g, col);
        CMap<T> X(direct ? xn : col, crs, pq);
        Map<T> Y(py + n * g.K * pq, g.K, pq);
        Y.noalias() = W * X;
        if (pb)
          for (int64_t k = 0; k < g.K; ++k) Y.row(k).array() += pb[k];
      }
    });
  });
}

// gcol_n [CRS, PQ] = w^T gy_n;  gx_n = col2im(gcol_n)
void conv2d_backward_input(const Tensor& gy, const Tensor& w, const Window2d& g, Tensor& gx) {
  dispatch_float(gy.dtype(), "conv2d_backward_input", [&]<class T>() {
    const T* pg = ptr<T>(gy);
    T* px = ptr<T>(gx);
    const int64_t crs = g.C * g.R * g.S, pq = g.P * g.Q;
    CMap<T> W(ptr<T>(w), g.K, crs);
    const bool direct = is_pointwise(g);
    per_thread(g.N, [&](int, int64_t b, int64_t e) {
      T* col = direct ? nullptr : scratch<T>(crs * pq);
      for (int64_t n = b; n < e; ++n) {
        CMap<T> G(pg + n * g.K * pq, g.K, pq);
        T* xn = px + n * g.C * g.H * g.W;
        Map<T> C(direct ? xn : col, crs, pq);
        C.noalias() = W.transpose() * G;
        if (!direct) col2im(col, g, xn);
      }
    });
  });
}

// gw [K, CRS] = sum_n gy_n [K, PQ] col_n^T;  gbias [K] = sum over n, p, q of gy.
// Each thread sums its block of samples into its own [K, CRS] partial; the partials are added in thread
// order, so a fixed thread count gives fixed results.
void conv2d_backward_weight(const Tensor& gy, const Tensor& x, const Window2d& g, Tensor& gw, Tensor& gbias) {
  dispatch_float(gy.dtype(), "conv2d_backward_weight", [&]<class T>() {
    const T* pg = ptr<T>(gy);
    const T* px = ptr<T>(x);
    const int64_t crs = g.C * g.R * g.S, pq = g.P * g.Q;
    const bool direct = is_pointwise(g);
    int nt = threads_for(g.N);
    std::vector<MatR<T>> partial(static_cast<size_t>(nt));
    per_thread(g.N, [&](int t, int64_t b, int64_t e) {
      MatR<T>& acc = partial[static_cast<size_t>(t)];
      acc.setZero(g.K, crs);
      T* col = direct ? nullptr : scratch<T>(crs * pq);
      for (int64_t n = b; n < e; ++n) {
        const T* xn = px + n * g.C * g.H * g.W;
        if (!direct) im2col(xn, g, col);
        CMap<T> X(direct ? xn : col, crs, pq);
        CMap<T> G(pg + n * g.K * pq, g.K, pq);
        acc.noalias() += G * X.transpose();
      }
    });
    Map<T> GW(ptr<T>(gw), g.K, crs);
    GW.setZero();
    for (const MatR<T>& part : partial)
      if (part.size() != 0) GW += part;  // OpenMP may have started fewer threads than asked
    if (T* pb = ptr<T>(gbias)) {
      for (int64_t k = 0; k < g.K; ++k) {
        T acc = 0;
        for (int64_t n = 0; n < g.N; ++n) {
          const T* row = pg + (n * g.K + k) * pq;
          for (int64_t i = 0; i < pq; ++i) acc += row[i];
        }
        pb[k] = acc;
      }
    }
  });
}

// ---- batch norm -----------------------------------------------------------------------------

namespace {
// Shape of x as [N, C, inner].
struct Planes {
  int64_t N, C, inner;
  explicit Planes(const Tensor& x) : N(x.size(0)), C(x.size(1)), inner(x.numel() / std::max<int64_t>(1, N * C)) {}
};
}  // namespace

void batch_norm_forward_training(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                                 double momentum, Tensor& running_mean, Tensor& running_var, Tensor& y,
                                 Tensor& save_mean, Tensor& save_invstd) {
  dispatch_float(x.dtype(), "batch_norm_forward_training", [&]<class T>() {
    Planes s(x);
    const T* px = ptr<T>(x);
    const T* pw = ptr<T>(weight);
    const T* pb = ptr<T>(bias);
    T* py = ptr<T>(y);
    T* pm = ptr<T>(save_mean);
    T* pi = ptr<T>(save_invstd);
    T* rm = ptr<T>(running_mean);
    T* rv = ptr<T>(running_var);
    const int64_t M = s.N * s.inner;
#pragma omp parallel for schedule(static) if (s.C > 1 && M * s.C >= kGrain)
    for (int64_t c = 0; c < s.C; ++c) {
      double sum = 0, sq = 0;  // two passes (mean, then squared deviations) in double: no cancellation
      for (int64_t n = 0; n < s.N; ++n) {
        const T* p = px + (n * s.C + c) * s.inner;
#pragma omp simd reduction(+ : sum)
        for (int64_t i = 0; i < s.inner; ++i) sum += p[i];
      }
      double mean = sum / static_cast<double>(M);
      for (int64_t n = 0; n < s.N; ++n) {
        const T* p = px + (n * s.C + c) * s.inner;
#pragma omp simd reduction(+ : sq)
        for (int64_t i = 0; i < s.inner; ++i) sq += (p[i] - mean) * (p[i] - mean);
      }
      double var = sq / static_cast<double>(M);
      double invstd = 1.0 / std::sqrt(var + eps);
      pm[c] = static_cast<T>(mean);
      pi[c] = static_cast<T>(invstd);
      if (rm) rm[c] = static_cast<T>((1 - momentum) * rm[c] + momentum * mean);
      if (rv) rv[c] = static_cast<T>((1 - momentum) * rv[c] + momentum * sq / static_cast<double>(M - 1));
      T scale = static_cast<T>(invstd * (pw ? pw[c] : T(1)));
      T shift = static_cast<T>((pb ? pb[c] : T(0)) - mean * scale);
      for (int64_t n = 0; n < s.N; ++n) {
        const T* p = px + (n * s.C + c) * s.inner;
        T* q = py + (n * s.C + c) * s.inner;
#pragma omp simd
        for (int64_t i = 0; i < s.inner; ++i) q[i] = p[i] * scale + shift;
      }
    }
  });
}

void batch_norm_forward_inference(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                  const Tensor& running_mean, const Tensor& running_var, double eps, Tensor& y) {
  dispatch_float(x.dtype(), "batch_norm_forward_inference", [&]<class T>() {
    Planes s(x);
    const T* px = ptr<T>(x);
    const T* pw = ptr<T>(weight);
    const T* pb = ptr<T>(bias);
    const T* rm = ptr<T>(running_mean);
    const T* rv = ptr<T>(running_var);
    T* py = ptr<T>(y);
    parallel_for(s.N * s.C, [&](int64_t b, int64_t e) {
      for (int64_t nc = b; nc < e; ++nc) {
        int64_t c = nc % s.C;
        T scale = static_cast<T>((pw ? pw[c] : T(1)) / std::sqrt(static_cast<double>(rv[c]) + eps));
        T shift = (pb ? pb[c] : T(0)) - rm[c] * scale;
        const T* p = px + nc * s.inner;
        T* q = py + nc * s.inner;
#pragma omp simd
        for (int64_t i = 0; i < s.inner; ++i) q[i] = p[i] * scale + shift;
      }
    }, std::max<int64_t>(1, kGrain / std::max<int64_t>(s.inner, 1)));
  });
}

// xhat = (x - mean) invstd;  gbias = sum gy;  gweight = sum gy xhat;
// training: gx = weight invstd (gy - gbias / M - xhat gweight / M);  evaluation: gx = weight invstd gy
void batch_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& weight, const Tensor& mean,
                         const Tensor& invstd, bool batch_stats, Tensor& gx, Tensor& gweight, Tensor& gbias) {
  dispatch_float(x.dtype(), "batch_norm_backward", [&]<class T>() {
    Planes s(x);
    const T* pg = ptr<T>(gy);
    const T* px = ptr<T>(x);
    const T* pw = ptr<T>(weight);
    const T* pm = ptr<T>(mean);
    const T* pi = ptr<T>(invstd);
    T* po = ptr<T>(gx);
    T* gw = ptr<T>(gweight);
    T* gb = ptr<T>(gbias);
    const int64_t M = s.N * s.inner;
#pragma omp parallel for schedule(static) if (s.C > 1 && M * s.C >= kGrain)
    for (int64_t c = 0; c < s.C; ++c) {
      const T mu = pm[c], is = pi[c];
      double sg = 0, sgx = 0;
      for (int64_t n = 0; n < s.N; ++n) {
        const T* g = pg + (n * s.C + c) * s.inner;
        const T* p = px + (n * s.C + c) * s.inner;
#pragma omp simd reduction(+ : sg, sgx)
        for (int64_t i = 0; i < s.inner; ++i) {
          sg += g[i];
          sgx += g[i] * (p[i] - mu);
        }
      }
      sgx *= is;  // sum gy xhat
      if (gw) gw[c] = static_cast<T>(sgx);
      if (gb) gb[c] = static_cast<T>(sg);
      if (!po) continue;
      const T k = (pw ? pw[c] : T(1)) * is;
      const T a = batch_stats ? static_cast<T>(sg / static_cast<double>(M)) : T(0);
      const T b = batch_stats ? static_cast<T>(sgx / static_cast<double>(M)) * is : T(0);  // per (x - mean)
      for (int64_t n = 0; n < s.N; ++n) {
        const T* g = pg + (n * s.C + c) * s.inner;
        const T* p = px + (n * s.C + c) * s.inner;
        T* q = po + (n * s.C + c) * s.inner;
#pragma omp simd
        for (int64_t i = 0; i < s.inner; ++i) q[i] = k * (g[i] - a - (p[i] - mu) * b);
      }
    }
  });
}

// ---- pooling --------------------------------------------------------------------------------

void max_pool2d_forward(const Tensor& x, const Window2d& g, Tensor& y, Tensor& indices) {
  dispatch_float(x.dtype(), "max_pool2d_forward", [&]<class T>() {
    const T* px = ptr<T>(x);
    T* py = ptr<T>(y);
    int64_t* pi = ptr<int64_t>(indices);
    const int64_t hw = g.H * g.W, pq = g.P * g.Q;
    parallel_for(g.N * g.C, [&](int64_t b, int64_t e) {
      for (int64_t plane = b; plane < e; ++plane) {
        const T* in = px + plane * hw;
        for (int64_t p = 0; p < g.P; ++p)
          for (int64_t q = 0; q < g.Q; ++q) {
            int64_t h0 = p * g.stride_h - g.pad_h, w0 = q * g.stride_w - g.pad_w;
            int64_t h1 = std::min(h0 + g.R, g.H), w1 = std::min(w0 + g.S, g.W);
            h0 = std::max<int64_t>(h0, 0), w0 = std::max<int64_t>(w0, 0);
            T best = -std::numeric_limits<T>::infinity();
            int64_t arg = h0 * g.W + w0;
            for (int64_t h = h0; h < h1; ++h)
              for (int64_t w = w0; w < w1; ++w) {
                T v = in[h * g.W + w];
                if (v > best || std::isnan(v)) {
                  best = v, arg = h * g.W + w;
                  if (std::isnan(v)) h = h1, w = w1;  // NaN propagates, as in PyTorch
                }
              }
            py[plane * pq + p * g.Q + q] = best;
            pi[plane * pq + p * g.Q + q] = arg;
          }
      }
    }, std::max<int64_t>(1, kGrain / std::max<int64_t>(hw, 1)));
  });
}

void max_pool2d_backward(const Tensor& gy, const Tensor& indices, const Window2d& g, Tensor& gx) {
  dispatch_float(gy.dtype(), "max_pool2d_backward", [&]<class T>() {
    const T* pg = ptr<T>(gy);
    const int64_t* pi = ptr<int64_t>(indices);
    T* po = ptr<T>(gx);
    const int64_t hw = g.H * g.W, pq = g.P * g.Q;
    parallel_for(g.N * g.C, [&](int64_t b, int64_t e) {
      for (int64_t plane = b; plane < e; ++plane) {
        T* out = po + plane * hw;
        std::fill(out, out + hw, T(0));
        for (int64_t i = 0; i < pq; ++i) out[pi[plane * pq + i]] += pg[plane * pq + i];
      }
    }, std::max<int64_t>(1, kGrain / std::max<int64_t>(hw, 1)));
  });
}

void avg_pool2d_forward(const Tensor& x, const Window2d& g, Tensor& y) {
  dispatch_float(x.dtype(), "avg_pool2d_forward", [&]<class T>() {
    const T* px = ptr<T>(x);
    T* py = ptr<T>(y);
    const int64_t hw = g.H * g.W, pq = g.P * g.Q;
    const T inv = T(1) / static_cast<T>(g.R * g.S);
    parallel_for(g.N * g.C, [&](int64_t b, int64_t e) {
      for (int64_t plane = b; plane < e; ++plane) {
        const T* in = px + plane * hw;
        for (int64_t p = 0; p < g.P; ++p)
          for (int64_t q = 0; q < g.Q; ++q) {
            int64_t h0 = p * g.stride_h - g.pad_h, w0 = q * g.stride_w - g.pad_w;
            int64_t h1 = std::min(h0 + g.R, g.H), w1 = std::min(w0 + g.S, g.W);
            h0 = std::max<int64_t>(h0, 0), w0 = std::max<int64_t>(w0, 0);
            T acc = 0;
            for (int64_t h = h0; h < h1; ++h)
              for (int64_t w = w0; w < w1; ++w) acc += in[h * g.W + w];
            py[plane * pq + p * g.Q + q] = acc * inv;
          }
      }
    }, std::max<int64_t>(1, kGrain / std::max<int64_t>(hw, 1)));
  });
}

void avg_pool2d_backward(const Tensor& gy, const Window2d& g, Tensor& gx) {
  dispatch_float(gy.dtype(), "avg_pool2d_backward", [&]<class T>() {
    const T* pg = ptr<T>(gy);
    T* po = ptr<T>(gx);
    const int64_t hw = g.H * g.W, pq = g.P * g.Q;
    const T inv = T(1) / static_cast<T>(g.R * g.S);
    parallel_for(g.N * g.C, [&](int64_t b, int64_t e) {
      for (int64_t plane = b; plane < e; ++plane) {
        T* out = po + plane * hw;
        std::fill(out, out + hw, T(0));
        for (int64_t p = 0; p < g.P; ++p)
          for (int64_t q = 0; q < g.Q; ++q) {
            int64_t h0 = p * g.stride_h - g.pad_h, w0 = q * g.stride_w - g.pad_w;
            int64_t h1 = std::min(h0 + g.R, g.H), w1 = std::min(w0 + g.S, g.W);
            h0 = std::max<int64_t>(h0, 0), w0 = std::max<int64_t>(w0, 0);
            T v = pg[plane * pq + p * g.Q + q] * inv;
            for (int64_t h = h0; h < h1; ++h)
              for (int64_t w = w0; w < w1; ++w) out[h * g.W + w] += v;
          }
      }
    }, std::max<int64_t>(1, kGrain / std::max<int64_t>(hw, 1)));
  });
}

}  // namespace tapegrad::cpu
