// The instruction-set levels (src/cpu/isa.hpp): the level chosen at start (TG_CPU_ISA, else the best the CPU
// has; tests/isa/test_levels.sh and test_qemu.sh set TG_EXPECT_ISA to the level they expect), and the
// micro-kernel of every level this CPU runs against the same tiles in f64 and against each other: every store
// mode, both biases, tiles cut short in rows and columns, depths around the blocks.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "../src/cpu/isa.hpp"
#include "tapegrad/tapegrad.hpp"

namespace isa = tapegrad::cpu::isa;

namespace {

std::vector<float> random_floats(size_t n, tapegrad::Generator& gen) {
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(gen.normal());
  return v;
}

// The kernels of the levels this CPU runs.
std::vector<isa::Table> runnable() {
  std::vector<isa::Table> out;
  if (isa::supported(isa::Level::Avx512)) out.push_back(isa::avx512_table());
  if (isa::supported(isa::Level::Avx2)) out.push_back(isa::avx2_table());
  return out;
}

}  // namespace

TEST_CASE("the level in use is the one TG_CPU_ISA names, else the best this CPU runs") {
  const std::string chosen = tapegrad::cpu_isa();
  MESSAGE("CPU level in use: ", chosen);
  const char* forced = std::getenv("TG_CPU_ISA");
  const char* expect = std::getenv("TG_EXPECT_ISA");
  if (expect) CHECK(chosen == expect);
  if (forced && *forced) {
    CHECK(chosen == forced);
  } else {
    const std::string best = isa::supported(isa::Level::Avx512) ? "avx512"
                             : isa::supported(isa::Level::Avx2) ? "avx2"
                                                                 : "baseline";
    CHECK(chosen == best);
  }
  CHECK(isa::table().name == chosen);
  CHECK(bool(isa::table().gemm.micro) == (chosen != "baseline"));
  if (isa::table().gemm.micro) {  // the blocking fitted to the caches stays whole panels
    CHECK(isa::table().gemm.mc % isa::table().gemm.mr == 0);
    CHECK(isa::table().gemm.mc >= isa::table().gemm.mr);
  }
}

TEST_CASE("every level's micro-kernels equal the f64 tile, and each other, in every store mode") {
  const auto levels = runnable();
  if (levels.empty()) MESSAGE("this CPU has no AVX2: no micro-kernel to check");
  tapegrad::Generator gen(7);
  for (const char* which : {"gemm", "packed"})
    for (int64_t kc : {1, 7, 385})
      for (isa::Store store : {isa::Store::Set, isa::Store::Add, isa::Store::Scale})
        for (int bias = 0; bias < 3; ++bias) {  // none, per column, per row
          for (const isa::Table& t : levels) {
            const isa::Kernel& k = std::string(which) == "gemm" ? t.gemm : t.packed;
            REQUIRE(bool(k.micro));
            // Short tiles too: one row, mr - 1 rows; one column, a vector and one, nr - 3 columns.
            for (int64_t mr : {int64_t{1}, k.mr - 1, k.mr})
              for (int64_t n : {int64_t{1}, k.nr / 2 + 1, k.nr - 3, k.nr}) {
                CAPTURE(t.name);
                CAPTURE(which);
                CAPTURE(kc);
                CAPTURE(static_cast<int>(store));
                CAPTURE(bias);
                CAPTURE(mr);
                CAPTURE(n);
                const int64_t ldb = k.nr + 5, ldc = k.nr + 3;
                std::vector<float> ap = random_floats(static_cast<size_t>(kc * k.mr), gen);
                for (int64_t d = 0; d < kc; ++d)
                  for (int64_t i = mr; i < k.mr; ++i) ap[d * k.mr + i] = 0.0f;  // packed panels are zero past mr
                const std::vector<float> b = random_floats(static_cast<size_t>(kc * ldb), gen);
                const std::vector<float> cb = random_floats(static_cast<size_t>(k.nr), gen),
                                         rb = random_floats(static_cast<size_t>(k.mr), gen);
                std::vector<float> c = random_floats(static_cast<size_t>(k.mr * ldc), gen);
                const std::vector<float> c0 = c;
                const float alpha = 0.75f, beta = -1.5f;
                k.micro(ap.data(), b.data(), ldb, kc, c.data(), ldc, mr, n, store, alpha, beta,
                        bias == 1 ? cb.data() : nullptr, bias == 2 ? rb.data() : nullptr);
                double worst = 0;
                int64_t touched_outside = 0;
                for (int64_t i = 0; i < k.mr; ++i)
                  for (int64_t j = 0; j < ldc; ++j) {
                    const size_t at = static_cast<size_t>(i * ldc + j);
                    if (i >= mr || j >= n) {  // outside the tile: untouched
                      touched_outside += c[at] != c0[at];
                      continue;
                    }
                    double acc = 0;
                    for (int64_t d = 0; d < kc; ++d) acc += double(ap[d * k.mr + i]) * double(b[d * ldb + j]);
                    double want = alpha * acc;
                    if (store == isa::Store::Add) want += c0[at];
                    if (store == isa::Store::Scale) want += beta * double(c0[at]);
                    if (bias == 1) want += cb[j];
                    if (bias == 2) want += rb[i];
                    worst = std::max(worst, std::abs(c[at] - want) / (std::abs(want) + std::sqrt(double(kc))));
                  }
                CHECK(touched_outside == 0);
                CHECK(worst < 2e-6 * std::sqrt(double(kc)));
              }
          }
        }
}

TEST_CASE("the products of every level agree: the same tile through each level's kernel") {
  // Levels differ only in the order of the sums (vector width, depth blocks): a common 10 x 16 tile computed by
  // each kernel, in panels of its own height, matches the others within the f32 tolerance of the suites.
  const auto levels = runnable();
  if (levels.size() < 2) MESSAGE("fewer than two levels with a kernel on this CPU: comparing against f64 only");
  tapegrad::Generator gen(11);
  const int64_t M = 10, N = 16, K = 300;
  const std::vector<float> a = random_floats(static_cast<size_t>(M * K), gen), b = random_floats(static_cast<size_t>(N * K), gen);
  std::vector<std::vector<float>> out;
  for (const isa::Table& t : levels) {
    const isa::Kernel& k = t.gemm;
    std::vector<float> c(static_cast<size_t>(M * N), 0.0f);
    for (int64_t m0 = 0; m0 < M; m0 += k.mr) {
      std::vector<float> ap(static_cast<size_t>(K * k.mr), 0.0f);
      for (int64_t d = 0; d < K; ++d)
        for (int64_t i = 0; i < k.mr && m0 + i < M; ++i) ap[d * k.mr + i] = a[(m0 + i) * K + d];
      for (int64_t n0 = 0; n0 < N; n0 += k.nr)
        k.micro(ap.data(), b.data() + n0, N, K, c.data() + m0 * N + n0, N, std::min(k.mr, M - m0),
                std::min(k.nr, N - n0), isa::Store::Set, 1.0f, 0.0f, nullptr, nullptr);
    }
    out.push_back(c);
  }
  for (size_t l = 0; l < out.size(); ++l)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        double want = 0;
        for (int64_t d = 0; d < K; ++d) want += double(a[i * K + d]) * double(b[d * N + j]);
        CAPTURE(levels[l].name);
        CHECK(std::abs(out[l][i * N + j] - want) < 2e-6 * K);
        CHECK(std::abs(out[l][i * N + j] - out[0][i * N + j]) < 4e-6 * K);
      }
}

// Run by tests/isa/*.sh with a bad TG_CPU_ISA and the words the error must contain in TG_EXPECT_ISA_ERROR.
TEST_CASE("a TG_CPU_ISA that is unknown or beyond this CPU is an error that says so" *
          doctest::skip(std::getenv("TG_EXPECT_ISA_ERROR") == nullptr)) {
  const char* expect = std::getenv("TG_EXPECT_ISA_ERROR");
  CHECK_THROWS_WITH_AS(tapegrad::cpu_isa(), doctest::Contains(expect), tapegrad::Error);
  CHECK_THROWS_AS(tapegrad::cpu_isa(), tapegrad::Error);  // every call, not only the first
}
