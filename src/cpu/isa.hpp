// The instruction-set level of the CPU twin, chosen once at run time (OpenBLAS and oneDNN do the same).
//
// The library is compiled for the x86-64 baseline. The f32 micro-kernel of the matrix products is compiled
// again per level in its own translation unit (micro_avx512.cpp: -mavx512f, micro_avx2.cpp: -mavx2 -mfma, both
// from micro.inc) and reached through one table: the first call reads TG_CPU_ISA (avx512 | avx2 | baseline)
// or else asks the CPU (cpuid, through __builtin_cpu_supports) and keeps the best level it supports. The
// baseline level has no micro-kernel: products go to Eigen. Those translation units include nothing but
// <immintrin.h> and this header, so that no inline function of Eigen or std compiled with AVX-512 can be
// picked by the linker for a baseline caller (tests/isa/check_objects.sh proves it on the objects).
#pragma once

#include <cstdint>

namespace tapegrad::cpu::isa {

// How a micro-tile of C is written: C = alpha acc, C += alpha acc, or C = beta C + alpha acc.
enum class Store { Set, Add, Scale };

// C[0:mr, 0:n] (row stride ldc) (store) alpha ap^T b (+ col_bias[0:n] on every row, + row_bias[i] on row i):
// ap [kc, mr_max] is a packed panel of A (zero past mr), b [kc, n] has row stride ldb; mr <= the kernel's
// mr, n <= its nr.
using Micro = void (*)(const float* ap, const float* b, int64_t ldb, int64_t kc, float* c, int64_t ldc, int64_t mr,
                       int64_t n, Store store, float alpha, float beta, const float* col_bias, const float* row_bias);

// A [M, K] (element (m, k) at a[m a_rs + k a_cs]) in panels of mr rows: out[m0 K + k mr + i] = A[m0 + i, k],
// zero past M (compiled per level too: transposing the column buffer of a convolution is a tenth of its step).
using Pack = void (*)(const float* a, int64_t a_rs, int64_t a_cs, int64_t M, int64_t K, float* out);

// A micro-kernel and its blocking: tiles of mr x nr, depth blocks of kc, rows of A packed mc at a time (a
// multiple of mr; sgemm only).
struct Kernel {
  Micro micro = nullptr;  // nullptr: no kernel at this level (Eigen instead)
  Pack pack = nullptr;
  int64_t mr = 0, nr = 0, kc = 0, mc = 0;
};

enum class Level { Baseline, Avx2, Avx512 };

// One level's kernels: sgemm's general one (A packed on every call: linear layers, the LSTM), and its packed-A
// one (A packed once for many products: the weights of a convolution times each chunk's column buffer).
struct Table {
  Level level = Level::Baseline;
  const char* name = "baseline";
  Kernel gemm, packed;
};

// The table of the level in use, chosen on the first call (throws tapegrad::Error for a TG_CPU_ISA that is
// unknown or names a level this CPU lacks, on that call and every later one).
const Table& table();

// True when this CPU (and its operating system) can run the level.
bool supported(Level level);

// The tables compiled per level (micro_avx512.cpp, micro_avx2.cpp), before the blocking is fitted to the caches.
// Compiled for their level themselves: call one only when supported() says the CPU has it.
Table avx512_table();
Table avx2_table();

}  // namespace tapegrad::cpu::isa
