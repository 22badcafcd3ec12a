// f32 matrix products with the micro-kernel of the CPU's level (src/cpu/isa.hpp), for the CPU twin's gemm and the
// LSTM kernels.
//
//   C [M, N] = alpha op(A) op(B) + beta C        (row-major; op(X) = X, or X^T when X is stored transposed)
//
// One thread per call: callers split the work (cpu::gemm by bands of rows or columns, the LSTM by bands of
// hidden units). The blocking is BLIS's: depth blocks of kc, row blocks of mc of op(A) packed into panels of
// mr rows (L2), and op(B) read in place when it is stored row-major (its [kc, nr] tiles stay in L1 while
// the panels of A pass over them) or packed into [kc, nr] tiles when it is stored transposed. The
// micro-kernel keeps an mr x nr tile of C in registers and writes it once per depth block (AVX-512: 10 x 32,
// so that a batch of 20, the LSTM's step, is two whole panels; AVX2: 6 x 16). Eigen packs both operands and
// zero-fills C on every product; on the shapes of the language model (700 x 200 x 10000, 20 x 650 x 2600)
// this is 1.5x faster. Only f32 at the AVX2 and AVX-512 levels (available()); f64 and the baseline level use
// Eigen.
#pragma once

#include <cstdint>
#include <vector>

#include "isa.hpp"

namespace tapegrad::cpu::sgemm {

// The micro-kernel in use and its blocking (mr, nr: the tile; kc: depth block; mc: rows of A packed at once).
inline const isa::Kernel& kernel() { return isa::table().gemm; }

// True when the CPU's level has a micro-kernel (else every entry point throws; callers use Eigen).
inline bool available() { return kernel().micro != nullptr; }

// C [M, N] (row stride ldc) = alpha op(A) op(B) + beta C (+ bias [N] on every row, when given). A is [M, K]
// (ta: stored [K, M]) with row stride lda; B is [K, N] (tb: stored [N, K]) with row stride ldb. beta = 0 ignores
// C's content (NaN included).
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B,
          int64_t ldb, float beta, float* C, int64_t ldc, const float* bias = nullptr);

// op(B) [K, N] packed once for many products with it (the recurrent weights of an LSTM, used at every step):
// tiles of nr columns, each [K, nr] contiguous, zero past N.
struct PackedB {
  std::vector<float> data;
  int64_t K = 0, N = 0;
};
void pack(bool tb, int64_t K, int64_t N, const float* B, int64_t ldb, PackedB& out);
// C [M, N] = alpha op(A) B + beta C with B packed.
void gemm(bool ta, int64_t M, const float* A, int64_t lda, const PackedB& B, float alpha, float beta, float* C,
          int64_t ldc);

// The entry point for an A packed once and multiplied by many B read in place (the weights of a convolution,
// times the column buffer of each chunk of the batch), with the packed-A kernel of the level (AVX-512: 8 x 32
// tiles, channel counts being multiples of 8; AVX2: 6 x 16).
inline const isa::Kernel& packed_kernel() { return isa::table().packed; }

// A [M, K] (element (m, k) at a[m a_rs + k a_cs]) in panels of mr rows: data[m0 K + k mr + i] = A[m0 + i, k],
// zero past M. The buffer is the calling thread's, reused from call to call (a fresh one of ResNet-34's 9 MB
// would cost a page fault per 4 KiB every time): one PackedA per thread at a time.
struct PackedA {
  const float* data = nullptr;
  int64_t M = 0, K = 0;
};
PackedA pack_a(const float* a, int64_t a_rs, int64_t a_cs, int64_t M, int64_t K);
// C [M, N] (row stride ldc) = A B (+ row_bias [M], row i plus row_bias[i]), or += with `accumulate`, for B [K, N]
// with row stride ldb.
void gemm(const PackedA& A, const float* B, int64_t ldb, int64_t N, float* C, int64_t ldc, const float* row_bias,
          bool accumulate = false);

// The same for a convolution's column buffer read from its framed input (src/cpu/conv.cpp), never built:
// C [M, N] = A B (+ row_bias) for B [K, N] with row d at B + rows[d] (isa::MicroRows); and C [M, N] = A B (+= with
// accumulate) for A [M, K] read in place, element (m, k) at a[rows[m] + segs[k / seg] + k % seg], K = nseg seg,
// and B [K, N] with row stride ldb (isa::MicroGatherA).
void gemm(const PackedA& A, const float* B, const int64_t* rows, int64_t N, float* C, int64_t ldc,
          const float* row_bias);
void gemm(const float* a, const int64_t* rows, int64_t M, const int64_t* segs, int64_t nseg, int64_t seg,
          const float* B, int64_t ldb, int64_t N, float* C, int64_t ldc, bool accumulate);

}  // namespace tapegrad::cpu::sgemm
