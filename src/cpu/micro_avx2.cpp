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
};
}  // namespace

#include "micro.inc"

namespace tapegrad::cpu::isa {
Table avx2_table() {
  Table t;
  t.level = Level::Avx2;
  t.name = "avx2";
  t.gemm = {micro<6>, pack<6>, 6, 16, 256, 198};
  t.packed = {micro<6>, pack<6>, 6, 16, 160, 0};
  return t;
}
}  // namespace tapegrad::cpu::isa
