// The CPU twin: Eigen maps over raw buffers for matrix products (multithreaded through OpenMP), plain
// OpenMP loops that the compiler vectorises for everything else. Contracts: src/kernels.inc.
#include "cpu.hpp"

#include <omp.h>

// Threads are ours: Eigen runs single-threaded inside the slices that gemm() hands each OpenMP thread.
// Its packing buffers live on the stack up to this size instead of fresh heap memory on every call.
#define EIGEN_DONT_PARALLELIZE
#define EIGEN_STACK_ALLOCATION_LIMIT (4 << 20)
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "../internal.hpp"
#include "../philox.hpp"
#include "parallel.hpp"
#include "sgemm.hpp"

namespace tapegrad::cpu {

namespace {


// Elementwise map y[i] = f(x[i]).
template <class T, class F>
void map1(const T* x, T* y, int64_t n, F f) {
  parallel_for(n, [&](int64_t b, int64_t e) {
#pragma omp simd
    for (int64_t i = b; i < e; ++i) y[i] = f(x[i]);
  });
}

// Broadcast geometry of out = f(a, b): per output dim, the strides of a and b (0 where broadcast),
// with adjacent dims merged where both operands stay contiguous across them.
struct Broadcast {
  std::vector<int64_t> size, sa, sb;

  Broadcast(const Shape& as, const Shape& bs, const Shape& os) {
    size_t r = os.size();
    auto padded = [r](const Shape& s) {  // right-aligned to rank r with leading 1s
      Shape p(r - s.size(), 1);
      p.insert(p.end(), s.begin(), s.end());
      return p;
    };
    Shape pa = padded(as), pb = padded(bs);
    std::vector<int64_t> fa(r, 0), fb(r, 0);
    int64_t stride_a = 1, stride_b = 1;
    for (size_t k = r; k-- > 0;) {
      fa[k] = (pa[k] == 1 && os[k] != 1) ? 0 : stride_a;
      fb[k] = (pb[k] == 1 && os[k] != 1) ? 0 : stride_b;
      stride_a *= pa[k];
      stride_b *= pb[k];
    }
    for (size_t k = 0; k < r; ++k) {
      if (os[k] == 1) continue;  // size-1 dims carry nothing
      if (!size.empty() && sa.back() == fa[k] * os[k] && sb.back() == fb[k] * os[k]) {
        size.back() *= os[k];
        sa.back() = fa[k];
        sb.back() = fb[k];
      } else {
        size.push_back(os[k]);
        sa.push_back(fa[k]);
        sb.push_back(fb[k]);
      }
    }
    if (size.empty()) size = {1}, sa = {0}, sb = {0};
  }
};

// out[idx] = f(a[idx_a], b[idx_b]) over a broadcast: rows of the last merged dim, in parallel.
template <class T, class F>
void map2(const T* a, const T* b, T* o, const Broadcast& g, F f) {
  size_t r = g.size.size();
  int64_t len = g.size[r - 1], la = g.sa[r - 1], lb = g.sb[r - 1];
  int64_t rows = 1;
  for (size_t k = 0; k + 1 < r; ++k) rows *= g.size[k];
  parallel_for(
      rows,
      [&](int64_t rb, int64_t re) {
        for (int64_t row = rb; row < re; ++row) {
          int64_t oa = 0, ob = 0, rem = row;
          for (size_t k = r - 1; k-- > 0;) {
            int64_t ix = rem % g.size[k];
            rem /= g.size[k];
            oa += ix * g.sa[k];
            ob += ix * g.sb[k];
          }
          const T* pa = a + oa;
          const T* pb = b + ob;
          T* po = o + row * len;
          if (la == 1 && lb == 1) {
#pragma omp simd
            for (int64_t i = 0; i < len; ++i) po[i] = f(pa[i], pb[i]);
          } else if (la == 1) {
            T vb = *pb;
#pragma omp simd
            for (int64_t i = 0; i < len; ++i) po[i] = f(pa[i], vb);
          } else if (lb == 1) {
            T va = *pa;
#pragma omp simd
            for (int64_t i = 0; i < len; ++i) po[i] = f(va, pb[i]);
          } else {
            po[0] = f(*pa, *pb);
            for (int64_t i = 1; i < len; ++i) po[i] = po[0];
          }
        }
      },
      std::max<int64_t>(1, kGrain / std::max<int64_t>(len, 1)));
}

template <class T, class F>
void binary_typed(const Tensor& a, const Tensor& b, Tensor& out, F f) {
  const T* pa = ptr<T>(a);
  const T* pb = ptr<T>(b);
  T* po = ptr<T>(out);
  int64_t n = out.numel();
  if (a.shape() == out.shape() && b.shape() == out.shape()) {
    parallel_for(n, [&](int64_t s, int64_t e) {
#pragma omp simd
      for (int64_t i = s; i < e; ++i) po[i] = f(pa[i], pb[i]);
    });
  } else if (b.numel() == 1 && a.numel() == n) {
    T vb = *pb;
    map1(pa, po, n, [&](T x) { return f(x, vb); });
  } else {
    map2(pa, pb, po, Broadcast(a.shape(), b.shape(), out.shape()), f);
  }
}

// out[o, i] = sum_r x[o, r, i]
template <class T>
void reduce_mid(const T* x, int64_t outer, int64_t n, int64_t inner, T* out) {
  if (inner == 1) {
    if (outer == 1) {  // one long sum: split across threads, combine in a fixed order
      int nt = n >= kGrain ? omp_get_max_threads() : 1;
      std::vector<T> part(static_cast<size_t>(nt), T(0));
      parallel_for(n, [&](int64_t b, int64_t e) {
        T acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t i = b; i < e; ++i) acc += x[i];
        part[static_cast<size_t>(nt == 1 ? 0 : omp_get_thread_num())] = acc;
      });
      T acc = 0;
      for (T p : part) acc += p;
      out[0] = acc;
      return;
    }
    parallel_for(
        outer,
        [&](int64_t b, int64_t e) {
          for (int64_t o = b; o < e; ++o) {
            const T* row = x + o * n;
            T acc = 0;
#pragma omp simd reduction(+ : acc)
            for (int64_t r = 0; r < n; ++r) acc += row[r];
            out[o] = acc;
          }
        },
        std::max<int64_t>(1, kGrain / std::max<int64_t>(n, 1)));
    return;
  }
  // Column blocks: accumulate rows of length `inner` (vectorised over i).
  parallel_for(
      outer * inner,
      [&](int64_t b, int64_t e) {
        // [b, e) indexes (o, i) pairs; process maximal runs within one o.
        for (int64_t s = b; s < e;) {
          int64_t o = s / inner, i0 = s % inner, i1 = std::min(inner, i0 + (e - s));
          T* po = out + o * inner;
          for (int64_t i = i0; i < i1; ++i) po[i] = 0;
          for (int64_t r = 0; r < n; ++r) {
            const T* row = x + (o * n + r) * inner;
#pragma omp simd
            for (int64_t i = i0; i < i1; ++i) po[i] += row[i];
          }
          s += i1 - i0;
        }
      },
      std::max<int64_t>(1, kGrain / std::max<int64_t>(n, 1)));
}

}  // namespace

// ---- elementwise ----------------------------------------------------------------------------

void unary(Unary op, const Tensor& x, Tensor& y, double param) {
  dispatch_float(x.dtype(), "unary", [&]<class T>() {
    const T* px = ptr<T>(x);
    T* py = ptr<T>(y);
    int64_t n = x.numel();
    switch (op) {
      case Unary::Exp: map1(px, py, n, [](T v) { return std::exp(v); }); break;
      case Unary::Log: map1(px, py, n, [](T v) { return std::log(v); }); break;
      case Unary::Sqrt: map1(px, py, n, [](T v) { return std::sqrt(v); }); break;
      case Unary::Tanh: map1(px, py, n, [](T v) { return std::tanh(v); }); break;
      case Unary::Sigmoid: map1(px, py, n, [](T v) { return T(1) / (T(1) + std::exp(-v)); }); break;
      case Unary::Relu: map1(px, py, n, [](T v) { return v > T(0) ? v : T(0); }); break;
      case Unary::Erf: map1(px, py, n, [](T v) { return std::erf(v); }); break;
      case Unary::Pow: {
        T p = static_cast<T>(param);
        if (param == 2.0) map1(px, py, n, [](T v) { return v * v; });
        else map1(px, py, n, [p](T v) { return std::pow(v, p); });
        break;
      }
    }
  });
}

void unary_backward(Unary op, const Tensor& g, const Tensor& x, const Tensor& y, Tensor& gx, double param) {
  dispatch_float(g.dtype(), "unary_backward", [&]<class T>() {
    const T* pg = ptr<T>(g);
    T* po = ptr<T>(gx);
    int64_t n = g.numel();
    auto run = [&](const T* src, auto f) {
      parallel_for(n, [&](int64_t b, int64_t e) {
#pragma omp simd
        for (int64_t i = b; i < e; ++i) po[i] = f(pg[i], src[i]);
      });
    };
    switch (op) {
      case Unary::Exp: run(ptr<T>(y), [](T gv, T yv) { return gv * yv; }); break;
      case Unary::Log: run(ptr<T>(x), [](T gv, T xv) { return gv / xv; }); break;
      case Unary::Sqrt: run(ptr<T>(y), [](T gv, T yv) { return gv / (T(2) * yv); }); break;
      case Unary::Tanh: run(ptr<T>(y), [](T gv, T yv) { return gv * (T(1) - yv * yv); }); break;
      case Unary::Sigmoid: run(ptr<T>(y), [](T gv, T yv) { return gv * yv * (T(1) - yv); }); break;
      case Unary::Relu: run(ptr<T>(y), [](T gv, T yv) { return yv > T(0) ? gv : T(0); }); break;
      case Unary::Erf: run(ptr<T>(x), [](T gv, T xv) { return gv * T(M_2_SQRTPI) * std::exp(-xv * xv); }); break;
      case Unary::Pow: {
        T p = static_cast<T>(param);
        run(ptr<T>(x), [p](T gv, T xv) { return gv * p * std::pow(xv, p - T(1)); });
        break;
      }
    }
  });
}

void binary(Binary op, const Tensor& a, const Tensor& b, Tensor& out) {
  dispatch_float(a.dtype(), "binary", [&]<class T>() {
    switch (op) {
      case Binary::Add: binary_typed<T>(a, b, out, [](T u, T v) { return u + v; }); break;
      case Binary::Sub: binary_typed<T>(a, b, out, [](T u, T v) { return u - v; }); break;
      case Binary::Mul: binary_typed<T>(a, b, out, [](T u, T v) { return u * v; }); break;
      case Binary::Div: binary_typed<T>(a, b, out, [](T u, T v) { return u / v; }); break;
      case Binary::Eq: binary_typed<T>(a, b, out, [](T u, T v) { return T(u == v); }); break;
      case Binary::Ne: binary_typed<T>(a, b, out, [](T u, T v) { return T(u != v); }); break;
      case Binary::Lt: binary_typed<T>(a, b, out, [](T u, T v) { return T(u < v); }); break;
      case Binary::Le: binary_typed<T>(a, b, out, [](T u, T v) { return T(u <= v); }); break;
      case Binary::Gt: binary_typed<T>(a, b, out, [](T u, T v) { return T(u > v); }); break;
      case Binary::Ge: binary_typed<T>(a, b, out, [](T u, T v) { return T(u >= v); }); break;
      case Binary::Masked: binary_typed<T>(a, b, out, [](T u, T v) { return v != T(0) ? u : T(0); }); break;
    }
  });
}

void affine(const Tensor& x, double alpha, double beta, Tensor& out) {
  dispatch_float(x.dtype(), "affine", [&]<class T>() {
    T a = static_cast<T>(alpha), b = static_cast<T>(beta);
    map1(ptr<T>(x), ptr<T>(out), x.numel(), [a, b](T v) { return a * v + b; });
  });
}

void sum_to(const Tensor& x, Tensor& out) {
  dispatch_float(x.dtype(), "sum_to", [&]<class T>() {
    // Align out's shape to x's rank; reduce each maximal run of reduced dims with reduce_mid.
    const Shape& xs = x.shape();
    size_t r = xs.size();
    Shape os(r, 1);
    for (size_t k = 0; k < out.shape().size(); ++k) os[r - out.shape().size() + k] = out.shape()[k];
    Shape cur = xs;
    Tensor src = x;
    size_t k = 0;
    while (true) {
      while (k < r && !(cur[k] != os[k])) ++k;
      if (k == r) break;
      size_t k1 = k;
      while (k1 < r && cur[k1] != os[k1]) ++k1;  // [k, k1) reduced
      int64_t outer = 1, n = 1, inner = 1;
      for (size_t j = 0; j < k; ++j) outer *= cur[j];
      for (size_t j = k; j < k1; ++j) n *= cur[j];
      for (size_t j = k1; j < r; ++j) inner *= cur[j];
      for (size_t j = k; j < k1; ++j) cur[j] = 1;
      bool last = true;
      for (size_t j = k1; j < r; ++j)
        if (cur[j] != os[j]) last = false;
      Tensor dst = last ? out : make_tensor(cur, x.dtype());
      reduce_mid(ptr<T>(src), outer, n, inner, ptr<T>(dst));
      src = dst;
      k = k1;
      if (last) return;
    }
    if (src.impl_ptr() != out.impl_ptr()) std::memcpy(out.raw_data(), src.raw_data(), out.numel() * sizeof(T));
  });
}

void expand(const Tensor& x, Tensor& out) {
  dispatch_float(x.dtype(), "expand", [&]<class T>() {
    if (x.numel() == out.numel()) {
      std::memcpy(out.raw_data(), x.raw_data(), out.numel() * sizeof(T));
      return;
    }
    map2(ptr<T>(x), ptr<T>(x), ptr<T>(out), Broadcast(x.shape(), x.shape(), out.shape()), [](T u, T) { return u; });
  });
}

void max_dim(const Tensor& x, int64_t outer, int64_t n, int64_t inner, Tensor& values, Tensor& indices) {
  dispatch_float(x.dtype(), "max", [&]<class T>() {
    const T* px = ptr<T>(x);
    T* pv = ptr<T>(values);
    int64_t* pi = ptr<int64_t>(indices);
    parallel_for(outer * inner, [&](int64_t b, int64_t e) {
      for (int64_t s = b; s < e; ++s) {
        int64_t o = s / inner, i = s % inner;
        const T* p = px + o * n * inner + i;
        T best = p[0];
        int64_t arg = 0;
        for (int64_t r = 1; r < n; ++r) {
          T v = p[r * inner];
          if (v > best || (std::isnan(v) && !std::isnan(best))) best = v, arg = r;
        }
        pv[s] = best;
        pi[s] = arg;
      }
    }, std::max<int64_t>(1, kGrain / std::max<int64_t>(n, 1)));
  });
}

void max_dim_backward(const Tensor& g, const Tensor& indices, int64_t outer, int64_t n, int64_t inner, Tensor& gx) {
  dispatch_float(g.dtype(), "max_backward", [&]<class T>() {
    const T* pg = ptr<T>(g);
    const int64_t* pi = ptr<int64_t>(indices);
    T* po = ptr<T>(gx);
    std::memset(po, 0, gx.numel() * sizeof(T));
    for (int64_t s = 0; s < outer * inner; ++s) {
      int64_t o = s / inner, i = s % inner;
      po[(o * n + pi[s]) * inner + i] = pg[s];
    }
  });
}

void argmax(const Tensor& x, int64_t outer, int64_t n, int64_t inner, Tensor& out) {
  Tensor values = make_tensor(out.shape(), x.dtype());
  max_dim(x, outer, n, inner, values, out);
}

// ---- matrix products ------------------------------------------------------------------------

namespace {
template <class T>
using MatR = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

using Stride = Eigen::OuterStride<>;

// C[r0:r1, c0:c1] = alpha op(A)[r0:r1, :] op(B)[:, c0:c1] + beta C[r0:r1, c0:c1] for row-major A, B, C
// (op = transpose when the flag says the operand is stored transposed).
template <class T>
void gemm_block(bool ta, bool tb, int64_t m, int64_t n, int64_t k, int64_t r0, int64_t r1, int64_t c0, int64_t c1,
                T alpha, const T* a, const T* b, T beta, T* c) {
  using Map = Eigen::Map<const MatR<T>, 0, Stride>;
  Eigen::Map<MatR<T>, 0, Stride> C(c + r0 * n + c0, r1 - r0, c1 - c0, Stride(n));
  if (beta == T(0)) C.setZero();
  else if (beta != T(1)) C *= beta;
  // op(A) rows r0:r1: stored [m,k] -> rows; stored [k,m] (ta) -> columns of the stored matrix.
  Map A = ta ? Map(a + r0, k, r1 - r0, Stride(m)) : Map(a + r0 * k, r1 - r0, k, Stride(k));
  Map B = tb ? Map(b + c0 * k, c1 - c0, k, Stride(k)) : Map(b + c0, k, c1 - c0, Stride(n));
  if (!ta && !tb) C.noalias() += alpha * A * B;
  else if (ta && !tb) C.noalias() += alpha * A.transpose() * B;
  else if (!ta && tb) C.noalias() += alpha * A * B.transpose();
  else C.noalias() += alpha * A.transpose() * B.transpose();
}

}  // namespace

namespace {
// f32 at the AVX2 and AVX-512 levels: sgemm's kernel. A product large enough for threads is cut into one band
// per thread, of whole micro-tiles: bands of columns when C is wider than tall (each thread packs only its part
// of a transposed B), else bands of rows (each thread packs only its rows of A).
void gemm_f32(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* A, const float* B,
              float beta, float* C, const float* bias = nullptr) {
  const int64_t lda = ta ? m : k, ldb = tb ? k : n;
  const int threads = m * n * k < 64 * 64 * 64 || omp_in_parallel() ? 1 : omp_get_max_threads();
  if (threads == 1) return sgemm::gemm(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, n, bias);
  const bool by_cols = n >= m;
  const int64_t len = by_cols ? n : m, unit = by_cols ? sgemm::kernel().nr : sgemm::kernel().mr;
#pragma omp parallel num_threads(threads)
  {
    const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t per = ((len + nt - 1) / nt + unit - 1) / unit * unit;
    const int64_t lo = std::min(len, t * per), hi = std::min(len, lo + per);
    if (lo < hi) {
      if (by_cols)
        sgemm::gemm(ta, tb, m, hi - lo, k, alpha, A, lda, tb ? B + lo * ldb : B + lo, ldb, beta, C + lo, n,
                    bias ? bias + lo : nullptr);
      else
        sgemm::gemm(ta, tb, hi - lo, n, k, alpha, ta ? A + lo : A + lo * lda, lda, B, ldb, beta, C + lo * n, n, bias);
    }
  }
}
}  // namespace

void gemm(bool trans_a, bool trans_b, int64_t batch, int64_t m, int64_t n, int64_t k, double alpha, const Tensor& a,
          int64_t stride_a, const Tensor& b, int64_t stride_b, double beta, Tensor& c) {
  if (a.dtype() == DType::F32 && sgemm::available()) {
    const float* pa = ptr<float>(a);
    const float* pb = ptr<float>(b);
    float* pc = ptr<float>(c);
    const float al = static_cast<float>(alpha), be = static_cast<float>(beta);
    if (batch >= omp_get_max_threads() && batch * m * n * k >= 64 * 64 * 64 && !omp_in_parallel()) {
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < batch; ++i)  // one product per thread (gemm_f32 sees it is inside a parallel region)
        gemm_f32(trans_a, trans_b, m, n, k, al, pa + i * stride_a, pb + i * stride_b, be, pc + i * m * n);
    } else {
      for (int64_t i = 0; i < batch; ++i)
        gemm_f32(trans_a, trans_b, m, n, k, al, pa + i * stride_a, pb + i * stride_b, be, pc + i * m * n);
    }
    return;
  }
  dispatch_float(a.dtype(), "gemm", [&]<class T>() {
    const T* pa = ptr<T>(a);
    const T* pb = ptr<T>(b);
    T* pc = ptr<T>(c);
    T al = static_cast<T>(alpha), be = static_cast<T>(beta);
    int threads = omp_get_max_threads();
    if (threads == 1 || batch * m * n * k < 64 * 64 * 64) {
      for (int64_t i = 0; i < batch; ++i)
        gemm_block(trans_a, trans_b, m, n, k, 0, m, 0, n, al, pa + i * stride_a, pb + i * stride_b, be, pc + i * m * n);
    } else if (batch >= threads) {  // one matrix per thread
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < batch; ++i)
        gemm_block(trans_a, trans_b, m, n, k, 0, m, 0, n, al, pa + i * stride_a, pb + i * stride_b, be, pc + i * m * n);
    } else {
      // Each thread computes a band of C's rows (or of its columns, whichever dim is larger, so that the
      // operand every thread packs again is the smaller one).
      bool by_rows = m >= n;
      for (int64_t i = 0; i < batch; ++i) {
        const T* A = pa + i * stride_a;
        const T* B = pb + i * stride_b;
        T* C = pc + i * m * n;
#pragma omp parallel
        {
          int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
          int64_t len = by_rows ? m : n, chunk = (len + nt - 1) / nt;
          int64_t lo = std::min(len, t * chunk), hi = std::min(len, lo + chunk);
          if (lo < hi) {
            if (by_rows) gemm_block(trans_a, trans_b, m, n, k, lo, hi, 0, n, al, A, B, be, C);
            else gemm_block(trans_a, trans_b, m, n, k, 0, m, lo, hi, al, A, B, be, C);
          }
        }
      }
    }
  });
}

void linear_forward(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y) {
  const int64_t N = x.size(0), in = x.size(1), out = w.size(0);
  if (x.dtype() == DType::F32 && sgemm::available()) {
    gemm_f32(false, true, N, out, in, 1.0f, ptr<float>(x), ptr<float>(w), 0.0f, ptr<float>(y),
             bias.defined() ? ptr<float>(bias) : nullptr);
    return;
  }
  gemm(false, true, 1, N, out, in, 1.0, x, 0, w, 0, 0.0, y);
  if (bias.defined()) add_bias_rows(y, bias);
}

void add_bias_rows(Tensor& y, const Tensor& bias) {
  dispatch_float(y.dtype(), "add_bias_rows", [&]<class T>() {
    int64_t m = bias.numel(), rows = y.numel() / std::max<int64_t>(m, 1);
    T* py = ptr<T>(y);
    const T* pb = ptr<T>(bias);
    parallel_for(rows, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        T* row = py + r * m;
#pragma omp simd
        for (int64_t i = 0; i < m; ++i) row[i] += pb[i];
      }
    }, std::max<int64_t>(1, kGrain / std::max<int64_t>(m, 1)));
  });
}

void sum_rows(const Tensor& x, Tensor& out) {
  dispatch_float(x.dtype(), "sum_rows", [&]<class T>() {
    int64_t m = out.numel(), rows = x.numel() / std::max<int64_t>(m, 1);
    reduce_mid(ptr<T>(x), 1, rows, m, ptr<T>(out));
  });
}

// ---- softmax, losses, dropout ----------------------------------------------------------------

void softmax(const Tensor& x, int64_t outer, int64_t n, int64_t inner, bool log, Tensor& y) {
  dispatch_float(x.dtype(), "softmax", [&]<class T>() {
    const T* px = ptr<T>(x);
    T* py = ptr<T>(y);
    parallel_for(outer * inner, [&](int64_t b, int64_t e) {
      for (int64_t s = b; s < e; ++s) {
        int64_t o = s / inner, i = s % inner;
        const T* p = px + o * n * inner + i;
        T* q = py + o * n * inner + i;
        if constexpr (std::is_same_v<T, float>)
          if (const isa::Math& m = isa::math(); inner == 1 && m.exp_sum) {  // contiguous rows: the level's kernels
            const float mx = m.max(p, n), sum = m.exp_sum(p, n, mx);
            if (log) {
              const float lse = mx + std::log(sum);
              for (int64_t r = 0; r < n; ++r) q[r] = p[r] - lse;
            } else {
              m.exp_scale(p, n, mx, 1.0f / sum, q);
            }
            continue;
          }
        T mx = -std::numeric_limits<T>::infinity();
        for (int64_t r = 0; r < n; ++r) mx = std::max(mx, p[r * inner]);
        T sum = 0;
        for (int64_t r = 0; r < n; ++r) sum += std::exp(p[r * inner] - mx);
        if (log) {
          T lse = mx + std::log(sum);
          for (int64_t r = 0; r < n; ++r) q[r * inner] = p[r * inner] - lse;
        } else {
          T inv = T(1) / sum;
          for (int64_t r = 0; r < n; ++r) q[r * inner] = std::exp(p[r * inner] - mx) * inv;
        }
      }
    }, std::max<int64_t>(1, kGrain / std::max<int64_t>(n, 1)));
  });
}

void softmax_backward(const Tensor& g, const Tensor& y, int64_t outer, int64_t n, int64_t inner, bool log,
                      Tensor& gx) {
  // softmax:     gx = y * (g - sum(g * y))
  // log_softmax: gx = g - exp(y) * sum(g)
  dispatch_float(g.dtype(), "softmax_backward", [&]<class T>() {
    const T* pg = ptr<T>(g);
    const T* py = ptr<T>(y);
    T* po = ptr<T>(gx);
    parallel_for(outer * inner, [&](int64_t b, int64_t e) {
      for (int64_t s = b; s < e; ++s) {
        int64_t base = (s / inner) * n * inner + s % inner;
        T acc = 0;
        for (int64_t r = 0; r < n; ++r) acc += log ? pg[base + r * inner] : pg[base + r * inner] * py[base + r * inner];
        for (int64_t r = 0; r < n; ++r) {
          int64_t j = base + r * inner;
          po[j] = log ? pg[j] - std::exp(py[j]) * acc : py[j] * (pg[j] - acc);
        }
      }
    }, std::max<int64_t>(1, kGrain / std::max<int64_t>(n, 1)));
  });
}

// Row by row, the level's f32 kernels (isa::Math) or Eigen's vectorised exp: the forward reads the logits once (max, then the sum of exponentials of a
// row that stays in cache) and keeps only lse [N]; the backward recomputes the softmax from the logits while
// writing the gradient. Neither stores an [N, C] softmax.
void cross_entropy(const Tensor& logits, const Tensor& labels, Tensor& loss, Tensor& lse) {
  int64_t N = logits.size(0), C = logits.size(1);
  const int64_t* pl = ptr<int64_t>(labels);
  for (int64_t i = 0; i < N; ++i)
    TG_CHECK(pl[i] >= 0 && pl[i] < C, "cross_entropy: label ", pl[i], " at index ", i, " is out of range [0, ", C,
             ") for logits of shape ", logits.shape());
  dispatch_float(logits.dtype(), "cross_entropy", [&]<class T>() {
    const T* px = ptr<T>(logits);
    T* ps = ptr<T>(lse);
    T* po = ptr<T>(loss);
    parallel_for(N, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        if constexpr (std::is_same_v<T, float>)
          if (const isa::Math& m = isa::math(); m.exp_sum) {  // the level's kernels (AVX2, AVX-512)
            const float* row = px + i * C;
            const float mx = m.max(row, C);
            ps[i] = mx + std::log(m.exp_sum(row, C, mx));
            po[i] = ps[i] - row[pl[i]];
            continue;
          }
        Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>> row(px + i * C, C);
        const T mx = row.template maxCoeff<Eigen::PropagateNaN>();
        ps[i] = mx + std::log((row - mx).exp().sum());
        po[i] = ps[i] - row[pl[i]];
      }
    }, std::max<int64_t>(1, kGrain / std::max<int64_t>(C, 1)));
  });
}

void cross_entropy_backward(const Tensor& logits, const Tensor& lse, const Tensor& labels, const Tensor& g,
                            double factor, Tensor& glogits) {
  int64_t N = logits.size(0), C = logits.size(1);
  const int64_t* pl = ptr<int64_t>(labels);
  dispatch_float(logits.dtype(), "cross_entropy_backward", [&]<class T>() {
    const T* px = ptr<T>(logits);
    const T* ps = ptr<T>(lse);
    const T* pg = ptr<T>(g);
    T* po = ptr<T>(glogits);
    bool scalar_g = g.numel() == 1;
    parallel_for(N, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        T s = static_cast<T>(factor) * (scalar_g ? pg[0] : pg[i]);
        if constexpr (std::is_same_v<T, float>)
          if (const isa::Math& m = isa::math(); m.exp_scale) {
            m.exp_scale(px + i * C, C, ps[i], s, po + i * C);
            po[i * C + pl[i]] -= s;
            continue;
          }
        Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>> out(po + i * C, C);
        out = (Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(px + i * C, C) - ps[i]).exp() * s;
        po[i * C + pl[i]] -= s;
      }
    }, std::max<int64_t>(1, kGrain / std::max<int64_t>(C, 1)));
  });
}

void dropout_mask(double p, uint64_t seed, Tensor& mask) {
  dispatch_float(mask.dtype(), "dropout", [&]<class T>() {
    T* pm = ptr<T>(mask);
    T keep = static_cast<T>(1.0 / (1.0 - p));
    parallel_for(mask.numel(), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) pm[i] = philox_uniform(seed, static_cast<uint64_t>(i)) < p ? T(0) : keep;
    });
  });
}

// ---- layout ---------------------------------------------------------------------------------

void permute(const Tensor& x, const std::vector<int64_t>& dims, Tensor& out) {
  dispatch_all(x.dtype(), [&]<class T>() {
    const Shape& xs = x.shape();
    size_t r = xs.size();
    std::vector<int64_t> xstride(r, 1);
    for (size_t k = r; k-- > 1;) xstride[k - 1] = xstride[k] * xs[k];
    std::vector<int64_t> st(r), sz(r);  // for each out dim: its size and the stride in x
    for (size_t k = 0; k < r; ++k) sz[k] = xs[dims[k]], st[k] = xstride[dims[k]];
    const T* px = ptr<T>(x);
    T* po = ptr<T>(out);
    int64_t len = r ? sz[r - 1] : 1, ls = r ? st[r - 1] : 1;
    int64_t rows = out.numel() / std::max<int64_t>(len, 1);
    parallel_for(rows, [&](int64_t b, int64_t e) {
      for (int64_t row = b; row < e; ++row) {
        int64_t off = 0, rem = row;
        for (size_t k = r - 1; k-- > 0;) off += (rem % sz[k]) * st[k], rem /= sz[k];
        T* q = po + row * len;
        for (int64_t i = 0; i < len; ++i) q[i] = px[off + i * ls];
      }
    }, std::max<int64_t>(1, kGrain / std::max<int64_t>(len, 1)));
  });
}

void copy_block(const Tensor& src, int64_t outer, int64_t src_n, int64_t inner, Tensor& dst, int64_t dst_n,
                int64_t dst_start) {
  size_t es = size_of(src.dtype());
  const char* ps = static_cast<const char*>(src.raw_data());
  char* pd = static_cast<char*>(dst.raw_data());
  size_t chunk = static_cast<size_t>(src_n * inner) * es;
  for (int64_t o = 0; o < outer; ++o)
    std::memcpy(pd + static_cast<size_t>((o * dst_n + dst_start) * inner) * es, ps + o * chunk, chunk);
}

void copy_block_from(const Tensor& src, int64_t outer, int64_t src_n, int64_t src_start, int64_t inner, Tensor& dst,
                     int64_t dst_n) {
  size_t es = size_of(src.dtype());
  const char* ps = static_cast<const char*>(src.raw_data());
  char* pd = static_cast<char*>(dst.raw_data());
  size_t chunk = static_cast<size_t>(dst_n * inner) * es;
  for (int64_t o = 0; o < outer; ++o)
    std::memcpy(pd + o * chunk, ps + static_cast<size_t>((o * src_n + src_start) * inner) * es, chunk);
}

void convert(const Tensor& src, Tensor& dst) {
  if (src.dtype() == dst.dtype()) {
    if (src.raw_data() != dst.raw_data()) std::memcpy(dst.raw_data(), src.raw_data(), src.numel() * size_of(src.dtype()));
    return;
  }
  dispatch_all(src.dtype(), [&]<class S>() {
    dispatch_all(dst.dtype(), [&]<class D>() {
      const S* ps = ptr<S>(src);
      D* pd = ptr<D>(dst);
      parallel_for(src.numel(), [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) pd[i] = static_cast<D>(ps[i]);
      });
    });
  });
}

void fill(Tensor& t, double value) {
  dispatch_all(t.dtype(), [&]<class T>() {
    T v = static_cast<T>(value);
    T* p = ptr<T>(t);
    parallel_for(t.numel(), [&](int64_t b, int64_t e) { std::fill(p + b, p + e, v); });
  });
}

}  // namespace tapegrad::cpu

namespace tapegrad::backend {
void set_num_threads(int n) {
  TG_CHECK(n >= 1, "set_num_threads: expected at least 1 thread, got ", n);
  omp_set_num_threads(n);
}
int num_threads() { return omp_get_max_threads(); }
}  // namespace tapegrad::backend
