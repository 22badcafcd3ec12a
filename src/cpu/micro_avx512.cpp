// The micro-kernels for AVX-512 (compiled with -mavx512f -mavx2 -mfma; see isa.hpp): 16 floats a vector, tiles
// of 32 columns. sgemm: 10 rows (20 accumulators; a batch of 20, the LSTM's step, is two whole panels);
// packed A (convolution): 8 rows (channel counts are multiples of 8).
#include <immintrin.h>

#include "isa.hpp"

namespace {
struct V {
  using Vec = __m512;
  using Mask = __mmask16;
  static constexpr int kWidth = 16;
  static Mask mask(int64_t n) { return n >= 16 ? Mask(0xFFFF) : n <= 0 ? Mask(0) : Mask((1u << n) - 1); }
  static Vec zero() { return _mm512_setzero_ps(); }
  static Vec broadcast(float x) { return _mm512_set1_ps(x); }
  static Vec load(const float* p) { return _mm512_loadu_ps(p); }
  static Vec load(const float* p, Mask m) { return _mm512_maskz_loadu_ps(m, p); }
  static void store(float* p, Mask m, Vec x) { _mm512_mask_storeu_ps(p, m, x); }
  static Vec fma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
  static Vec add(Vec a, Vec b) { return _mm512_add_ps(a, b); }
  static Vec mul(Vec a, Vec b) { return _mm512_mul_ps(a, b); }
};
}  // namespace

#include "micro.inc"

namespace tapegrad::cpu::isa {
Table avx512_table() {
  Table t;
  t.level = Level::Avx512;
  t.name = "avx512";
  t.gemm = {micro<10>, pack<10>, 10, 32, 384, 200};
  t.packed = {micro<8>, pack<8>, 8, 32, 160, 0};
  return t;
}
}  // namespace tapegrad::cpu::isa
