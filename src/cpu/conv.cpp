// The CPU twin of the convolution, batch-norm and pooling kernels (contracts: src/kernels.inc).
//
// Convolution is im2col + matrix products, parallel over chunks of the batch: each thread unfolds a chunk of
// samples side by side into a private column buffer [C*R*S, m*P*Q] and multiplies it single-threaded (chunks
// of several samples when the output planes are small, so that packing the weights is paid for by enough
// columns). f32 at the AVX2 and AVX-512 levels runs the micro-kernel of the level (src/cpu/isa.hpp; weights
// packed once per convolution, column buffer read in place); f64 and the baseline level run Eigen. There, f32
// convolutions with kernels larger than 1x1 skip the column buffer where that measured faster (use_frame): the
// micro-kernel reads its rows from a framed copy of the chunk's input (Frame, below; the im2col copies were a
// fifth of ResNet-20's step). The data gradient of a stride-1 convolution is itself a convolution (of gy with the
// flipped, transposed weights); strided ones go through col2im. Batch norm runs per channel, pooling per (sample,
// channel) plane, both parallel over those. f32 3x3 stride-1 convolutions (forward and data gradient) run
// Winograd's F(4x4, 3x3) instead where use_winograd says, and their weight gradient where use_winograd_weight
// says (src/cpu/winograd.cpp).
//
// (The products go through sgemm's packed-A entry point: its general one packs A on every call, which measured
// 12-15 % slower on ResNet-34's convolutions.)
#include <omp.h>

#define EIGEN_DONT_PARALLELIZE
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <type_traits>
#include <vector>

#include "../internal.hpp"
#include "tapegrad/ops.hpp"
#include "cpu.hpp"
#include "sgemm.hpp"
#include "parallel.hpp"
#include "winograd.hpp"

namespace tapegrad::cpu {

namespace {


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

// The output rows p whose input row p stride - pad + r lies inside [0, H): [lo, hi).
inline void valid_rows(const Window2d& g, int64_t r, int64_t& lo, int64_t& hi) {
  int64_t off = r - g.pad_h;
  lo = std::min(g.P, off >= 0 ? 0 : (-off + g.stride_h - 1) / g.stride_h);
  hi = off >= g.H ? 0 : std::min(g.P, (g.H - 1 - off) / g.stride_h + 1);
  hi = std::max(hi, lo);
}

// col [C*R*S, ld] (first P*Q columns): col[(c R + r) S + s, p Q + q] = x[c, p sh - ph + r, q sw - pw + s], 0 outside.
// With stride 1 and an output as wide as the input (same padding), a row of col is the input plane shifted
// by (r - ph) rows and (s - pw) columns: one copy, then the few entries that wrapped around a row edge are
// zeroed. Otherwise it is built output row by output row.
// (GCC would turn the short zero fills into memset calls, one per edge pixel: no-tree-loop-distribute-patterns
// keeps them as stores.)
template <class T>
__attribute__((optimize("no-tree-loop-distribute-patterns"))) void im2col(const T* x, const Window2d& g, T* col,
                                                                          int64_t ld) {
  const bool shifted = g.stride_h == 1 && g.stride_w == 1 && g.W == g.Q;
  const int64_t hw = g.H * g.W, pq = g.P * g.Q;
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t r = 0; r < g.R; ++r) {
      int64_t p0, p1;
      valid_rows(g, r, p0, p1);
      for (int64_t s = 0; s < g.S; ++s) {
        T* row = col + ((c * g.R + r) * g.S + s) * ld;
        const T* plane = x + c * hw;
        const int64_t off = s - g.pad_w;
        std::fill(row, row + p0 * g.Q, T(0));
        std::fill(row + p1 * g.Q, row + pq, T(0));
        if (shifted) {
          // row[i] = plane[i + delta] for i in [p0 Q, p1 Q), where that stays inside the plane (lo and hi
          // clamped to that range: on planes smaller than the kernel -delta may lie past it).
          const int64_t delta = (r - g.pad_h) * g.W + off;
          const int64_t lo = std::clamp(-delta, p0 * g.Q, p1 * g.Q), hi = std::clamp(hw - delta, lo, p1 * g.Q);
          std::fill(row + p0 * g.Q, row + lo, T(0));
          if (hi > lo) std::memcpy(row + lo, plane + lo + delta, static_cast<size_t>(hi - lo) * sizeof(T));
          std::fill(row + hi, row + p1 * g.Q, T(0));
          if (off < 0)
            for (int64_t p = p0; p < p1; ++p)
              for (int64_t q = 0; q < -off; ++q) row[p * g.Q + q] = T(0);
          else if (off > 0)
            for (int64_t p = p0; p < p1; ++p)
              for (int64_t q = g.Q - off; q < g.Q; ++q) row[p * g.Q + q] = T(0);
          continue;
        }
        int64_t lo, hi;
        valid_columns(g, s, lo, hi);
        for (int64_t p = p0; p < p1; ++p) {
          const T* in = plane + (p * g.stride_h - g.pad_h + r) * g.W + off;
          T* out = row + p * g.Q;
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
}

// The adjoint of im2col: x [C, H, W] = sum of the col entries that read each element.
template <class T>
void col2im(const T* col, const Window2d& g, T* x, int64_t ld) {
  std::fill(x, x + g.C * g.H * g.W, T(0));
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t r = 0; r < g.R; ++r)
      for (int64_t s = 0; s < g.S; ++s) {
        const T* row = col + ((c * g.R + r) * g.S + s) * ld;
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

// Per-thread scratch buffers of at least n elements, kept between calls (no allocation, no page faults,
// no zeroing: their users write every element they read). `slot` tells a thread's buffers apart.
template <class T, int slot>
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

// Samples per matrix product. One sample of a small output plane (ResNet-34's last stage: 4x4) makes a
// product of 16 columns, in which packing the weights costs more than multiplying; a chunk of samples side
// by side gives at least kMinColumns columns. Every thread still gets a chunk.
constexpr int64_t kMinColumns = 256;
int64_t chunk_size(const Window2d& g) {
  const int64_t pq = std::max<int64_t>(1, g.P * g.Q);
  const int64_t want = std::min(g.N, (kMinColumns + pq - 1) / pq);
  const int64_t per_thread_n = (g.N + threads_for(g.N) - 1) / std::max(1, threads_for(g.N));
  return std::max<int64_t>(1, std::min(want, per_thread_n));
}

// Calls body(n0, n1) for the chunks [n0, n1) of the batch, spread over the threads.
template <class Body>
void for_chunks(const Window2d& g, int64_t nb, Body&& body) {
  const int64_t chunks = (g.N + nb - 1) / nb;
  per_thread(chunks, [&](int t, int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) body(t, i * nb, std::min(g.N, (i + 1) * nb));
  });
}

// ---- the product of a convolution: C [M, L] = A [M, D] B [D, L] (+ bias [M]) ----------------------------
//
// B is a column buffer (rows of pixels, row stride ldb), A the weights (few rows, reused for every pixel).
// Eigen packs both operands for every product and zero-fills C before it accumulates: for the shapes of a
// convolution (M of 16 to 512 channels) that costs as much as the multiplication. This kernel packs A
// once per convolution (sgemm::pack_a), reads B where it lies, and writes C once per depth block (sgemm::gemm
// with a PackedA). Float with a micro-kernel only; f64 and the baseline level use Eigen (matmul_eigen).

template <class T>
void matmul_eigen(const T* a, int64_t a_rs, int64_t a_cs, int64_t M, int64_t D, const T* b, int64_t ldb,
                  int64_t L, T* c, int64_t ldc, const T* bias) {
  using Strided = Eigen::Map<const MatR<T>, 0, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>>;
  using Out = Eigen::Map<MatR<T>, 0, Eigen::OuterStride<>>;
  Strided A(a, M, D, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>(a_rs, a_cs));
  Eigen::Map<const MatR<T>, 0, Eigen::OuterStride<>> B(b, D, L, Eigen::OuterStride<>(ldb));
  Out C(c, M, L, Eigen::OuterStride<>(ldc));
  C.noalias() = A * B;
  if (bias)
    for (int64_t m = 0; m < M; ++m) C.row(m).array() += bias[m];
}

// The weights of one convolution's products, A [M, D] with element (m, d) at a[m a_rs + d a_cs], packed
// once when the fast kernel applies.
template <class T>
struct ConvWeights {
  const T* a;
  int64_t a_rs, a_cs, M, D;
  std::optional<sgemm::PackedA> packed;
  ConvWeights(const T* a_, int64_t rs, int64_t cs, int64_t m, int64_t d) : a(a_), a_rs(rs), a_cs(cs), M(m), D(d) {
    if constexpr (std::is_same_v<T, float>)
      if (sgemm::available()) packed.emplace(sgemm::pack_a(a, rs, cs, m, d));
  }
  // C [M, L] (row stride ldc) = A B (+ bias), B [D, L] with row stride ldb.
  void times(const T* b, int64_t ldb, int64_t L, T* c, int64_t ldc, const T* bias) const {
    if constexpr (std::is_same_v<T, float>)
      if (packed) return sgemm::gemm(*packed, b, ldb, L, c, ldc, bias);
    matmul_eigen(a, a_rs, a_cs, M, D, b, ldb, L, c, ldc, bias);
  }
};

// The row stride of a chunk's buffers of L columns. Rows whose stride is a multiple of 128 bytes share a
// few L1 cache sets and evict one another while a product reads a tile of them (4 KiB apart: all in one
// set); an odd number of cache lines spreads them over every set.
inline int64_t row_stride(int64_t L) { return L % 32 == 0 ? L + 16 : L; }

// The column buffer [CRS, ld] of samples n0 .. n0+m of x side by side (x itself for one sample of a 1x1
// convolution whose planes need no padding of their stride).
template <class T>
const T* columns(const T* px, const Window2d& g, int64_t n0, int64_t m, int64_t ld) {
  const int64_t pq = g.P * g.Q, chw = g.C * g.H * g.W;
  if (m == 1 && is_pointwise(g) && ld == pq) return px + n0 * chw;
  T* col = scratch<T, 0>(g.C * g.R * g.S * ld);
  for (int64_t j = 0; j < m; ++j) im2col(px + (n0 + j) * chw, g, col + j * pq, ld);
  return col;
}

// G [K, ld] = the planes gy[n0 .. n0+m) side by side (gy itself for one sample when ld = PQ).
template <class T>
const T* gather_planes(const T* pg, const Window2d& g, int64_t n0, int64_t m, int64_t ld) {
  const int64_t pq = g.P * g.Q;
  if (m == 1 && ld == pq) return pg + n0 * g.K * pq;
  T* G = scratch<T, 1>(g.K * ld);
  for (int64_t j = 0; j < m; ++j)
    for (int64_t k = 0; k < g.K; ++k)
      std::memcpy(G + k * ld + j * pq, pg + ((n0 + j) * g.K + k) * pq, static_cast<size_t>(pq) * sizeof(T));
  return G;
}

// ---- the column buffer of a convolution, read from its framed input (never built) -------------------------
//
// Stride 1: the frame of a chunk of m samples holds each channel's m planes one under another, in rows of
// Wp = W + pw (pw zeros, then the W values), each plane after ph zero rows and ph more after the last (then one
// spare row). Output pixel (j, p, q) of the chunk is then "virtual column" v = (j Hs + p) Wp + q (Hs = H + ph),
// and the column-buffer entry col[(c R + r) S + s, that pixel] is frame[c Fp + r Wp + s + v]: row d of the
// column buffer is the frame read from offset rows[d] (a row's overhang lands in the next row's pw zeros, a
// plane's in the ph zero rows below it). The micro-kernel reads those rows in place (forward and the data
// gradient), and the weight gradient's product reads them as its left operand: the frame is one copy of the
// input where im2col writes R S of them. The L virtual columns include Wp - Q per output row and (Hs - P) Wp
// per plane that are no pixel: computed, then dropped (the forward), or skipped (the weight gradient).
// Stride sh x sw: the same over the sh sw phases of each plane, x[sh i + a, sw k + b] for phase (a, b), each
// framed as a channel of its own (ceil(H / sh) x ceil(W / sw), ceil(ph / sh) zero rows, ceil(pw / sw) zero
// columns): tap (r, s) reads phase ((r - ph) mod sh, (s - pw) mod sw) shifted by floor((r - ph) / sh) rows and
// floor((s - pw) / sw) columns. fits() checks that no read of a kept output leaves the zeros that stand for the
// padding (the bottom and right overhangs).
struct Frame {
  int64_t sh, sw, Hq, Wq, top, left, Wp, Hs, Fp, L, size;
  Frame(const Window2d& g, int64_t m)
      : sh(g.stride_h), sw(g.stride_w), Hq((g.H + sh - 1) / sh), Wq((g.W + sw - 1) / sw), top((g.pad_h + sh - 1) / sh),
        left((g.pad_w + sw - 1) / sw), Wp(Wq + left), Hs(Hq + top), Fp((m * Hs + top + 1) * Wp),
        L(((m - 1) * Hs + g.P - 1) * Wp + g.Q), size(g.C * sh * sw * Fp) {}
  // The phase, and its shift plus the zero margin, of tap k (r or s) on an axis of stride st and padding pad.
  static int64_t phase(int64_t k, int64_t pad, int64_t st) { return ((k - pad) % st + st) % st; }
  static int64_t shift(int64_t k, int64_t pad, int64_t st, int64_t margin) {
    return (k - pad - phase(k, pad, st)) / st + margin;
  }
  // The kept outputs read only the frame's values and zeros: P <= Hs and Q <= Wp (distinct virtual columns),
  // and the last row's (column's) deepest tap stays within the zero rows (columns) after the plane (row).
  static bool fits(const Window2d& g) {
    const Frame f(g, 1);
    const int64_t down = (g.R - 1 - g.pad_h) / f.sh, right = (g.S - 1 - g.pad_w) / f.sw;  // deepest shifts
    return g.pad_h < g.R && g.pad_w < g.S && g.P <= f.Hs && g.Q <= f.Wp && g.P + down <= f.Hq + f.top &&
           g.Q + right <= f.Wq + f.left;
  }
};

// True when the f32 products of this convolution read its framed input: a kernel larger than 1x1 and, when
// strided, at least as large as the stride (every phase is read), Frame::fits, a level with a micro-kernel.
bool use_frame(const Window2d& g) {
  return g.R * g.S > 1 && g.R >= g.stride_h && g.S >= g.stride_w && Frame::fits(g) && sgemm::available() &&
         sgemm::packed_kernel().micro_rows;
}

// frame [C sh sw, Fp] of samples n0 .. n0+m of x; rows [CRS] = the offset of each column-buffer row in it.
void frame_input(const float* px, const Window2d& g, const Frame& f, int64_t n0, int64_t m, float* frame,
                 int64_t* rows) {
  const int64_t hw = g.H * g.W;
  for (int64_t c = 0; c < g.C; ++c) {
    for (int64_t a = 0; a < f.sh; ++a)
      for (int64_t b = 0; b < f.sw; ++b) {
        float* const plane = frame + ((c * f.sh + a) * f.sw + b) * f.Fp;
        float* out = plane;
        for (int64_t j = 0; j < m; ++j) {
          const float* in = px + ((n0 + j) * g.C + c) * hw;
          std::fill(out, out + f.top * f.Wp, 0.0f);
          out += f.top * f.Wp;
          for (int64_t i = 0; i < f.Hq; ++i, out += f.Wp) {
            const int64_t h = i * f.sh + a;
            std::fill(out, out + f.left, 0.0f);
            if (h >= g.H) {
              std::fill(out + f.left, out + f.Wp, 0.0f);
            } else if (f.sw == 1) {
              std::copy_n(in + h * g.W, g.W, out + f.left);
            } else {
              for (int64_t k = 0; k < f.Wq; ++k)
                out[f.left + k] = k * f.sw + b < g.W ? in[h * g.W + k * f.sw + b] : 0.0f;
            }
          }
        }
        std::fill(out, plane + f.Fp, 0.0f);
      }
    for (int64_t r = 0; r < g.R; ++r)
      for (int64_t s = 0; s < g.S; ++s) {
        const int64_t a = Frame::phase(r, g.pad_h, f.sh), b = Frame::phase(s, g.pad_w, f.sw);
        rows[(c * g.R + r) * g.S + s] = ((c * f.sh + a) * f.sw + b) * f.Fp +
                                         Frame::shift(r, g.pad_h, f.sh, f.top) * f.Wp +
                                         Frame::shift(s, g.pad_w, f.sw, f.left);
      }
  }
}

// y [N,K,P,Q] = w [K, CRS] im2col(x) + bias, chunk by chunk: col [CRS, m PQ] holds the chunk's samples
// side by side, Y [K, m PQ] their outputs, copied into y's planes (a single sample's product writes y).
// f32 with a micro-kernel and use_frame: col is read from the chunk's frame, Y [K, L] has its virtual columns.
template <class T>
void conv_forward(const T* px, const T* pw, const T* pb, const Window2d& g, T* py) {
  const int64_t crs = g.C * g.R * g.S, pq = g.P * g.Q, nb = chunk_size(g);
  const ConvWeights<T> W(pw, crs, 1, g.K, crs);
  // The frame pays where im2col would write more than it plus the copy of the output out of the virtual
  // columns (which chunks of several samples copy anyway; not for stems of 3 channels into 16 or 64), and where
  // those columns add little to the product (8x8 planes add 23 %, 4x4 ones 54 %: ResNet-34's 512 channels on 4x4
  // ran 1.5x slower framed; 16x16 planes add 6 %).
  const bool framed = use_frame(g) && Frame(g, nb).L * 100 <= nb * pq * 115 &&
                      (nb > 1 || crs * pq > g.C * g.H * g.W + 2 * g.K * pq);
  for_chunks(g, nb, [&](int, int64_t n0, int64_t n1) {
    const int64_t m = n1 - n0, L = m * pq, ld = row_stride(L);
    if constexpr (std::is_same_v<T, float>)
      if (W.packed && framed) {
        const Frame f(g, m);
        float* frame = scratch<float, 0>(f.size);
        int64_t* rows = scratch<int64_t, 0>(crs);
        frame_input(px, g, f, n0, m, frame, rows);
        const int64_t ldo = row_stride(f.L);
        float* out = scratch<float, 1>(g.K * ldo);
        sgemm::gemm(*W.packed, frame, rows, f.L, out, ldo, pb);
        for (int64_t j = 0; j < m; ++j)
          for (int64_t k = 0; k < g.K; ++k)
            for (int64_t p = 0; p < g.P; ++p)
              std::copy_n(out + k * ldo + (j * f.Hs + p) * f.Wp, g.Q, py + (((n0 + j) * g.K + k) * g.P + p) * g.Q);
        return;
      }
    const T* cols = columns(px, g, n0, m, ld);
    if (m == 1) {
      W.times(cols, ld, L, py + n0 * g.K * pq, pq, pb);
      return;
    }
    T* out = scratch<T, 1>(g.K * ld);
    W.times(cols, ld, L, out, ld, pb);
    for (int64_t j = 0; j < m; ++j)
      for (int64_t k = 0; k < g.K; ++k)
        std::memcpy(py + ((n0 + j) * g.K + k) * pq, out + k * ld + j * pq, static_cast<size_t>(pq) * sizeof(T));
  });
}

}  // namespace

namespace {

// The stride-1 data gradient of g as a convolution: gy [N, K, P, Q] with the flipped, transposed weights
// [C, K, R, S], padding R-1-pad, into gx [N, C, H, W].
Window2d transposed(const Window2d& g) {
  Window2d t = g;
  t.C = g.K, t.H = g.P, t.W = g.Q, t.K = g.C;
  t.pad_h = g.R - 1 - g.pad_h, t.pad_w = g.S - 1 - g.pad_w;
  t.P = g.H, t.Q = g.W;
  return t;
}

bool data_grad_is_convolution(const Window2d& g) {
  return g.stride_h == 1 && g.stride_w == 1 && g.pad_h < g.R && g.pad_w < g.S;
}

}  // namespace

// ---- convolution ----------------------------------------------------------------------------

void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Window2d& g, Tensor& y) {
  dispatch_float(x.dtype(), "conv2d_forward", [&]<class T>() {
    if constexpr (std::is_same_v<T, float>)
      if (use_winograd(g)) return winograd_forward(ptr<T>(x), ptr<T>(w), ptr<T>(bias), g, ptr<T>(y));
    conv_forward<T>(ptr<T>(x), ptr<T>(w), ptr<T>(bias), g, ptr<T>(y));
  });
}

// Stride 1: gx is the convolution of gy with the flipped, transposed weights, wt [C, K, R, S] with
// wt[c, k, r, s] = w[k, c, R-1-r, S-1-s], padding R-1-pad (the forward path: no col2im, and products as
// deep as K R S rather than K).
// Otherwise, chunk by chunk: gcol [CRS, m PQ] = w^T G, scattered back by col2im.
void conv2d_backward_input(const Tensor& gy, const Tensor& w, const Window2d& g, Tensor& gx) {
  dispatch_float(gy.dtype(), "conv2d_backward_input", [&]<class T>() {
    const T* pg = ptr<T>(gy);
    const T* pw = ptr<T>(w);
    T* px = ptr<T>(gx);
    const int64_t crs = g.C * g.R * g.S, pq = g.P * g.Q, rs = g.R * g.S;
    if (data_grad_is_convolution(g)) {
      T* wt = scratch<T, 2>(g.K * crs);
      parallel_for(g.C, [&](int64_t c0, int64_t c1) {  // ResNet-34's 512 x 512: 2.4M scattered copies
        for (int64_t c = c0; c < c1; ++c)
          for (int64_t k = 0; k < g.K; ++k)
            for (int64_t i = 0; i < rs; ++i) wt[(c * g.K + k) * rs + (rs - 1 - i)] = pw[(k * g.C + c) * rs + i];
      }, std::max<int64_t>(1, kGrain / std::max<int64_t>(1, g.K * rs)));
      const Window2d t = transposed(g);
      if constexpr (std::is_same_v<T, float>)
        if (use_winograd(t)) return winograd_forward(pg, wt, nullptr, t, px);
      conv_forward<T>(pg, wt, nullptr, t, px);
      return;
    }
    const ConvWeights<T> Wt(pw, 1, crs, crs, g.K);  // w^T [CRS, K]
    for_chunks(g, chunk_size(g), [&](int, int64_t n0, int64_t n1) {
      const int64_t m = n1 - n0, L = m * pq, ld = row_stride(L);
      T* gcol = scratch<T, 0>(crs * ld);
      Wt.times(gather_planes(pg, g, n0, m, ld), ld, L, gcol, ld, nullptr);
      for (int64_t j = 0; j < m; ++j) col2im(gcol + j * pq, g, px + (n0 + j) * g.C * g.H * g.W, ld);
    });
  });
}

// gbias [K] = sum over n, p, q of gy [N, K, P, Q] (nothing when gbias is nullptr).
template <class T>
void bias_gradient(const T* pg, const Window2d& g, T* pb) {
  if (!pb) return;
  const int64_t pq = g.P * g.Q;
  for (int64_t k = 0; k < g.K; ++k) {
    T acc = 0;
    for (int64_t n = 0; n < g.N; ++n) {
      const T* row = pg + (n * g.K + k) * pq;
      for (int64_t i = 0; i < pq; ++i) acc += row[i];
    }
    pb[k] = acc;
  }
}

// gw [K, CRS] = sum over chunks of G [K, m PQ] col^T;  gbias [K] = sum over n, p, q of gy.
// The first thread sums its chunks into gw, the others into partials of their own (reused buffers), added
// in thread order: a fixed thread count gives fixed results. With a micro-kernel (f32) the product is taken transposed, gw^T [CRS, K] = col G^T, the column buffer as the
// packed operand and G^T [m PQ, K] read in place; the partials are then [CRS, K].
void conv2d_backward_weight(const Tensor& gy, const Tensor& x, const Window2d& g, Tensor& gw, Tensor& gbias) {
  dispatch_float(gy.dtype(), "conv2d_backward_weight", [&]<class T>() {
    const T* pg = ptr<T>(gy);
    const T* px = ptr<T>(x);
    if constexpr (std::is_same_v<T, float>)
      if (use_winograd_weight(g)) {
        winograd_backward_weight(pg, px, g, ptr<float>(gw));
        return bias_gradient(pg, g, ptr<float>(gbias));
      }
    const int64_t crs = g.C * g.R * g.S, pq = g.P * g.Q, nb = chunk_size(g);
    const int nt = threads_for((g.N + nb - 1) / nb);
    if constexpr (std::is_same_v<T, float>) {
      if (sgemm::available()) {
        std::vector<float*> partial(static_cast<size_t>(nt), nullptr);  // [CRS, K] each
        for_chunks(g, nb, [&](int t, int64_t n0, int64_t n1) {
          const int64_t m = n1 - n0, L = m * pq, ld = row_stride(L), ldk = row_stride(g.K);
          const bool first = partial[static_cast<size_t>(t)] == nullptr;
          float*& acc = partial[static_cast<size_t>(t)];
          if (first) acc = scratch<float, 2>(crs * ldk);
          float* GT = scratch<float, 3>(L * ldk);  // G^T [L, K]: the chunk's planes of gy, transposed
          for (int64_t j = 0; j < m; ++j) {
            const float* G = pg + (n0 + j) * g.K * pq;  // [K, PQ]
            float* out = GT + j * pq * ldk;
            for (int64_t i0 = 0; i0 < pq; i0 += 16)
              for (int64_t k = 0; k < g.K; ++k)
                for (int64_t i = i0; i < std::min(pq, i0 + 16); ++i) out[i * ldk + k] = G[k * pq + i];
          }
          // col read from the frame by the micro-kernel, output row by output row (rows of 8 pixels and more:
          // shorter ones make too short inner loops; ResNet-34's 4x4 planes ran slower so)
          if (use_frame(g) && g.Q >= 8) {
            const Frame f(g, m);
            float* frame = scratch<float, 0>(f.size);
            int64_t* rows = scratch<int64_t, 0>(crs);
            int64_t* segs = scratch<int64_t, 1>(m * g.P);
            frame_input(px, g, f, n0, m, frame, rows);
            for (int64_t j = 0; j < m; ++j)
              for (int64_t p = 0; p < g.P; ++p) segs[j * g.P + p] = (j * f.Hs + p) * f.Wp;
            sgemm::gemm(frame, rows, crs, segs, m * g.P, g.Q, GT, ldk, g.K, acc, ldk, !first);
          } else {
            const sgemm::PackedA A = sgemm::pack_a(columns(px, g, n0, m, ld), ld, 1, crs, L);
            sgemm::gemm(A, GT, ldk, g.K, acc, ldk, nullptr, !first);
          }
        });
        float* out = ptr<float>(gw);
        const int64_t ldk = row_stride(g.K);
        // The partials summed into the first along its rows, then transposed by 16 x 16 blocks, parallel over
        // blocks of 16 rows (ResNet-34's 256 x 512 stride 2: 2 partials of 1.2M, a fifth of its weight gradient
        // when summed single-threaded down the columns). The sums are the same: p0 + p1 + ... in thread order.
        std::vector<float*> parts;
        for (float* part : partial)
          if (part) parts.push_back(part);
        parallel_for((crs + 15) / 16, [&](int64_t b, int64_t e) {
          for (int64_t d0 = b * 16; d0 < std::min(crs, e * 16); d0 += 16) {
            const int64_t d1 = std::min(crs, d0 + 16);
            float* sum = parts[0];
            for (size_t t = 1; t < parts.size(); ++t)
              for (int64_t d = d0; d < d1; ++d)
                for (int64_t k = 0; k < g.K; ++k) sum[d * ldk + k] += parts[t][d * ldk + k];
            for (int64_t k0 = 0; k0 < g.K; k0 += 16)
              for (int64_t k = k0; k < std::min(g.K, k0 + 16); ++k)
                for (int64_t d = d0; d < d1; ++d) out[k * crs + d] = sum[d * ldk + k];
          }
        }, std::max<int64_t>(1, kGrain / 16 / std::max<int64_t>(1, g.K)));
        return bias_gradient(pg, g, ptr<float>(gbias));
      }
    }
    std::vector<T*> partial(static_cast<size_t>(nt), nullptr);
    for_chunks(g, nb, [&](int t, int64_t n0, int64_t n1) {
      T*& acc = partial[static_cast<size_t>(t)];
      if (!acc) {
        acc = t == 0 ? ptr<T>(gw) : scratch<T, 2>(g.K * crs);
        std::fill(acc, acc + g.K * crs, T(0));
      }
      const int64_t m = n1 - n0, L = m * pq, ld = row_stride(L);
      using Strided = Eigen::Map<const MatR<T>, 0, Eigen::OuterStride<>>;
      Map<T>(acc, g.K, crs).noalias() +=
          Strided(gather_planes(pg, g, n0, m, ld), g.K, L, Eigen::OuterStride<>(ld)) *
          Strided(columns(px, g, n0, m, ld), crs, L, Eigen::OuterStride<>(ld)).transpose();
    });
    Map<T> GW(ptr<T>(gw), g.K, crs);
    if (!partial[0]) GW.setZero();  // OpenMP may have started fewer threads than asked
    for (size_t t = 1; t < partial.size(); ++t)
      if (partial[t]) GW += Map<T>(partial[t], g.K, crs);
    bias_gradient(pg, g, ptr<T>(gbias));
  });
}

// ---- batch norm -----------------------------------------------------------------------------
// The plain kernels and the fused ones (batch norm + ReLU, + residual) share one body each: the epilogue is
// chosen outside the inner loops, whose arithmetic is that of the unfused ops (bn, then + residual, then
// v > 0 ? v : 0), so that fused and unfused f64 results are the same bits.

namespace {
// Shape of x as [N, C, inner].
struct Planes {
  int64_t N, C, inner;
  explicit Planes(const Tensor& x) : N(x.size(0)), C(x.size(1)), inner(x.numel() / std::max<int64_t>(1, N * C)) {}
};

// q = p scale + shift over one plane of n values; relu: then + r (when given) and max(0, .).
template <class T>
inline void bn_plane(const T* p, const T* r, T* q, int64_t n, T scale, T shift, bool relu) {
  if (!relu) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) q[i] = p[i] * scale + shift;
  } else if (!r) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      T v = p[i] * scale + shift;
      q[i] = v > T(0) ? v : T(0);
    }
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      T v = p[i] * scale + shift;
      v = v + r[i];
      q[i] = v > T(0) ? v : T(0);
    }
  }
}

template <class T>
void bn_forward_training(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& residual,
                         bool relu, double eps, double momentum, Tensor& running_mean, Tensor& running_var, Tensor& y,
                         Tensor& save_mean, Tensor& save_invstd) {
  Planes s(x);
  const T* px = ptr<T>(x);
  const T* pw = ptr<T>(weight);
  const T* pb = ptr<T>(bias);
  const T* pr = ptr<T>(residual);
  T* py = ptr<T>(y);
  T* pm = ptr<T>(save_mean);
  T* pi = ptr<T>(save_invstd);
  T* rm = ptr<T>(running_mean);
  T* rv = ptr<T>(running_var);
  const int64_t M = s.N * s.inner;
#pragma omp parallel for schedule(static) if (s.C > 1 && M * s.C >= kGrain)
  for (int64_t c = 0; c < s.C; ++c) {
    // Two passes (mean, then squared deviations: no cancellation), each plane summed in T at full vector
    // width, the planes' sums in double.
    double sum = 0, sq = 0;
    for (int64_t n = 0; n < s.N; ++n) {
      const T* p = px + (n * s.C + c) * s.inner;
      T part = 0;
#pragma omp simd reduction(+ : part)
      for (int64_t i = 0; i < s.inner; ++i) part += p[i];
      sum += part;
    }
    double mean = sum / static_cast<double>(M);
    const T mean_t = static_cast<T>(mean);
    for (int64_t n = 0; n < s.N; ++n) {
      const T* p = px + (n * s.C + c) * s.inner;
      T part = 0;
#pragma omp simd reduction(+ : part)
      for (int64_t i = 0; i < s.inner; ++i) part += (p[i] - mean_t) * (p[i] - mean_t);
      sq += part;
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
      const int64_t off = (n * s.C + c) * s.inner;
      bn_plane(px + off, pr ? pr + off : nullptr, py + off, s.inner, scale, shift, relu);
    }
  }
}

template <class T>
void bn_forward_inference(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& residual,
                          bool relu, const Tensor& running_mean, const Tensor& running_var, double eps, Tensor& y) {
  Planes s(x);
  const T* px = ptr<T>(x);
  const T* pw = ptr<T>(weight);
  const T* pb = ptr<T>(bias);
  const T* pr = ptr<T>(residual);
  const T* rm = ptr<T>(running_mean);
  const T* rv = ptr<T>(running_var);
  T* py = ptr<T>(y);
  parallel_for(s.N * s.C, [&](int64_t b, int64_t e) {
    for (int64_t nc = b; nc < e; ++nc) {
      int64_t c = nc % s.C;
      T scale = static_cast<T>((pw ? pw[c] : T(1)) / std::sqrt(static_cast<double>(rv[c]) + eps));
      T shift = (pb ? pb[c] : T(0)) - rm[c] * scale;
      bn_plane(px + nc * s.inner, pr ? pr + nc * s.inner : nullptr, py + nc * s.inner, s.inner, scale, shift, relu);
    }
  }, std::max<int64_t>(1, kGrain / std::max<int64_t>(s.inner, 1)));
}

// xhat = (x - mean) invstd;  gbias = sum g;  gweight = sum g xhat;
// training: gx = weight invstd (g - gbias / M - xhat gweight / M);  evaluation: gx = weight invstd g.
// Relu: g = gy where y > 0, else 0, formed in the first pass and kept in gresidual (its value) or else in gx,
// which the second pass then reads in place of gy and y. (gy is loaded before the select: a load under the
// condition keeps gcc from vectorising, 5x slower.)
template <class T, bool Relu>
void bn_backward(const Tensor& gy, const Tensor& y, const Tensor& x, const Tensor& weight, const Tensor& mean,
                 const Tensor& invstd, bool batch_stats, Tensor& gx, Tensor& gweight, Tensor& gbias,
                 Tensor& gresidual) {
  Planes s(x);
  const T* pg = ptr<T>(gy);
  const T* py = ptr<T>(y);
  const T* px = ptr<T>(x);
  const T* pw = ptr<T>(weight);
  const T* pm = ptr<T>(mean);
  const T* pi = ptr<T>(invstd);
  T* po = ptr<T>(gx);
  T* gw = ptr<T>(gweight);
  T* gb = ptr<T>(gbias);
  T* gr = ptr<T>(gresidual);
  T* keep = Relu ? (gr ? gr : po) : nullptr;  // where the masked gradient goes
  const int64_t M = s.N * s.inner;
#pragma omp parallel for schedule(static) if (s.C > 1 && M * s.C >= kGrain)
  for (int64_t c = 0; c < s.C; ++c) {
    const T mu = pm[c], is = pi[c];
    double sg = 0, sgx = 0;  // per plane in T, over planes in double
    for (int64_t n = 0; n < s.N; ++n) {
      const int64_t off = (n * s.C + c) * s.inner;
      const T* g = pg + off;
      const T* p = px + off;
      const T* q = Relu ? py + off : nullptr;
      T part_g = 0, part_gx = 0;
      if (Relu && keep) {
        T* r = keep + off;
#pragma omp simd reduction(+ : part_g, part_gx)
        for (int64_t i = 0; i < s.inner; ++i) {
          const T gi = g[i], gv = q[i] > T(0) ? gi : T(0);
          r[i] = gv;
          part_g += gv;
          part_gx += gv * (p[i] - mu);
        }
      } else {
#pragma omp simd reduction(+ : part_g, part_gx)
        for (int64_t i = 0; i < s.inner; ++i) {
          const T gi = g[i], gv = Relu ? (q[i] > T(0) ? gi : T(0)) : gi;
          part_g += gv;
          part_gx += gv * (p[i] - mu);
        }
      }
      sg += part_g;
      sgx += part_gx;
    }
    sgx *= is;  // sum g xhat
    if (gw) gw[c] = static_cast<T>(sgx);
    if (gb) gb[c] = static_cast<T>(sg);
    if (!po) continue;
    const T k = (pw ? pw[c] : T(1)) * is;
    const T a = batch_stats ? static_cast<T>(sg / static_cast<double>(M)) : T(0);
    const T b = batch_stats ? static_cast<T>(sgx / static_cast<double>(M)) * is : T(0);  // per (x - mean)
    for (int64_t n = 0; n < s.N; ++n) {
      const int64_t off = (n * s.C + c) * s.inner;
      const T* g = (Relu ? keep : pg) + off;  // may be o itself: element i is read before it is written
      const T* p = px + off;
      T* o = po + off;
#pragma omp simd
      for (int64_t i = 0; i < s.inner; ++i) o[i] = k * (g[i] - a - (p[i] - mu) * b);
    }
  }
}
}  // namespace

void batch_norm_forward_training(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                                 double momentum, Tensor& running_mean, Tensor& running_var, Tensor& y,
                                 Tensor& save_mean, Tensor& save_invstd) {
  dispatch_float(x.dtype(), "batch_norm_forward_training", [&]<class T>() {
    bn_forward_training<T>(x, weight, bias, Tensor(), false, eps, momentum, running_mean, running_var, y, save_mean,
                           save_invstd);
  });
}

void batch_norm_forward_inference(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                  const Tensor& running_mean, const Tensor& running_var, double eps, Tensor& y) {
  dispatch_float(x.dtype(), "batch_norm_forward_inference", [&]<class T>() {
    bn_forward_inference<T>(x, weight, bias, Tensor(), false, running_mean, running_var, eps, y);
  });
}

void batch_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& weight, const Tensor& mean,
                         const Tensor& invstd, bool batch_stats, Tensor& gx, Tensor& gweight, Tensor& gbias) {
  dispatch_float(x.dtype(), "batch_norm_backward", [&]<class T>() {
    Tensor none;
    bn_backward<T, false>(gy, Tensor(), x, weight, mean, invstd, batch_stats, gx, gweight, gbias, none);
  });
}

void batch_norm_relu_forward_training(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                      const Tensor& residual, double eps, double momentum, Tensor& running_mean,
                                      Tensor& running_var, Tensor& y, Tensor& save_mean, Tensor& save_invstd) {
  dispatch_float(x.dtype(), "batch_norm_relu_forward_training", [&]<class T>() {
    bn_forward_training<T>(x, weight, bias, residual, true, eps, momentum, running_mean, running_var, y, save_mean,
                           save_invstd);
  });
}

void batch_norm_relu_forward_inference(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                       const Tensor& residual, const Tensor& running_mean,
                                       const Tensor& running_var, double eps, Tensor& y) {
  dispatch_float(x.dtype(), "batch_norm_relu_forward_inference", [&]<class T>() {
    bn_forward_inference<T>(x, weight, bias, residual, true, running_mean, running_var, eps, y);
  });
}

void batch_norm_relu_backward(const Tensor& gy, const Tensor& y, const Tensor& x, const Tensor& weight,
                              const Tensor& mean, const Tensor& invstd, bool batch_stats, Tensor& gx,
                              Tensor& gweight, Tensor& gbias, Tensor& gresidual) {
  dispatch_float(x.dtype(), "batch_norm_relu_backward", [&]<class T>() {
    bn_backward<T, true>(gy, y, x, weight, mean, invstd, batch_stats, gx, gweight, gbias, gresidual);
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

namespace tapegrad {

ConvFlops cpu_conv_flops(const Shape& x, const Shape& w, int64_t stride, int64_t padding) {
  TG_CHECK(x.size() == 4 && w.size() == 4 && x[1] == w[1] && stride >= 1 && padding >= 0 &&
               x[2] + 2 * padding >= w[2] && x[3] + 2 * padding >= w[3],
           "cpu_conv_flops: input ", x, " and weight ", w, " (stride ", stride, ", padding ", padding,
           ") are not a convolution (expected [N, C, H, W] and [K, C, R, S] that fits)");
  cpu::Window2d g;
  g.N = x[0], g.C = x[1], g.H = x[2], g.W = x[3], g.K = w[0], g.R = w[2], g.S = w[3];
  g.stride_h = g.stride_w = stride, g.pad_h = g.pad_w = padding;
  g.P = (g.H + 2 * padding - g.R) / stride + 1, g.Q = (g.W + 2 * padding - g.S) / stride + 1;
  // Direct: 2 K C R S multiply-adds per output; Winograd: 36 products of 2 K C per 4x4 tile of outputs.
  const auto direct = [](const cpu::Window2d& v) { return 2.0 * v.K * v.C * v.R * v.S * v.N * v.P * v.Q; };
  const auto winograd = [](const cpu::Window2d& v) {
    return 2.0 * v.K * v.C * 36 * v.N * ((v.P + 3) / 4) * ((v.Q + 3) / 4);
  };
  ConvFlops f;
  f.forward = cpu::use_winograd(g) ? winograd(g) : direct(g);
  const bool conv = cpu::data_grad_is_convolution(g);
  f.data = conv && cpu::use_winograd(cpu::transposed(g)) ? winograd(cpu::transposed(g)) : direct(g);
  f.weight = cpu::use_winograd_weight(g) ? winograd(g) : direct(g);
  return f;
}

}  // namespace tapegrad
