// The instruction-set levels (src/cpu/isa.hpp): the level chosen at start (TG_CPU_ISA, else the best the CPU
// has; tests/isa/test_levels.sh and test_qemu.sh set TG_EXPECT_ISA to the level they expect), and the
// micro-kernel of every level this CPU runs against the same tiles in f64 and against each other: every store
// mode, both biases, tiles cut short in rows and columns, depths around the blocks.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
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

// The kernels of the levels this CPU runs (none but x86-64's).
std::vector<isa::Table> runnable() {
  std::vector<isa::Table> out;
#if defined(__x86_64__)
  if (isa::supported(isa::Level::Avx512)) out.push_back(isa::avx512_table());
  if (isa::supported(isa::Level::Avx2)) out.push_back(isa::avx2_table());
#else
  CHECK_FALSE(isa::supported(isa::Level::Avx2));  // no x86 level off x86-64
  CHECK_FALSE(isa::supported(isa::Level::Avx512));
#endif
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
  if (levels.empty()) MESSAGE("this CPU has no AVX2 (or is not x86-64): no micro-kernel to check");
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

namespace {

// |got - want| in units in the last place of want rounded to f32 (subnormal spacing 2^-149 at the bottom); a
// want beyond FLT_MAX must give inf, a NaN must give NaN (0 ulp when so, else 1e9).
double ulps(float got, double want) {
  if (std::isnan(want)) return std::isnan(got) ? 0 : 1e9;
  if (std::abs(want) > double(std::numeric_limits<float>::max()))
    return std::isinf(got) && (got > 0) == (want > 0) ? 0 : 1e9;
  if (!std::isfinite(got)) return 1e9;
  const double a = std::abs(want);
  const double ulp = a < double(std::numeric_limits<float>::min()) ? std::ldexp(1.0, -149)
                                                                   : std::ldexp(1.0, std::ilogb(a) - 23);
  return std::abs(double(got) - want) / ulp;
}

// Arguments over the whole f32 range of the functions: a dense sweep of [-110, 95], random normals, and the
// edges (infinities, NaN, signed zeros, subnormals, the overflow and underflow thresholds of exp, tanh's
// switch at 0.625); an odd count, so that every row ends in a masked tail.
std::vector<float> math_arguments() {
  std::vector<float> x;
  for (int i = 0; i <= 205000; ++i) x.push_back(-110.0f + 0.001f * float(i));
  tapegrad::Generator gen(5);
  for (int i = 0; i < 20000; ++i) x.push_back(static_cast<float>(gen.normal() * std::pow(10.0, gen.uniform() * 4 - 3)));
  const float inf = std::numeric_limits<float>::infinity();
  for (float v : {inf, -inf, std::numeric_limits<float>::quiet_NaN(), 0.0f, -0.0f, 1e-45f, -1e-45f, 1e-38f, 1e-30f,
                  -1e-30f, 1e-7f, 88.72283f, 88.72284f, 88.7229f, 88.73f, 89.0f, -87.33f, -87.34f, -103.27f, -103.28f,
                  -103.98f, -104.0f, -150.0f, 1e30f, -1e30f, 0.625f, -0.625f, 0.62499f, 0.62501f, 9.0f, -9.0f})
    x.push_back(v);
  if (x.size() % 2 == 0) x.push_back(0.5f);
  return x;
}

double sigmoid64(double x) { return x >= 0 ? 1 / (1 + std::exp(-x)) : std::exp(x) / (1 + std::exp(x)); }

}  // namespace

TEST_CASE("every level's exp and tanh are within 2 ulp of f64, sigmoid 3, from underflow to overflow, inf and NaN") {
  const auto levels = runnable();
  if (levels.empty()) MESSAGE("this CPU has no AVX2 (or is not x86-64): no row kernel to check");
  const std::vector<float> x = math_arguments();
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<std::vector<float>> first;  // the first level's exp, sigmoid, tanh
  for (const isa::Table& t : levels) {
    const std::string name = t.name;
    CAPTURE(name);
    REQUIRE(bool(t.math.exp_scale));
    REQUIRE(bool(t.math.lstm_cell));
    std::vector<float> e(x.size());
    t.math.exp_scale(x.data(), n, 0.0f, 1.0f, e.data());
    // The gates of one LSTM row of n units: i = sigmoid(x), g = tanh(x) (no previous cell state).
    std::vector<float> a(4 * x.size()), c(x.size()), h(x.size());
    for (int q = 0; q < 4; ++q) std::copy(x.begin(), x.end(), a.begin() + q * n);
    t.math.lstm_cell(a.data(), n, nullptr, c.data(), h.data(), n);
    const std::vector<float> sg(a.begin(), a.begin() + n), th(a.begin() + 2 * n, a.begin() + 3 * n);
    double worst_exp = 0, worst_sig = 0, worst_tanh = 0, worst_level = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      const double xi = x[i];
      CAPTURE(xi);
      worst_exp = std::max(worst_exp, ulps(e[i], std::exp(xi)));
      worst_sig = std::max(worst_sig, ulps(sg[i], sigmoid64(xi)));
      worst_tanh = std::max(worst_tanh, ulps(th[i], std::tanh(xi)));
      if (std::signbit(th[i]) != std::signbit(xi) && !std::isnan(xi)) FAIL_CHECK("tanh changed the sign at ", xi);
      if (!first.empty()) {  // the levels agree: each within 3 ulp of the f64 value, so within 6 of each other
        worst_level = std::max({worst_level, ulps(e[i], first[0][i]), ulps(sg[i], first[1][i]), ulps(th[i], first[2][i])});
      }
    }
    MESSAGE(name, ": worst ulp exp ", worst_exp, ", sigmoid ", worst_sig, ", tanh ", worst_tanh);
    CHECK(worst_exp <= 2);
    CHECK(worst_sig <= 3);
    CHECK(worst_tanh <= 2);
    CHECK(worst_level <= 6);
    if (first.empty()) first = {e, sg, th};
  }
}

TEST_CASE("every level's softmax rows and LSTM cell equal f64, with tails, NaN, infinities and empty rows") {
  const auto levels = runnable();
  if (levels.empty()) MESSAGE("this CPU has no AVX2 (or is not x86-64): no row kernel to check");
  tapegrad::Generator gen(13);
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  for (const isa::Table& t : levels) {
    const std::string name = t.name;
    CAPTURE(name);
    const isa::Math& m = t.math;
    REQUIRE(bool(m.max));
    for (int64_t n : {0, 1, 7, 16, 17, 33, 10000}) {
      CAPTURE(n);
      std::vector<float> x = random_floats(static_cast<size_t>(n) + 1, gen);  // one more: must not be read
      for (float& v : x) v *= 10.0f;
      x[static_cast<size_t>(n)] = 1e30f;
      double mx = -inf, sum = 0;
      for (int64_t i = 0; i < n; ++i) mx = std::max(mx, double(x[i]));
      CHECK(m.max(x.data(), n) == float(mx));
      for (int64_t i = 0; i < n; ++i) sum += std::exp(double(x[i] - float(mx)));  // the difference in f32, as the kernel
      CHECK(std::abs(m.exp_sum(x.data(), n, float(mx)) - sum) <= 1e-6 * sum + 1e-30);
      std::vector<float> y(x.size(), -7.0f);
      m.exp_scale(x.data(), n, float(mx), 0.25f, y.data());
      for (int64_t i = 0; i < n; ++i) CHECK(ulps(y[i], 0.25 * std::exp(double(x[i] - float(mx)))) <= 3);
      CHECK(y[static_cast<size_t>(n)] == -7.0f);  // past the row: untouched
      if (n > 0) {  // NaN anywhere, infinities
        x[static_cast<size_t>(n - 1) / 2] = nan;
        CHECK(std::isnan(m.max(x.data(), n)));
        x[static_cast<size_t>(n - 1) / 2] = inf;
        CHECK(m.max(x.data(), n) == inf);
        CHECK(std::isnan(m.exp_sum(x.data(), n, inf)));  // inf - inf, as std::exp in the Eigen path
        x[static_cast<size_t>(n - 1) / 2] = -inf;
        if (n == 1) CHECK(m.max(x.data(), n) == -inf);
        CHECK(m.exp_sum(x.data(), n, 0.0f) < inf);
      }
    }
    CHECK(m.max(nullptr, 0) == -inf);
    CHECK(m.exp_sum(nullptr, 0, 0.0f) == 0.0f);

    // A band of n units at offset j0 of rows of H units, with and without a previous cell state.
    for (int64_t n : {1, 9, 16, 40}) {
      const int64_t H = n + 21, j0 = 5;
      for (bool has_cp : {true, false}) {
        CAPTURE(n);
        CAPTURE(has_cp);
        const std::vector<float> pre = random_floats(static_cast<size_t>(4 * H), gen);
        const std::vector<float> cp = random_floats(static_cast<size_t>(H), gen), gy = random_floats(static_cast<size_t>(H), gen),
                                 dh0 = random_floats(static_cast<size_t>(H), gen), dc0 = random_floats(static_cast<size_t>(H), gen);
        std::vector<float> a = pre, c(static_cast<size_t>(H), 9.0f), h(static_cast<size_t>(H), 9.0f);
        m.lstm_cell(a.data() + j0, H, has_cp ? cp.data() + j0 : nullptr, c.data() + j0, h.data() + j0, n);
        std::vector<float> d(static_cast<size_t>(4 * H), 9.0f), dh = dh0, dc = dc0;
        m.lstm_cell_backward(a.data() + j0, H, c.data() + j0, has_cp ? cp.data() + j0 : nullptr, gy.data() + j0,
                             dh.data() + j0, dc.data() + j0, d.data() + j0, n);
        for (int64_t j = 0; j < H; ++j) {
          const bool in = j >= j0 && j < j0 + n;
          for (int q = 0; q < 4; ++q) {
            const size_t at = static_cast<size_t>(q * H + j);
            if (!in) {
              CHECK(a[at] == pre[at]);
              CHECK(d[at] == 9.0f);
            }
          }
          if (!in) {
            CHECK(c[j] == 9.0f);
            CHECK(h[j] == 9.0f);
            CHECK(dh[j] == dh0[j]);
            CHECK(dc[j] == dc0[j]);
            continue;
          }
          const double i = sigmoid64(pre[j]), f = sigmoid64(pre[H + j]), g = std::tanh(double(pre[2 * H + j])),
                       o = sigmoid64(pre[3 * H + j]);
          const double cpj = has_cp ? double(cp[j]) : 0.0, cc = f * cpj + i * g, tc = std::tanh(cc);
          CHECK(std::abs(a[j] - i) < 1e-6);
          CHECK(std::abs(a[H + j] - f) < 1e-6);
          CHECK(std::abs(a[2 * H + j] - g) < 1e-6);
          CHECK(std::abs(a[3 * H + j] - o) < 1e-6);
          CHECK(std::abs(c[j] - cc) < 2e-6);
          CHECK(std::abs(h[j] - o * tc) < 2e-6);
          const double vdh = double(dh0[j]) + gy[j], vdc = double(dc0[j]) + vdh * o * (1 - tc * tc);
          CHECK(std::abs(dh[j] - vdh) < 1e-5);
          CHECK(std::abs(d[3 * H + j] - vdh * tc * o * (1 - o)) < 1e-5);
          CHECK(std::abs(d[j] - vdc * g * i * (1 - i)) < 1e-5);
          CHECK(std::abs(d[2 * H + j] - vdc * i * (1 - g * g)) < 1e-5);
          CHECK(std::abs(d[H + j] - (has_cp ? vdc * cpj * f * (1 - f) : 0.0)) < 1e-5);
          CHECK(std::abs(dc[j] - vdc * f) < 1e-5);
        }
      }
    }
  }
}

// Run by tests/isa/*.sh with a bad TG_CPU_ISA and the words the error must contain in TG_EXPECT_ISA_ERROR.
TEST_CASE("a TG_CPU_ISA that is unknown or beyond this CPU is an error that says so" *
          doctest::skip(std::getenv("TG_EXPECT_ISA_ERROR") == nullptr)) {
  const char* expect = std::getenv("TG_EXPECT_ISA_ERROR");
  CHECK_THROWS_WITH_AS(tapegrad::cpu_isa(), doctest::Contains(expect), tapegrad::Error);
  CHECK_THROWS_AS(tapegrad::cpu_isa(), tapegrad::Error);  // every call, not only the first
}
