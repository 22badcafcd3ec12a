// The instruction-set level of the CPU twin, chosen once at run time (OpenBLAS and oneDNN do the same).
//
// The library is compiled for the x86-64 baseline. The f32 micro-kernel of the matrix products is compiled
// again per level in its own translation unit (micro_avx512.cpp: -mavx512f, micro_avx2.cpp: -mavx2 -mfma, both
// from micro.inc) and reached through one table: the first call reads TG_CPU_ISA (avx512 | avx2 | baseline)
// or else asks the CPU (cpuid, through __builtin_cpu_supports) and keeps the best level it supports. The
// baseline level has no micro-kernel: products go to Eigen. The f32 row kernels of exp, softmax and the LSTM's
// gates (vmath.inc) are compiled per level the same way. Those translation units include nothing but
// <immintrin.h> and this header, so that no inline function of Eigen or std compiled with AVX-512 can be
// picked by the linker for a baseline caller (tests/isa/check_objects.sh proves it on the objects). Elsewhere
// than x86-64 (aarch64: tools/cross) no level is compiled and baseline, Eigen with its NEON paths, is the only one.
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
// zero past M (compiled per level too: the column buffer of a convolution, where one is built, is packed so).
using Pack = void (*)(const float* a, int64_t a_rs, int64_t a_cs, int64_t M, int64_t K, float* out);

// Micro with row d of b at b + rows[d], alpha 1 and no column bias: the column buffer of a convolution read from
// its framed input (src/cpu/conv.cpp), each row a shifted window of it, without building the buffer.
using MicroRows = void (*)(const float* ap, const float* b, const int64_t* rows, int64_t kc, float* c, int64_t ldc,
                           int64_t mr, int64_t n, Store store, const float* row_bias);

// Micro with A read in place rather than packed: row i of A at a + arows[i] (i < mr), its depth in nseg segments
// of seg values, segment t at offset segs[t]; b [nseg seg, n] with row stride ldb; alpha 1, no biases (the
// column buffer as the left operand of a convolution's weight gradient, read from its framed input output row
// by output row: no pack).
using MicroGatherA = void (*)(const float* a, const int64_t* arows, const int64_t* segs, int64_t nseg, int64_t seg,
                              const float* b, int64_t ldb, float* c, int64_t ldc, int64_t mr, int64_t n, Store store);

// A micro-kernel and its blocking: tiles of mr x nr, depth blocks of kc, rows of A packed mc at a time (a
// multiple of mr; sgemm only). micro_rows and micro_gather_a: the packed-A kernel's only.
struct Kernel {
  Micro micro = nullptr;  // nullptr: no kernel at this level (Eigen instead)
  Pack pack = nullptr;
  int64_t mr = 0, nr = 0, kc = 0, mc = 0;
  MicroRows micro_rows = nullptr;
  MicroGatherA micro_gather_a = nullptr;
};

enum class Level { Baseline, Avx2, Avx512 };

// f32 row kernels of the elementwise math that dominates a language model's step besides the products (the
// softmax over a 10k vocabulary, the LSTM's gate pass), compiled per level from vmath.inc: exp within 2 ulp
// (Cody-Waite reduction and Cephes' polynomial; inf, NaN, overflow and subnormal results as std::exp), sigmoid
// and tanh from it. All nullptr at the baseline level: callers keep their Eigen code.
struct Math {
  float (*max)(const float* x, int64_t n) = nullptr;                // max of x[0:n] (NaN if any is; -inf if n = 0)
  float (*exp_sum)(const float* x, int64_t n, float shift) = nullptr;  // sum of exp(x - shift)
  // y[0:n] = exp(x - shift) scale (y may be x).
  void (*exp_scale)(const float* x, int64_t n, float shift, float scale, float* y) = nullptr;
  // One LSTM row of n units, gates at a, a + H, a + 2H, a + 3H (i, f, g, o; pre-activations in, activations out):
  // c = f cp + i g (cp nullptr: c = i g), h = o tanh(c).
  void (*lstm_cell)(float* a, int64_t H, const float* cp, float* c, float* h, int64_t n) = nullptr;
  // Its backward (a: the activations, c: the cell state): dh += gy; dc += dh o (1 - tanh^2 c); the gate gradients
  // into d, d + H, d + 2H, d + 3H (d f = 0 when cp is nullptr); then dc *= f.
  void (*lstm_cell_backward)(const float* a, int64_t H, const float* c, const float* cp, const float* gy, float* dh,
                             float* dc, float* d, int64_t n) = nullptr;
};

// The elementwise transforms of Winograd's F(4x4, 3x3) convolution (src/cpu/winograd.cpp), on 16 tiles at once, tile
// l in lane l of rows of 16 floats (6x6 = 36 transformed points xi): the input tile d [36][16] to v[xi vs + l]
// = (B^T d B)[xi]; the filter g [9][16] to u[xi us + l] = (G g G^T)[xi]; the products m[xi ms + l] to the outputs
// y [16][16] = A^T m A. The weight gradient's adjoints: the output gradient y [16][16] to m[xi ms + l] = (A y A^T)[xi],
// and the transformed filter gradient u[xi us + l] to g [9][16] = G^T u G. All nullptr at the baseline level (no
// micro-kernel for the products either).
struct Winograd {
  void (*input)(const float* d, float* v, int64_t vs) = nullptr;
  void (*filter)(const float* g, float* u, int64_t us) = nullptr;
  void (*output)(const float* m, int64_t ms, float* y) = nullptr;
  void (*output_grad)(const float* y, float* m, int64_t ms) = nullptr;
  void (*filter_grad)(const float* u, int64_t us, float* g) = nullptr;
};

// One level's kernels: sgemm's general one (A packed on every call: linear layers, the LSTM), and its packed-A
// one (A packed once for many products: the weights of a convolution times each chunk's column buffer).
struct Table {
  Level level = Level::Baseline;
  const char* name = "baseline";
  Kernel gemm, packed;
  Math math;
  Winograd winograd;
};

// The table of the level in use, chosen on the first call (throws tapegrad::Error for a TG_CPU_ISA that is
// unknown or names a level this CPU lacks, on that call and every later one).
const Table& table();

// True when this CPU (and its operating system) can run the level.
bool supported(Level level);

// The row kernels of the level in use (all nullptr at the baseline level).
inline const Math& math() { return table().math; }

// The tables compiled per level (micro_avx512.cpp, micro_avx2.cpp), before the blocking is fitted to the caches.
// Compiled for their level themselves: call one only when supported() says the CPU has it. x86-64 only.
#if defined(__x86_64__)
Table avx512_table();
Table avx2_table();
#endif

}  // namespace tapegrad::cpu::isa
