// The micro-kernels for AVX2 with FMA (compiled with -mavx2 -mfma; see isa.hpp): 8 floats a vector, tiles of
// 6 rows x 16 columns (12 accumulators, 2 vectors of B and a broadcast: 15 of the 16 registers).
#include <immintrin.h>

#include "isa.hpp"

namespace {
struct V {
  using Vec = __m256;
  using Mask = __m256i;  // lane i loaded and stored where its sign bit is set
  static constexpr int kWidth = 8;
  static Mask mask(int64_t n) {
    const int k = n >= 8 ? 8 : n <= 0 ? 0 : static_cast<int>(n);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static Vec zero() { return _mm256_setzero_ps(); }
  static Vec broadcast(float x) { return _mm256_set1_ps(x); }
  static Vec load(const float* p) { return _mm256_loadu_ps(p); }
  static Vec load(const float* p, Mask m) { return _mm256_maskload_ps(p, m); }
  static void store(float* p, Mask m, Vec x) { _mm256_maskstore_ps(p, m, x); }
  static Vec fma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
  static Vec add(Vec a, Vec b) { return _mm256_add_ps(a, b); }
  static Vec mul(Vec a, Vec b) { return _mm256_mul_ps(a, b); }
  // For vmath.inc: min and max return b when either is NaN; select(m, a, b) is a where m, else b.
  static Vec sub(Vec a, Vec b) { return _mm256_sub_ps(a, b); }
  static Vec div(Vec a, Vec b) { return _mm256_div_ps(a, b); }
  static Vec min(Vec a, Vec b) { return _mm256_min_ps(a, b); }
  static Vec max(Vec a, Vec b) { return _mm256_max_ps(a, b); }
  static Vec round(Vec x) { return _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static Vec floor(Vec x) { return _mm256_round_ps(x, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }
  static Vec pow2(Vec n) {  // 2^n for integral n in [-126, 127]
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23));
  }
  static Vec abs(Vec x) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x); }
  static Vec sign(Vec x) { return _mm256_and_ps(_mm256_set1_ps(-0.0f), x); }
  static Vec or_bits(Vec a, Vec b) { return _mm256_or_ps(a, b); }
  static Mask less(Vec a, Vec b) { return _mm256_castps_si256(_mm256_cmp_ps(a, b, _CMP_LT_OQ)); }
  static Mask is_nan(Vec x) { return _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q)); }
  static Mask either(Mask a, Mask b) { return _mm256_or_si256(a, b); }
  static bool any(Mask m) { return _mm256_movemask_ps(_mm256_castsi256_ps(m)) != 0; }
  static Vec select(Mask m, Vec a, Vec b) { return _mm256_blendv_ps(b, a, _mm256_castsi256_ps(m)); }
  static float sum(Vec x) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
  }
  static float max_lanes(Vec x) {  // no NaN lanes
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)));
  }
};
}  // namespace

#include "micro.inc"
#include "vmath.inc"
#include "winograd.inc"

namespace tapegrad::cpu::isa {
Table avx2_table() {
  Table t;
  t.level = Level::Avx2;
  t.name = "avx2";
  t.gemm = {micro<6>, pack<6>, 6, 16, 256, 198};
  t.packed = {micro<6>, pack<6>, 6, 16, 160, 0};
  t.packed.micro_rows = micro_rows<6>;
  t.packed.micro_gather_a = micro_gather_a<6>;
  t.math = level_math();
  t.winograd = level_winograd();
  return t;
}
}  // namespace tapegrad::cpu::isa
