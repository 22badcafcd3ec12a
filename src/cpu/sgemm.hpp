// f32 matrix products with an AVX-512 micro-kernel, for the CPU twin's gemm and the LSTM kernels.
//
//   C [M, N] = alpha op(A) op(B) + beta C        (row-major; op(X) = X, or X^T when X is stored transposed)
//
// One thread per call: callers split the work (cpu::gemm by bands of rows or columns, the LSTM by bands of
// hidden units). The blocking is BLIS's: depth blocks of kKC, row blocks of kMC of op(A) packed into panels of
// kMR rows (L2), and op(B) read in place when it is stored row-major (its [kKC, kNR] tiles stay in L1 while
// the panels of A pass over them) or packed into [kKC, kNR] tiles when it is stored transposed. The
// micro-kernel keeps a kMR x kNR tile of C in 20 registers and writes it once per depth block (10 rows: a batch
// of 20, the LSTM's step, is two whole panels). Eigen packs
// both operands and zero-fills C on every product; on the shapes of the language model (700 x 200 x 10000,
// 20 x 650 x 2600) this is 1.5x faster. Only f32 on AVX-512 machines (available()); f64 and other machines use
// Eigen.
#pragma once

#include <cstdint>
#include <vector>

namespace tapegrad::cpu::sgemm {

inline constexpr int64_t kMR = 10;   // rows of C per micro-tile
inline constexpr int64_t kNR = 32;   // columns of C per micro-tile (two AVX-512 vectors)
inline constexpr int64_t kKC = 384;  // depth block
inline constexpr int64_t kMC = 200;  // rows of A packed at once (kMC x kKC floats: 300 KiB, L2)

// True when this build has the AVX-512 kernel (else every entry point throws; callers use Eigen).
bool available();

// C [M, N] (row stride ldc) = alpha op(A) op(B) + beta C (+ bias [N] on every row, when given). A is [M, K]
// (ta: stored [K, M]) with row stride lda; B is [K, N] (tb: stored [N, K]) with row stride ldb. beta = 0 ignores
// C's content (NaN included).
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B,
          int64_t ldb, float beta, float* C, int64_t ldc, const float* bias = nullptr);

// op(B) [K, N] packed once for many products with it (the recurrent weights of an LSTM, used at every step):
// tiles of kNR columns, each [K, kNR] contiguous, zero past N.
struct PackedB {
  std::vector<float> data;
  int64_t K = 0, N = 0;
};
void pack(bool tb, int64_t K, int64_t N, const float* B, int64_t ldb, PackedB& out);
// C [M, N] = alpha op(A) B + beta C with B packed.
void gemm(bool ta, int64_t M, const float* A, int64_t lda, const PackedB& B, float alpha, float beta, float* C,
          int64_t ldc);

}  // namespace tapegrad::cpu::sgemm
