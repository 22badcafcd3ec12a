// The micro-kernels for AVX-512 (compiled with -mavx512f -mavx2 -mfma; see isa.hpp): 16 floats a vector, tiles
// of 32 columns. sgemm: 10 rows (20 accumulators; a batch of 20, the LSTM's step, is two whole panels);
// packed A (convolution): 8 rows (channel counts are multiples of 8).
// GCC 12's _mm512_undefined_ps (inside shuffles and extracts) reads an uninitialised variable on purpose.
#pragma GCC diagnostic ignored "-Wuninitialized"
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
  // For vmath.inc: min and max return b when either is NaN; select(m, a, b) is a where m, else b. Bit operations
  // on integers (those on floats need AVX-512DQ).
  static Vec sub(Vec a, Vec b) { return _mm512_sub_ps(a, b); }
  static Vec div(Vec a, Vec b) { return _mm512_div_ps(a, b); }
  static Vec min(Vec a, Vec b) { return _mm512_min_ps(a, b); }
  static Vec max(Vec a, Vec b) { return _mm512_max_ps(a, b); }
  static Vec round(Vec x) { return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static Vec floor(Vec x) { return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }
  static Vec pow2(Vec n) {  // 2^n for integral n in [-126, 127]
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23));
  }
  static Vec abs(Vec x) { return _mm512_abs_ps(x); }
  static Vec sign(Vec x) {
    return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(int(0x80000000u))));
  }
  static Vec or_bits(Vec a, Vec b) {
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(a), _mm512_castps_si512(b)));
  }
  static Mask less(Vec a, Vec b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
  static Mask is_nan(Vec x) { return _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q); }
  static Mask either(Mask a, Mask b) { return Mask(a | b); }
  static bool any(Mask m) { return m != 0; }
  static Vec select(Mask m, Vec a, Vec b) { return _mm512_mask_blend_ps(m, b, a); }
  // Horizontal sum and max (no NaN lanes) folding halves with shuffles (GCC 12's _mm512_reduce_* warn).
  static float sum(Vec x) {
    x = _mm512_add_ps(x, _mm512_shuffle_f32x4(x, x, 0x4E));
    x = _mm512_add_ps(x, _mm512_shuffle_f32x4(x, x, 0xB1));
    __m128 s = _mm512_castps512_ps128(x);
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
  }
  static float max_lanes(Vec x) {
    x = _mm512_max_ps(x, _mm512_shuffle_f32x4(x, x, 0x4E));
    x = _mm512_max_ps(x, _mm512_shuffle_f32x4(x, x, 0xB1));
    __m128 s = _mm512_castps512_ps128(x);
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)));
  }
};
}  // namespace

#include "micro.inc"
#include "vmath.inc"
#include "winograd.inc"

namespace tapegrad::cpu::isa {
Table avx512_table() {
  Table t;
  t.level = Level::Avx512;
  t.name = "avx512";
  t.gemm = {micro<10>, pack<10>, 10, 32, 384, 200};
  t.packed = {micro<8>, pack<8>, 8, 32, 160, 0};
  t.packed.micro_rows = micro_rows<8>;
  t.packed.micro_gather_a = micro_gather_a<8>;
  t.math = level_math();
  t.winograd = level_winograd();
  return t;
}
}  // namespace tapegrad::cpu::isa
