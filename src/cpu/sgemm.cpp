// f32 matrix products with an AVX-512 micro-kernel (see sgemm.hpp).
#include "sgemm.hpp"

#include <algorithm>

#include "tapegrad/error.hpp"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace tapegrad::cpu::sgemm {

#if defined(__AVX512F__)

bool available() { return true; }

namespace {

inline __mmask16 lanes(int64_t n) {
  return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << std::max<int64_t>(n, 0)) - 1);
}

// How a micro-tile is written: C = alpha acc, C += alpha acc, or C = beta C + alpha acc.
enum class Store { Set, Add, Scale };

// C[0:mr, 0:n] (store mode) alpha * ap^T b (+ bias[0:n] on the first depth block): ap [kc, kMR] (a packed
// panel), b [kc, n] with row stride ldb, n <= 16 kNV. kNV vectors of B per step of depth and kMR broadcasts
// of A; kMR x kNV accumulators. kNV = 1 serves the last columns of a width that is not a multiple of kNR.
template <int kNV>
inline void micro_kernel(const float* ap, const float* b, int64_t ldb, int64_t kc, float* c, int64_t ldc, int64_t mr,
                         int64_t n, Store store, float alpha, float beta, const float* bias) {
  __mmask16 mask[kNV];
  for (int v = 0; v < kNV; ++v) mask[v] = lanes(n - 16 * v);
  __m512 acc[kMR][kNV];
#pragma GCC unroll 16
  for (int i = 0; i < kMR; ++i)
    for (int v = 0; v < kNV; ++v) acc[i][v] = _mm512_setzero_ps();
  for (int64_t d = 0; d < kc; ++d) {
    __m512 bv[kNV];
    for (int v = 0; v < kNV; ++v) bv[v] = _mm512_maskz_loadu_ps(mask[v], b + d * ldb + 16 * v);
#pragma GCC unroll 16
    for (int i = 0; i < kMR; ++i) {
      const __m512 a = _mm512_set1_ps(ap[d * kMR + i]);
      for (int v = 0; v < kNV; ++v) acc[i][v] = _mm512_fmadd_ps(a, bv[v], acc[i][v]);
    }
  }
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  __m512 vbias[kNV];
  for (int v = 0; v < kNV; ++v) vbias[v] = bias ? _mm512_maskz_loadu_ps(mask[v], bias + 16 * v) : _mm512_setzero_ps();
#pragma GCC unroll 16
  for (int i = 0; i < kMR; ++i) {
    if (i >= mr) break;
    float* row = c + i * ldc;
    for (int v = 0; v < kNV; ++v) {
      __m512 r = acc[i][v];
      if (alpha != 1.0f) r = _mm512_mul_ps(r, va);
      if (store == Store::Add) r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(mask[v], row + 16 * v));
      else if (store == Store::Scale) r = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask[v], row + 16 * v), r);
      if (bias) r = _mm512_add_ps(r, vbias[v]);
      _mm512_mask_storeu_ps(row + 16 * v, mask[v], r);
    }
  }
}

inline void micro(const float* ap, const float* b, int64_t ldb, int64_t kc, float* c, int64_t ldc, int64_t mr,
                  int64_t n, Store store, float alpha, float beta, const float* bias) {
  if (n > 16) micro_kernel<2>(ap, b, ldb, kc, c, ldc, mr, n, store, alpha, beta, bias);
  else micro_kernel<1>(ap, b, ldb, kc, c, ldc, mr, n, store, alpha, beta, bias);
}

// Rows [m0, m0 + mc) and depth [k0, k0 + kc) of op(A) in panels of kMR rows:
// ap[(p kc + d) kMR + i] = op(A)[m0 + p kMR + i, k0 + d], zero past mc.
void pack_a(bool ta, const float* A, int64_t lda, int64_t m0, int64_t mc, int64_t k0, int64_t kc, float* ap) {
  for (int64_t p = 0; p * kMR < mc; ++p) {
    float* dst = ap + p * kc * kMR;
    const int64_t rows = std::min(kMR, mc - p * kMR), r0 = m0 + p * kMR;
    if (rows < kMR) std::fill(dst, dst + kc * kMR, 0.0f);
    if (!ta) {  // row i of the panel is contiguous in A: kMR read streams, contiguous writes
      const float* src[kMR];
      for (int64_t i = 0; i < rows; ++i) src[i] = A + (r0 + i) * lda + k0;
      if (rows == kMR) {
        for (int64_t d = 0; d < kc; ++d)
#pragma GCC unroll 16
          for (int64_t i = 0; i < kMR; ++i) dst[d * kMR + i] = src[i][d];
      } else {
        for (int64_t d = 0; d < kc; ++d)
          for (int64_t i = 0; i < rows; ++i) dst[d * kMR + i] = src[i][d];
      }
    } else {  // A stored [K, M]: the panel's kMR values of depth d are contiguous
      for (int64_t d = 0; d < kc; ++d) {
        const float* src = A + (k0 + d) * lda + r0;
        for (int64_t i = 0; i < rows; ++i) dst[d * kMR + i] = src[i];
      }
    }
  }
}

// Depth [k0, k0 + kc) and columns [n0, n0 + nc) of op(B) in tiles of kNR columns:
// bp[(t kc + d) kNR + j] = op(B)[k0 + d, n0 + t kNR + j], zero past nc.
void pack_b(bool tb, const float* B, int64_t ldb, int64_t k0, int64_t kc, int64_t n0, int64_t nc, float* bp) {
  for (int64_t t = 0; t * kNR < nc; ++t) {
    float* dst = bp + t * kc * kNR;
    const int64_t cols = std::min(kNR, nc - t * kNR), c0 = n0 + t * kNR;
    if (cols < kNR) std::fill(dst, dst + kc * kNR, 0.0f);
    if (tb) {  // B stored [N, K]: column j of op(B) is contiguous
      for (int64_t j = 0; j < cols; ++j) {
        const float* src = B + (c0 + j) * ldb + k0;
        for (int64_t d = 0; d < kc; ++d) dst[d * kNR + j] = src[d];
      }
    } else {
      for (int64_t d = 0; d < kc; ++d) std::copy_n(B + (k0 + d) * ldb + c0, cols, dst + d * kNR);
    }
  }
}

// The packing buffers of this thread (OpenMP threads each have their own).
std::vector<float>& buffer(int which) {
  thread_local std::vector<float> buf[2];
  return buf[which];
}

// C = beta C + bias (K = 0: the product is empty).
void scale_only(int64_t M, int64_t N, float beta, float* C, int64_t ldc, const float* bias) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j)
      C[i * ldc + j] = (beta == 0.0f ? 0.0f : beta * C[i * ldc + j]) + (bias ? bias[j] : 0.0f);
}

// The blocked loops shared by both entry points. tile(k0, kc, j) gives the [kc, kNR] tile of op(B) at depth k0
// and column j (and its row stride); pack_cols(k0, kc, n0, nc) prepares columns [n0, n0 + nc) at depth k0.
template <class Tile, class PackCols>
void blocked(bool ta, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, float beta,
             float* C, int64_t ldc, const float* bias, int64_t nc_block, Tile tile, PackCols pack_cols) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) return scale_only(M, N, beta, C, ldc, bias);
  std::vector<float>& abuf = buffer(0);
  abuf.resize(static_cast<size_t>(kMC * kKC));
  const int64_t kc_even = (K + (K + kKC - 1) / kKC - 1) / ((K + kKC - 1) / kKC);  // equal depth blocks <= kKC
  for (int64_t n0 = 0; n0 < N; n0 += nc_block) {
    const int64_t nc = std::min(nc_block, N - n0);
    for (int64_t k0 = 0; k0 < K; k0 += kc_even) {
      const int64_t kc = std::min(kc_even, K - k0);
      const Store store = k0 > 0 || beta == 1.0f ? Store::Add : beta == 0.0f ? Store::Set : Store::Scale;
      pack_cols(k0, kc, n0, nc);
      for (int64_t m0 = 0; m0 < M; m0 += kMC) {
        const int64_t mc = std::min(kMC, M - m0);
        pack_a(ta, A, lda, m0, mc, k0, kc, abuf.data());
        for (int64_t j = 0; j < nc; j += kNR) {
          int64_t ldt = 0;
          const float* bt = tile(k0, kc, n0, j, ldt);
          for (int64_t p = 0; p * kMR < mc; ++p)
            micro(abuf.data() + p * kc * kMR, bt, ldt, kc, C + (m0 + p * kMR) * ldc + n0 + j, ldc,
                  std::min(kMR, mc - p * kMR), std::min(kNR, nc - j), store, alpha, beta,
                  bias && k0 == 0 ? bias + n0 + j : nullptr);
        }
      }
    }
  }
}

}  // namespace

void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B,
          int64_t ldb, float beta, float* C, int64_t ldc, const float* bias) {
  if (!tb) {  // B row-major: its tiles are read where they lie
    blocked(ta, M, N, K, alpha, A, lda, beta, C, ldc, bias, N,
            [&](int64_t k0, int64_t, int64_t n0, int64_t j, int64_t& ldt) {
              ldt = ldb;
              return B + k0 * ldb + n0 + j;
            },
            [](int64_t, int64_t, int64_t, int64_t) {});
    return;
  }
  // B stored transposed: pack [kKC, 1024] blocks (1.5 MiB) into tiles.
  constexpr int64_t kNC = 1024;
  std::vector<float>& bbuf = buffer(1);
  bbuf.resize(static_cast<size_t>(kKC * kNC));
  blocked(ta, M, N, K, alpha, A, lda, beta, C, ldc, bias, kNC,
          [&](int64_t, int64_t kc, int64_t, int64_t j, int64_t& ldt) {
            ldt = kNR;
            return bbuf.data() + (j / kNR) * kc * kNR;
          },
          [&](int64_t k0, int64_t kc, int64_t n0, int64_t nc) { pack_b(true, B, ldb, k0, kc, n0, nc, bbuf.data()); });
}

void pack(bool tb, int64_t K, int64_t N, const float* B, int64_t ldb, PackedB& out) {
  out.K = K;
  out.N = N;
  const int64_t tiles = (N + kNR - 1) / kNR;
  out.data.resize(static_cast<size_t>(tiles * K * kNR));
  pack_b(tb, B, ldb, 0, K, 0, N, out.data.data());  // tile t at t K kNR, depth rows of kNR
}

void gemm(bool ta, int64_t M, const float* A, int64_t lda, const PackedB& B, float alpha, float beta, float* C,
          int64_t ldc) {
  blocked(ta, M, B.N, B.K, alpha, A, lda, beta, C, ldc, nullptr, B.N,
          [&](int64_t k0, int64_t, int64_t, int64_t j, int64_t& ldt) {
            ldt = kNR;
            return B.data.data() + ((j / kNR) * B.K + k0) * kNR;
          },
          [](int64_t, int64_t, int64_t, int64_t) {});
}

#else  // no AVX-512: callers use Eigen

bool available() { return false; }
void gemm(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t, float, float*,
          int64_t, const float*) {
  TG_FAIL("sgemm: this build has no AVX-512 kernel (the caller should have used Eigen)");
}
void pack(bool, int64_t, int64_t, const float*, int64_t, PackedB&) {
  TG_FAIL("sgemm: this build has no AVX-512 kernel (the caller should have used Eigen)");
}
void gemm(bool, int64_t, const float*, int64_t, const PackedB&, float, float, float*, int64_t) {
  TG_FAIL("sgemm: this build has no AVX-512 kernel (the caller should have used Eigen)");
}

#endif

}  // namespace tapegrad::cpu::sgemm
