// Winograd's F(4x4, 3x3) for f32 3x3 stride-1 convolutions (src/cpu/winograd.cpp): its error against the f64
// definition beside the direct f32 products' on ResNet-34's shapes, and forward and data gradient on odd shapes.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "tapegrad/tapegrad.hpp"

namespace tg = tapegrad;
using tg::Shape;
using tg::Tensor;

namespace {

// Sets the convolution algorithm for a scope.
struct AlgorithmGuard {
  tg::ConvAlgorithm before = tg::conv_algorithm();
  explicit AlgorithmGuard(tg::ConvAlgorithm a) { tg::set_conv_algorithm(a); }
  ~AlgorithmGuard() { tg::set_conv_algorithm(before); }
};

// Winograd runs at the levels with a micro-kernel (else every algorithm is the direct one).
bool has_winograd() { return std::string(tg::cpu_isa()) != "baseline"; }

// max |a - ref| / rms(ref): the largest error in units of the outputs' typical size.
double max_error(const Tensor& a, const Tensor& ref) {
  auto va = a.to(tg::DType::F64).to_vector(), vr = ref.to_vector();
  REQUIRE(va.size() == vr.size());
  double worst = 0, sq = 0;
  for (size_t i = 0; i < va.size(); ++i) {
    worst = std::max(worst, std::abs(va[i] - vr[i]));
    sq += vr[i] * vr[i];
  }
  return worst / std::sqrt(sq / static_cast<double>(vr.size()));
}

// A convolution's output and its data, weight and bias gradients (for gy) with the given algorithm, in x's dtype.
struct Run {
  Tensor y, gx, gw, gb;
};
Run run(tg::ConvAlgorithm a, const Tensor& x, const Tensor& w, const Tensor& b, int64_t pad, const Tensor& gy) {
  AlgorithmGuard guard(a);
  Tensor xi = x.detach().requires_grad_(true), wi = w.detach().requires_grad_(true);
  Tensor bi = b.defined() ? b.detach().requires_grad_(true) : Tensor();
  Tensor y = tg::conv2d(xi, wi, bi, 1, pad);
  y.backward(gy.to(x.dtype()));
  return {y.detach(), xi.grad(), wi.grad(), bi.defined() ? bi.grad() : Tensor()};
}

}  // namespace

// Measured (AVX-512 and AVX2, these shapes, batch 2, N(0, 1) data, weights scaled to keep outputs O(1)): max error
// / rms of the f64 outputs 2.0e-5 to 2.4e-5 forward and 3.0e-5 to 4.5e-5 for the data gradient, against 0.8e-6
// to 1.5e-6 for the direct f32 products (F(4x4, 3x3)'s transforms multiply by up to 8 and 5: about 20-30x the
// direct error, as reported for it elsewhere). The bound 2e-4 leaves 4x; a wrong transform matrix gives errors
// of the order of 1.
// The weight gradient sums over every tile of the batch (thousands of terms where forward sums 9 C): its error is
// measured the same way (1.6e-5 to 3.2e-5 measured); a wrong coefficient in its adjoint transforms (A gY A^T,
// G^T dU G) gives errors of the order of 1 too.
TEST_CASE("winograd f32 error against f64 on (CIFAR) ResNet-34's 3x3 stride-1 shapes, beside the direct f32") {
  tg::Generator g(16);
  struct C { int64_t c, side; };
  for (const C& c : {C{64, 32}, C{128, 16}, C{256, 8}, C{512, 4}}) {
    CAPTURE(c.c);
    Tensor x = tg::randn({2, c.c, c.side, c.side}, g, tg::DType::F64);
    Tensor w = tg::randn({c.c, c.c, 3, 3}, g, tg::DType::F64) * (1.0 / std::sqrt(9.0 * c.c));
    Tensor b = tg::randn({c.c}, g, tg::DType::F64);
    Tensor gy = tg::randn({2, c.c, c.side, c.side}, g, tg::DType::F64);
    const Run r64 = run(tg::ConvAlgorithm::Direct, x, w, b, 1, gy);
    Tensor x32 = x.to(tg::DType::F32), w32 = w.to(tg::DType::F32), b32 = b.to(tg::DType::F32);
    const Run d = run(tg::ConvAlgorithm::Direct, x32, w32, b32, 1, gy);
    const Run wi = run(tg::ConvAlgorithm::Winograd, x32, w32, b32, 1, gy);
    const double fd = max_error(d.y, r64.y), fw = max_error(wi.y, r64.y), bd = max_error(d.gx, r64.gx),
                 bw = max_error(wi.gx, r64.gx), ed = max_error(d.gw, r64.gw), ew = max_error(wi.gw, r64.gw);
    std::printf("  %4lldx%-4lld %3lldpx: max error / rms, direct / winograd: forward %.1e / %.1e, data gradient "
                "%.1e / %.1e, weight gradient %.1e / %.1e\n",
                static_cast<long long>(c.c), static_cast<long long>(c.c), static_cast<long long>(c.side), fd, fw, bd,
                bw, ed, ew);
    CHECK(fw < 2e-4);
    CHECK(bw < 2e-4);
    CHECK(ew < 2e-4);
    CHECK(fd < 2e-5);
    CHECK(bd < 2e-5);
    CHECK(ed < 2e-5);
    if (has_winograd()) {  // Winograd did run
      CHECK(wi.y.to_vector() != d.y.to_vector());
      CHECK(wi.gx.to_vector() != d.gx.to_vector());
      CHECK(wi.gw.to_vector() != d.gw.to_vector());
    }
  }
}

// Odd sizes: planes that are not multiples of the 4x4 tiles (and smaller than one), batch 1, channel counts
// that are not multiples of the lanes or the kernel's rows, padding 0 to 2, with and without bias; and more tiles
// than one chunk of the weight gradient holds (1000 input channels: 64 tiles a chunk; 80 tiles) so that dU
// accumulates over chunks.
TEST_CASE("winograd f32 forward, data and weight gradients on odd shapes agree with f64") {
  tg::Generator g(17);
  struct C { Shape x; int64_t k, pad; bool bias; };
  for (const C& c : {C{{1, 3, 5, 7}, 5, 1, true}, C{{2, 17, 9, 11}, 19, 1, false}, C{{1, 8, 13, 6}, 33, 0, true},
                     C{{3, 5, 6, 6}, 7, 2, true}, C{{2, 4, 1, 1}, 3, 1, false}, C{{1, 1, 3, 3}, 1, 0, true},
                     C{{5, 24, 7, 10}, 40, 1, true}, C{{5, 1000, 15, 15}, 17, 1, false}}) {
    CAPTURE(c.x);
    CAPTURE(c.k);
    CAPTURE(c.pad);
    Tensor x = tg::randn(c.x, g, tg::DType::F64), w = tg::randn({c.k, c.x[1], 3, 3}, g, tg::DType::F64);
    Tensor b = c.bias ? tg::randn({c.k}, g, tg::DType::F64) : Tensor();
    const int64_t p = c.x[2] + 2 * c.pad - 2, q = c.x[3] + 2 * c.pad - 2;
    Tensor gy = tg::randn({c.x[0], c.k, p, q}, g, tg::DType::F64);
    const Run r64 = run(tg::ConvAlgorithm::Direct, x, w, b, c.pad, gy);
    const Run r32 = run(tg::ConvAlgorithm::Winograd, x.to(tg::DType::F32), w.to(tg::DType::F32),
                        c.bias ? b.to(tg::DType::F32) : Tensor(), c.pad, gy);
    CHECK(max_error(r32.y, r64.y) < 2e-4);
    CHECK(max_error(r32.gx, r64.gx) < 2e-4);
    CHECK(max_error(r32.gw, r64.gw) < 2e-4);
    if (c.bias) CHECK(max_error(r32.gb, r64.gb) < 1e-5);
  }
}

// Each tile's products run the same depth blocks whatever the chunks: results do not depend on the thread count.
TEST_CASE("winograd f32 with two threads equals one thread") {
  if (!has_winograd()) return;  // the baseline's direct convolution (Eigen) makes no such promise
  AlgorithmGuard guard(tg::ConvAlgorithm::Winograd);
  tg::Generator g(18);
  Tensor x = tg::randn({3, 64, 4, 4}, g), w = tg::randn({64, 64, 3, 3}, g), gy = tg::randn({3, 64, 4, 4}, g);
  const int before = tg::num_threads();
  auto results = [&] {  // the output and the weight gradient
    Tensor wi = w.detach().requires_grad_(true), y = tg::conv2d(x, wi, Tensor(), 1, 1);
    y.backward(gy);
    return std::make_pair(y.to_vector(), wi.grad().to_vector());
  };
  tg::set_num_threads(1);
  const auto one = results();
  tg::set_num_threads(2);
  const auto two = results();
  tg::set_num_threads(before);
  CHECK(one.first == two.first);
  CHECK(one.second == two.second);
}

// Run by tests/meson.build with TG_CONV=fast: the first conv_algorithm() and every later one throw, naming it.
TEST_CASE("an unknown TG_CONV is an error that names it" * doctest::skip(std::getenv("TG_EXPECT_CONV_ERROR") == nullptr)) {
  CHECK_THROWS_WITH_AS(tg::conv_algorithm(), doctest::Contains("TG_CONV=fast: unknown convolution algorithm"),
                       tg::Error);
  CHECK_THROWS_AS(tg::conv_algorithm(), tg::Error);
  tg::set_conv_algorithm(tg::ConvAlgorithm::Direct);  // a choice in code replaces the variable
  CHECK(tg::conv_algorithm() == tg::ConvAlgorithm::Direct);
}

TEST_CASE("cpu_conv_flops counts the direct products, or Winograd's 36 per 4x4 tile where it runs") {
  // 3x3 stride 1 on 10x10 planes (3x3 tiles of outputs), 64 -> 96 channels, batch 2.
  const tg::Shape x{2, 64, 10, 10}, w{96, 64, 3, 3};
  const double direct = 2.0 * 96 * 64 * 9 * 2 * 10 * 10, winograd = 2.0 * 96 * 64 * 36 * 2 * 3 * 3;
  {
    AlgorithmGuard g(tg::ConvAlgorithm::Direct);
    const tg::ConvFlops f = tg::cpu_conv_flops(x, w, 1, 1);
    CHECK(f.forward == direct);
    CHECK(f.data == direct);
    CHECK(f.weight == direct);
  }
  {
    AlgorithmGuard g(tg::ConvAlgorithm::Winograd);
    const tg::ConvFlops f = tg::cpu_conv_flops(x, w, 1, 1);
    const double expected = has_winograd() ? winograd : direct;
    CHECK(f.forward == expected);
    CHECK(f.data == expected);  // the data gradient: 96 -> 64 channels on the same 10x10 planes
    CHECK(f.weight == expected);
    // Stride 2 and 1x1 stay direct: 2 K C R S per output.
    const tg::ConvFlops s2 = tg::cpu_conv_flops(x, w, 2, 1);
    CHECK(s2.forward == 2.0 * 96 * 64 * 9 * 2 * 5 * 5);
    const tg::ConvFlops one = tg::cpu_conv_flops(x, {96, 64, 1, 1}, 1, 0);
    CHECK(one.weight == 2.0 * 96 * 64 * 2 * 10 * 10);
  }
  CHECK_THROWS_WITH_AS(tg::cpu_conv_flops(x, {96, 32, 3, 3}, 1, 1),
                       doctest::Contains("cpu_conv_flops: input [2, 64, 10, 10] and weight [96, 32, 3, 3]"),
                       tg::Error);
}
