// f32 matrix products with the micro-kernel of the CPU's level (see sgemm.hpp). This file is compiled for the
// baseline: the packing and the blocked loops are plain code, the micro-kernel is reached through isa::table().
#include "sgemm.hpp"

#include <algorithm>

#include "tapegrad/error.hpp"

namespace tapegrad::cpu::sgemm {

namespace {

using isa::Store;

// kMR rows of a panel, each contiguous in A: kMR read streams, contiguous writes.
template <int kMR>
void pack_rows(const float* const* src, int64_t kc, float* dst) {
  for (int64_t d = 0; d < kc; ++d)
#pragma GCC unroll 16
    for (int64_t i = 0; i < kMR; ++i) dst[d * kMR + i] = src[i][d];
}

// Rows [m0, m0 + mc) and depth [k0, k0 + kc) of op(A) in panels of mr rows:
// ap[(p kc + d) mr + i] = op(A)[m0 + p mr + i, k0 + d], zero past mc.
void pack_a(int64_t mr, bool ta, const float* A, int64_t lda, int64_t m0, int64_t mc, int64_t k0, int64_t kc,
            float* ap) {
  for (int64_t p = 0; p * mr < mc; ++p) {
    float* dst = ap + p * kc * mr;
    const int64_t rows = std::min(mr, mc - p * mr), r0 = m0 + p * mr;
    if (rows < mr) std::fill(dst, dst + kc * mr, 0.0f);
    if (!ta) {
      const float* src[16];
      for (int64_t i = 0; i < rows; ++i) src[i] = A + (r0 + i) * lda + k0;
      if (rows == 10 && mr == 10) pack_rows<10>(src, kc, dst);
      else if (rows == 6 && mr == 6) pack_rows<6>(src, kc, dst);
      else
        for (int64_t d = 0; d < kc; ++d)
          for (int64_t i = 0; i < rows; ++i) dst[d * mr + i] = src[i][d];
    } else {  // A stored [K, M]: the panel's mr values of depth d are contiguous
      for (int64_t d = 0; d < kc; ++d) {
        const float* src = A + (k0 + d) * lda + r0;
        for (int64_t i = 0; i < rows; ++i) dst[d * mr + i] = src[i];
      }
    }
  }
}

// Depth [k0, k0 + kc) and columns [n0, n0 + nc) of op(B) in tiles of nr columns:
// bp[(t kc + d) nr + j] = op(B)[k0 + d, n0 + t nr + j], zero past nc.
void pack_b(int64_t nr, bool tb, const float* B, int64_t ldb, int64_t k0, int64_t kc, int64_t n0, int64_t nc,
            float* bp) {
  for (int64_t t = 0; t * nr < nc; ++t) {
    float* dst = bp + t * kc * nr;
    const int64_t cols = std::min(nr, nc - t * nr), c0 = n0 + t * nr;
    if (cols < nr) std::fill(dst, dst + kc * nr, 0.0f);
    if (tb) {  // B stored [N, K]: column j of op(B) is contiguous
      for (int64_t j = 0; j < cols; ++j) {
        const float* src = B + (c0 + j) * ldb + k0;
        for (int64_t d = 0; d < kc; ++d) dst[d * nr + j] = src[d];
      }
    } else {
      for (int64_t d = 0; d < kc; ++d) std::copy_n(B + (k0 + d) * ldb + c0, cols, dst + d * nr);
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

// The blocked loops shared by both entry points. tile(k0, kc, n0, j, ldt) gives the [kc, nr] tile of op(B) at
// depth k0 and column n0 + j (and its row stride); pack_cols(k0, kc, n0, nc) prepares columns [n0, n0 + nc)
// at depth k0.
template <class Tile, class PackCols>
void blocked(bool ta, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, float beta,
             float* C, int64_t ldc, const float* bias, int64_t nc_block, Tile tile, PackCols pack_cols) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) return scale_only(M, N, beta, C, ldc, bias);
  const isa::Kernel& k = kernel();
  TG_CHECK(k.micro, "sgemm: the CPU level '", isa::table().name, "' has no micro-kernel (the caller should use Eigen)");
  const int64_t mr = k.mr, nr = k.nr;
  std::vector<float>& abuf = buffer(0);
  abuf.resize(static_cast<size_t>(k.mc * k.kc));
  const int64_t kc_even = (K + (K + k.kc - 1) / k.kc - 1) / ((K + k.kc - 1) / k.kc);  // equal depth blocks <= kc
  for (int64_t n0 = 0; n0 < N; n0 += nc_block) {
    const int64_t nc = std::min(nc_block, N - n0);
    for (int64_t k0 = 0; k0 < K; k0 += kc_even) {
      const int64_t kc = std::min(kc_even, K - k0);
      const Store store = k0 > 0 || beta == 1.0f ? Store::Add : beta == 0.0f ? Store::Set : Store::Scale;
      pack_cols(k0, kc, n0, nc);
      for (int64_t m0 = 0; m0 < M; m0 += k.mc) {
        const int64_t mc = std::min(k.mc, M - m0);
        pack_a(mr, ta, A, lda, m0, mc, k0, kc, abuf.data());
        for (int64_t j = 0; j < nc; j += nr) {
          int64_t ldt = 0;
          const float* bt = tile(k0, kc, n0, j, ldt);
          for (int64_t p = 0; p * mr < mc; ++p)
            k.micro(abuf.data() + p * kc * mr, bt, ldt, kc, C + (m0 + p * mr) * ldc + n0 + j, ldc,
                    std::min(mr, mc - p * mr), std::min(nr, nc - j), store, alpha, beta,
                    bias && k0 == 0 ? bias + n0 + j : nullptr, nullptr);
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
  // B stored transposed: pack [kc, 1024] blocks (1.5 MiB at kc = 384) into tiles.
  constexpr int64_t kNC = 1024;
  const isa::Kernel& k = kernel();
  std::vector<float>& bbuf = buffer(1);
  bbuf.resize(static_cast<size_t>(k.kc * kNC));
  blocked(ta, M, N, K, alpha, A, lda, beta, C, ldc, bias, kNC,
          [&](int64_t, int64_t kc, int64_t, int64_t j, int64_t& ldt) {
            ldt = k.nr;
            return bbuf.data() + (j / k.nr) * kc * k.nr;
          },
          [&](int64_t k0, int64_t kc, int64_t n0, int64_t nc) {
            pack_b(k.nr, true, B, ldb, k0, kc, n0, nc, bbuf.data());
          });
}

void pack(bool tb, int64_t K, int64_t N, const float* B, int64_t ldb, PackedB& out) {
  const int64_t nr = kernel().nr;
  TG_CHECK(nr > 0, "sgemm::pack: the CPU level '", isa::table().name, "' has no micro-kernel");
  out.K = K;
  out.N = N;
  const int64_t tiles = (N + nr - 1) / nr;
  out.data.resize(static_cast<size_t>(tiles * K * nr));
  pack_b(nr, tb, B, ldb, 0, K, 0, N, out.data.data());  // tile t at t K nr, depth rows of nr
}

void gemm(bool ta, int64_t M, const float* A, int64_t lda, const PackedB& B, float alpha, float beta, float* C,
          int64_t ldc) {
  const int64_t nr = kernel().nr;
  blocked(ta, M, B.N, B.K, alpha, A, lda, beta, C, ldc, nullptr, B.N,
          [&](int64_t k0, int64_t, int64_t, int64_t j, int64_t& ldt) {
            ldt = nr;
            return B.data.data() + ((j / nr) * B.K + k0) * nr;
          },
          [](int64_t, int64_t, int64_t, int64_t) {});
}

PackedA pack_a(const float* a, int64_t a_rs, int64_t a_cs, int64_t M, int64_t K) {
  const int64_t mr = packed_kernel().mr;
  TG_CHECK(packed_kernel().pack, "sgemm::pack_a: the CPU level '", isa::table().name, "' has no micro-kernel");
  thread_local std::vector<float> buf;
  const int64_t panels = (M + mr - 1) / mr;
  if (static_cast<int64_t>(buf.size()) < panels * mr * K) buf.resize(static_cast<size_t>(panels * mr * K));
  float* data = buf.data();
  packed_kernel().pack(a, a_rs, a_cs, M, K, data);
  return {data, M, K};
}

// Blocked over the depth so that a [kc, nr] tile of B stays in L1 while every panel of A passes over it.
// micro(m0, k0, kc, n0, store, row_bias) runs the tile at row m0, depth block [k0, k0 + kc), column n0.
template <class Micro>
void packed_blocks(const PackedA& A, int64_t N, bool accumulate, const float* row_bias, Micro micro) {
  const isa::Kernel& k = packed_kernel();
  const int64_t K = A.K, blocks = std::max<int64_t>(1, (K + k.kc - 1) / k.kc), step = (K + blocks - 1) / blocks;
  for (int64_t k0 = 0; k0 < K; k0 += step) {
    const int64_t kc = std::min(step, K - k0);
    const bool first = k0 == 0 && !accumulate, last = k0 + kc == K;
    for (int64_t n0 = 0; n0 < N; n0 += k.nr)
      for (int64_t m0 = 0; m0 < A.M; m0 += k.mr)
        micro(m0, k0, kc, n0, first ? Store::Set : Store::Add, last && row_bias ? row_bias + m0 : nullptr);
  }
}

void gemm(const PackedA& A, const float* B, int64_t ldb, int64_t N, float* C, int64_t ldc, const float* row_bias,
          bool accumulate) {
  const isa::Kernel& k = packed_kernel();
  packed_blocks(A, N, accumulate, row_bias,
                [&](int64_t m0, int64_t k0, int64_t kc, int64_t n0, Store store, const float* rb) {
                  k.micro(A.data + m0 * A.K + k0 * k.mr, B + k0 * ldb + n0, ldb, kc, C + m0 * ldc + n0, ldc,
                          std::min(k.mr, A.M - m0), std::min(k.nr, N - n0), store, 1.0f, 0.0f, nullptr, rb);
                });
}

void gemm(const PackedA& A, const float* B, const int64_t* rows, int64_t N, float* C, int64_t ldc,
          const float* row_bias) {
  const isa::Kernel& k = packed_kernel();
  TG_CHECK(k.micro_rows, "sgemm::gemm: the CPU level '", isa::table().name, "' has no micro-kernel");
  packed_blocks(A, N, false, row_bias,
                [&](int64_t m0, int64_t k0, int64_t kc, int64_t n0, Store store, const float* rb) {
                  k.micro_rows(A.data + m0 * A.K + k0 * k.mr, B + n0, rows + k0, kc, C + m0 * ldc + n0, ldc,
                               std::min(k.mr, A.M - m0), std::min(k.nr, N - n0), store, rb);
                });
}

// Depth blocks of whole segments, about kc deep, so that a [depth, nr] tile of B stays in L1 while every panel of
// A passes over it.
void gemm(const float* a, const int64_t* rows, int64_t M, const int64_t* segs, int64_t nseg, int64_t seg,
          const float* B, int64_t ldb, int64_t N, float* C, int64_t ldc, bool accumulate) {
  const isa::Kernel& k = packed_kernel();
  TG_CHECK(k.micro_gather_a, "sgemm::gemm: the CPU level '", isa::table().name, "' has no micro-kernel");
  const int64_t per = std::max<int64_t>(1, k.kc / std::max<int64_t>(1, seg));  // segments per depth block
  for (int64_t t0 = 0; t0 < nseg; t0 += per) {
    const int64_t nt = std::min(per, nseg - t0);
    const Store store = t0 == 0 && !accumulate ? Store::Set : Store::Add;
    for (int64_t n0 = 0; n0 < N; n0 += k.nr)
      for (int64_t m0 = 0; m0 < M; m0 += k.mr)
        k.micro_gather_a(a, rows + m0, segs + t0, nt, seg, B + t0 * seg * ldb + n0, ldb, C + m0 * ldc + n0, ldc,
                         std::min(k.mr, M - m0), std::min(k.nr, N - n0), store);
  }
}

}  // namespace tapegrad::cpu::sgemm
