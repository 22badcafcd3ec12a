// Convolution, batch norm and pooling: forwards against plain loops, the layers' initialisation, running
// statistics and buffers, and the errors. (Gradients are in test_grad.cpp's finite-difference table.)
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "tapegrad/tapegrad.hpp"
#include "check_uniform.hpp"

namespace tg = tapegrad;
using tg::Shape;
using tg::Tensor;
using V = std::vector<double>;

namespace {

// The definition, as six loops: y[n,k,p,q] = b[k] + sum x[n,c,p s - pad + r, q s - pad + t] w[k,c,r,t].
V naive_conv(const Tensor& x, const Tensor& w, const Tensor& b, int64_t s, int64_t pad) {
  auto X = x.to_vector(), Wv = w.to_vector();
  int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), K = w.size(0), R = w.size(2), S = w.size(3);
  int64_t P = (H + 2 * pad - R) / s + 1, Q = (W + 2 * pad - S) / s + 1;
  V y(static_cast<size_t>(N * K * P * Q));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t p = 0; p < P; ++p)
        for (int64_t q = 0; q < Q; ++q) {
          double acc = b.defined() ? b.to_vector()[k] : 0.0;
          for (int64_t c = 0; c < C; ++c)
            for (int64_t r = 0; r < R; ++r)
              for (int64_t t = 0; t < S; ++t) {
                int64_t h = p * s - pad + r, ww = q * s - pad + t;
                if (h < 0 || h >= H || ww < 0 || ww >= W) continue;
                acc += X[((n * C + c) * H + h) * W + ww] * Wv[((k * C + c) * R + r) * S + t];
              }
          y[((n * K + k) * P + p) * Q + q] = acc;
        }
  return y;
}

void check_close(const V& a, const V& b, double tol = 1e-12) {
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) CHECK(a[i] == doctest::Approx(b[i]).epsilon(tol).scale(1.0));
}

}  // namespace

TEST_CASE("conv2d matches the definition (strides, padding, 1x1, bias)") {
  tg::Generator g(5);
  struct C { Shape x, w; bool bias; int64_t s, pad; };
  for (const C& c : {C{{2, 3, 7, 6}, {4, 3, 3, 3}, true, 1, 1}, C{{3, 2, 8, 8}, {5, 2, 3, 3}, false, 2, 1},
                     C{{2, 4, 5, 5}, {3, 4, 1, 1}, true, 1, 0}, C{{1, 3, 9, 7}, {2, 3, 2, 3}, true, 3, 2},
                     C{{4, 2, 4, 4}, {2, 2, 4, 4}, false, 1, 0},
                     // many samples of small planes: several samples per matrix product
                     C{{9, 3, 4, 4}, {5, 3, 3, 3}, true, 1, 1}, C{{7, 4, 3, 3}, {6, 4, 1, 1}, false, 1, 0},
                     C{{11, 2, 5, 5}, {3, 2, 3, 3}, true, 2, 1}}) {
    CAPTURE(c.x);
    CAPTURE(c.w);
    Tensor x = tg::randn(c.x, g, tg::DType::F64), w = tg::randn(c.w, g, tg::DType::F64);
    Tensor b = c.bias ? tg::randn({c.w[0]}, g, tg::DType::F64) : Tensor();
    check_close(tg::conv2d(x, w, b, c.s, c.pad).to_vector(), naive_conv(x, w, b, c.s, c.pad));
  }
}

// f32 convolutions run a kernel of their own on AVX-512 machines (f64 ones run Eigen): forward, data and
// weight gradients agree with f64, over channel counts that are not multiples of the kernel's 8-row tiles,
// pixel counts that are not multiples of its 32-column tiles, depths over one block, strides and chunks.
TEST_CASE("conv2d in f32 agrees with f64: forward and both gradients") {
  tg::Generator g(8);
  struct C { Shape x, w; int64_t s, pad; };
  for (const C& c : {C{{2, 3, 9, 7}, {5, 3, 3, 3}, 1, 1}, C{{5, 20, 6, 6}, {13, 20, 3, 3}, 1, 1},
                     C{{3, 40, 5, 5}, {17, 40, 3, 3}, 2, 1}, C{{6, 9, 4, 4}, {24, 9, 1, 1}, 1, 0},
                     C{{4, 8, 7, 7}, {16, 8, 1, 1}, 2, 0}, C{{2, 64, 4, 4}, {8, 64, 3, 3}, 1, 1},
                     // 32 channels and more: the weight gradient's transposed product (with a tile tail)
                     C{{3, 6, 5, 5}, {40, 6, 3, 3}, 1, 1}, C{{9, 16, 4, 4}, {64, 16, 3, 3}, 2, 1}}) {
    CAPTURE(c.x);
    CAPTURE(c.w);
    Tensor x64 = tg::randn(c.x, g, tg::DType::F64), w64 = tg::randn(c.w, g, tg::DType::F64);
    Tensor b64 = tg::randn({c.w[0]}, g, tg::DType::F64);
    Tensor x32 = x64.to(tg::DType::F32), w32 = w64.to(tg::DType::F32), b32 = b64.to(tg::DType::F32);
    for (Tensor* t : {&x64, &w64, &b64, &x32, &w32, &b32}) t->requires_grad_(true);
    Tensor y64 = tg::conv2d(x64, w64, b64, c.s, c.pad), y32 = tg::conv2d(x32, w32, b32, c.s, c.pad);
    Tensor gy = tg::randn(y64.shape(), g, tg::DType::F64);
    y64.backward(gy);
    y32.backward(gy.to(tg::DType::F32));
    const double scale = std::sqrt(static_cast<double>(c.w[1] * c.w[2] * c.w[3]));  // of a sum of that many terms
    auto close = [&](const Tensor& a, const Tensor& b) {
      auto va = a.to(tg::DType::F64).to_vector(), vb = b.to_vector();
      REQUIRE(va.size() == vb.size());
      for (size_t i = 0; i < va.size(); ++i) CHECK(va[i] == doctest::Approx(vb[i]).epsilon(1e-5).scale(scale));
    };
    close(y32, y64);
    close(x32.grad(), x64.grad());
    close(w32.grad(), w64.grad());
    close(b32.grad(), b64.grad());
  }
}

// f32 convolutions with a kernel larger than 1x1 and padding below its size read their column buffer from a
// framed copy of the input (src/cpu/conv.cpp, Frame) in the forward, the data gradient of stride 1 (a stride-1
// convolution itself, padding R-1-pad) and the weight gradient, where it pays (planes of 12x12 and more in the
// forward, rows of 8 pixels and more in the weight gradient). Against the f64 definition: padding 0 to kernel-1,
// rectangular planes and kernels, batch 1, chunks of two and three planes, channel counts off the tile sizes,
// depths over one block (64 x 3 x 3 with Winograd off), strides 2 and 3 on odd and even sides; then the paths
// that do not frame.
TEST_CASE("conv2d in f32 from the framed input agrees with the f64 definition: forward and both gradients") {
  tg::Generator g(21);
  const tg::ConvAlgorithm before = tg::conv_algorithm();
  tg::set_conv_algorithm(tg::ConvAlgorithm::Direct);
  struct C { Shape x, w; int64_t stride, pad; };
  for (const C& c : {C{{1, 3, 17, 15}, {5, 3, 3, 3}, 1, 1}, C{{2, 5, 16, 19}, {9, 5, 3, 3}, 1, 0},
                     C{{2, 4, 15, 17}, {7, 4, 3, 3}, 1, 2}, C{{2, 3, 16, 16}, {6, 3, 5, 5}, 1, 2},
                     C{{2, 3, 15, 14}, {4, 3, 5, 5}, 1, 4}, C{{2, 6, 18, 12}, {10, 6, 2, 3}, 1, 1},
                     C{{3, 2, 16, 16}, {4, 2, 1, 3}, 1, 0}, C{{9, 7, 12, 12}, {11, 7, 3, 3}, 1, 1},
                     C{{7, 3, 13, 13}, {5, 3, 3, 3}, 1, 0}, C{{2, 64, 16, 16}, {40, 64, 3, 3}, 1, 1},
                     // strided: the phases of each plane framed apart (odd and even sides, paddings 0 to 2)
                     C{{2, 3, 32, 32}, {5, 3, 3, 3}, 2, 1}, C{{3, 5, 31, 33}, {6, 5, 3, 3}, 2, 1},
                     C{{1, 4, 33, 30}, {9, 4, 3, 3}, 2, 0}, C{{2, 3, 35, 34}, {4, 3, 5, 5}, 2, 2},
                     C{{2, 2, 40, 41}, {3, 2, 4, 4}, 3, 1}, C{{9, 16, 16, 16}, {24, 16, 3, 3}, 2, 1},
                     C{{2, 4, 33, 33}, {5, 4, 2, 3}, 2, 1},
                     // not framed (or the weight gradient only): small planes, padding as large as the kernel,
                     // a 1-row kernel padded, 1x1 strided
                     C{{5, 3, 2, 3}, {4, 3, 3, 3}, 1, 1}, C{{4, 12, 1, 1}, {3, 12, 3, 3}, 1, 1},
                     C{{13, 7, 3, 3}, {11, 7, 3, 3}, 1, 1}, C{{2, 3, 6, 5}, {4, 3, 3, 3}, 1, 3},
                     C{{3, 2, 5, 5}, {4, 2, 1, 3}, 1, 1}, C{{2, 3, 7, 7}, {4, 3, 1, 1}, 2, 0}}) {
    CAPTURE(c.x);
    CAPTURE(c.w);
    CAPTURE(c.stride);
    CAPTURE(c.pad);
    Tensor x64 = tg::randn(c.x, g, tg::DType::F64), w64 = tg::randn(c.w, g, tg::DType::F64);
    Tensor b64 = tg::randn({c.w[0]}, g, tg::DType::F64);
    Tensor x32 = x64.to(tg::DType::F32), w32 = w64.to(tg::DType::F32), b32 = b64.to(tg::DType::F32);
    for (Tensor* t : {&x32, &w32, &b32}) t->requires_grad_(true);
    Tensor y32 = tg::conv2d(x32, w32, b32, c.stride, c.pad);
    const V y = naive_conv(x64, w64, b64, c.stride, c.pad);
    Tensor gy = tg::randn(y32.shape(), g, tg::DType::F64);
    y32.backward(gy.to(tg::DType::F32));
    // The gradients by definition: gx = sum over k, p, q of gy w at the input pixel each (p, q, r, s) reads;
    // gw[k, c, r, s] = sum over n, p, q of gy x there.
    const auto X = x64.to_vector(), W = w64.to_vector(), GY = gy.to_vector();
    const int64_t N = c.x[0], Cc = c.x[1], H = c.x[2], Wd = c.x[3], K = c.w[0], R = c.w[2], S = c.w[3];
    const int64_t P = (H + 2 * c.pad - R) / c.stride + 1, Q = (Wd + 2 * c.pad - S) / c.stride + 1;
    REQUIRE(y32.shape() == Shape{N, K, P, Q});
    V gx(X.size(), 0.0), gw(W.size(), 0.0), gb(static_cast<size_t>(K), 0.0);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k)
        for (int64_t p = 0; p < P; ++p)
          for (int64_t q = 0; q < Q; ++q) {
            const double gv = GY[static_cast<size_t>(((n * K + k) * P + p) * Q + q)];
            gb[static_cast<size_t>(k)] += gv;
            for (int64_t ci = 0; ci < Cc; ++ci)
              for (int64_t r = 0; r < R; ++r)
                for (int64_t s = 0; s < S; ++s) {
                  const int64_t h = p * c.stride - c.pad + r, w = q * c.stride - c.pad + s;
                  if (h < 0 || h >= H || w < 0 || w >= Wd) continue;
                  const size_t xi = static_cast<size_t>(((n * Cc + ci) * H + h) * Wd + w);
                  const size_t wi = static_cast<size_t>(((k * Cc + ci) * R + r) * S + s);
                  gx[xi] += gv * W[wi];
                  gw[wi] += gv * X[xi];
                }
          }
    auto close = [&](const Tensor& a, const V& b, double terms) {
      auto va = a.to(tg::DType::F64).to_vector();
      REQUIRE(va.size() == b.size());
      for (size_t i = 0; i < va.size(); ++i)
        CHECK(va[i] == doctest::Approx(b[i]).epsilon(1e-5).scale(std::sqrt(terms)));
    };
    close(y32, y, static_cast<double>(Cc * R * S));
    close(x32.grad(), gx, static_cast<double>(K * R * S));
    close(w32.grad(), gw, static_cast<double>(N * P * Q));
    close(b32.grad(), gb, static_cast<double>(N * P * Q));
  }
  tg::set_conv_algorithm(before);
}

TEST_CASE("conv2d in f32 with several threads agrees with one thread") {
  tg::Generator g(6);
  Tensor x = tg::randn({8, 16, 12, 12}, g), w = tg::randn({32, 16, 3, 3}, g);
  int before = tg::num_threads();
  tg::set_num_threads(1);
  auto one = tg::conv2d(x, w, Tensor(), 1, 1).to_vector();
  tg::set_num_threads(2);
  auto two = tg::conv2d(x, w, Tensor(), 1, 1).to_vector();
  tg::set_num_threads(before);
  check_close(one, two, 1e-6);
}

TEST_CASE("pooling matches the definition") {
  Tensor x = tg::arange(0, 2 * 25, 1, tg::DType::F64).reshape({1, 2, 5, 5});
  // max 3x3 stride 2 pad 1 on a ramp: the bottom-right of each clipped window.
  auto y = tg::max_pool2d(x, 3, 2, 1).to_vector();
  CHECK(y == V{6, 8, 9, 16, 18, 19, 21, 23, 24, 31, 33, 34, 41, 43, 44, 46, 48, 49});
  // avg 2x2: the mean of each block; with padding, zeros count (divisor 4).
  Tensor z = tg::from_vector(V{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, {1, 1, 4, 4});
  CHECK(tg::avg_pool2d(z, 2).to_vector() == V{3.5, 5.5, 11.5, 13.5});
  CHECK(tg::avg_pool2d(z, 2, 2, 1).to_vector() == V{0.25, 1.25, 1.0, 3.5, 8.5, 5.0, 3.25, 7.25, 4.0});
  CHECK(tg::global_avg_pool2d(z).to_vector() == V{8.5});
  CHECK(tg::adaptive_avg_pool2d(z, 2, 1).to_vector() == V{4.5, 12.5});
  CHECK(tg::max_pool2d(z, 1, 2).to_vector() == V{1, 3, 9, 11});
  CHECK(tg::max_pool2d(z, 2).shape() == Shape{1, 1, 2, 2});
}

TEST_CASE("batch_norm: batch statistics in training, running ones in evaluation") {
  // Channel 0 holds 1..4, channel 1 holds 2, 4, 6, 8 (two samples, two values each).
  Tensor x = tg::from_vector(V{1, 2, 2, 4, 3, 4, 6, 8}, {2, 2, 2, 1});
  Tensor rm = tg::zeros({2}, tg::DType::F64), rv = tg::ones({2}, tg::DType::F64);
  Tensor w = tg::from_vector(V{2, 1}, {2}), b = tg::from_vector(V{0.5, 0}, {2});
  auto y = tg::batch_norm(x, rm, rv, w, b, true, 0.1, 1e-5).to_vector();
  double inv0 = 1 / std::sqrt(1.25 + 1e-5);  // biased variance of 1..4
  CHECK(y[0] == doctest::Approx(2 * (1 - 2.5) * inv0 + 0.5));
  CHECK(y[5] == doctest::Approx(2 * (4 - 2.5) * inv0 + 0.5));
  // running = 0.9 running + 0.1 batch, with the unbiased variance (5/3 and 20/3).
  check_close(rm.to_vector(), V{0.25, 0.5});
  check_close(rv.to_vector(), V{0.9 + 0.1 * 5.0 / 3.0, 0.9 + 0.1 * 20.0 / 3.0});
  auto e = tg::batch_norm(x, rm, rv, w, b, false, 0.1, 1e-5).to_vector();
  CHECK(e[0] == doctest::Approx(2 * (1 - 0.25) / std::sqrt(rv.to_vector()[0] + 1e-5) + 0.5));
  check_close(rm.to_vector(), V{0.25, 0.5});  // evaluation leaves the running statistics alone
}


namespace {

// batch_norm_relu fused, or its three ops (batch_norm, + residual, relu), from the same inputs: the output,
// the gradients of x, weight, bias and residual, and the running statistics after the call.
std::vector<V> bn_relu_run(bool fused, bool training, bool with_residual, tg::DType d, const V& ties = {}) {
  tg::Generator g(11);
  Tensor x = tg::randn({4, 3, 5, 5}, g, d), w = tg::add(tg::rand({3}, g, d), 0.5), b = tg::randn({3}, g, d);
  Tensor r = tg::randn({4, 3, 5, 5}, g, d), gy = tg::randn({4, 3, 5, 5}, g, d);
  Tensor rm = tg::mul(tg::randn({3}, g, d), 0.1), rv = tg::add(tg::rand({3}, g, d), 0.5);
  if (!ties.empty()) {  // channel 0 constant with bias 0 (its bn output is 0 exactly), r = -bn(x) on every third element
    x = tg::from_vector(ties, x.shape()).to(d);
    auto bv = b.to_vector();
    b = tg::from_vector(V{0.0, bv[1], bv[2]}, {3}).to(d);
    Tensor rm2 = rm.clone(), rv2 = rv.clone();
    auto z = tg::batch_norm(x, rm2, rv2, w, b, training).to_vector();
    auto rv_ = r.to_vector();
    for (size_t i = 0; i < rv_.size(); i += 3) rv_[i] = -z[i];
    r = tg::from_vector(rv_, x.shape()).to(d);
  }
  for (Tensor* t : {&x, &w, &b, &r}) t->requires_grad_();
  Tensor res = with_residual ? r : Tensor();
  Tensor y = fused ? tg::batch_norm_relu(x, rm, rv, w, b, training, 0.1, 1e-5, res)
                   : tg::relu(with_residual ? tg::batch_norm(x, rm, rv, w, b, training) + r
                                            : tg::batch_norm(x, rm, rv, w, b, training));
  y.backward(gy);
  return {y.to_vector(), x.grad().to_vector(), w.grad().to_vector(), b.grad().to_vector(),
          with_residual ? r.grad().to_vector() : V{}, rm.to_vector(), rv.to_vector()};
}

}  // namespace

TEST_CASE("batch_norm_relu is batch_norm, add, relu in one op: output, gradients, running statistics") {
  const char* what[] = {"output", "grad x", "grad weight", "grad bias", "grad residual", "running_mean", "running_var"};
  for (bool training : {true, false})
    for (bool with_residual : {false, true}) {
      CAPTURE(training);
      CAPTURE(with_residual);
      // f64: the same bits forward (the same arithmetic); the gradients' sums to 1e-12 (the vectorised loops
      // may split them into lanes differently: the fused loop reads one array more)
      auto a = bn_relu_run(true, training, with_residual, tg::DType::F64);
      auto b = bn_relu_run(false, training, with_residual, tg::DType::F64);
      for (size_t k = 0; k < a.size(); ++k) {
        CAPTURE(what[k]);
        if (k == 0 || k >= 4) CHECK(a[k] == b[k]);  // output, grad residual, running stats
        else check_close(a[k], b[k], 1e-12);
      }
      CHECK(a[0] != V(a[0].size(), 0.0));
      // f32: to rounding
      a = bn_relu_run(true, training, with_residual, tg::DType::F32);
      b = bn_relu_run(false, training, with_residual, tg::DType::F32);
      for (size_t k = 0; k < a.size(); ++k) {
        CAPTURE(what[k]);
        check_close(a[k], b[k], 1e-5);
      }
    }
}

TEST_CASE("batch_norm_relu at ties (bn(x) + residual = 0 exactly): relu's gradient 0 there, as unfused") {
  V x(4 * 3 * 25);
  tg::Generator g(5);
  auto noise = tg::randn({static_cast<int64_t>(x.size())}, g, tg::DType::F64).to_vector();
  for (size_t i = 0; i < x.size(); ++i) x[i] = (i / 25) % 3 == 0 ? 0.5 : noise[i];  // channel 0: all 0.5
  for (bool training : {true, false})
    for (bool with_residual : {false, true}) {
      CAPTURE(training);
      CAPTURE(with_residual);
      auto a = bn_relu_run(true, training, with_residual, tg::DType::F64, x);
      auto b = bn_relu_run(false, training, with_residual, tg::DType::F64, x);
      for (size_t k = 0; k < a.size(); ++k) {
        if (k == 0 || k >= 4) CHECK(a[k] == b[k]);  // output, grad residual, running stats
        else check_close(a[k], b[k], 1e-12);
      }
      int ties = 0;
      for (size_t i = 0; i < x.size(); ++i) {
        bool tie = with_residual ? i % 3 == 0 : (training && (i / 25) % 3 == 0);
        if (!tie) continue;
        ++ties;
        CHECK(a[0][i] == 0.0);
        if (with_residual) CHECK(a[4][i] == 0.0);  // the residual's gradient is masked at 0 too
      }
      CHECK((ties > 0) == (with_residual || training));
      if (training && !with_residual) {  // the constant channel is at 0 everywhere: nothing flows back
        CHECK(a[2][0] == 0.0);
        CHECK(a[3][0] == 0.0);
        for (size_t i = 0; i < x.size(); ++i)
          if ((i / 25) % 3 == 0) CHECK(a[1][i] == 0.0);
      }
    }
}

TEST_CASE("BatchNorm2d::forward_relu: counts the batch, moves the running statistics, honours the hook") {
  tg::Generator g(3);
  Tensor x = tg::randn({2, 4, 3, 3}, g), r = tg::randn({2, 4, 3, 3}, g);
  tg::nn::BatchNorm2d a(4), b(4);
  Tensor ya = a.forward_relu(x, r);
  Tensor yb = tg::relu(b(x) + r);
  CHECK(a.num_batches_tracked.item() == 1);
  check_close(ya.to_vector(), yb.to_vector(), 1e-6);
  check_close(a.running_mean.to_vector(), b.running_mean.to_vector(), 1e-6);
  check_close(a.running_var.to_vector(), b.running_var.to_vector(), 1e-6);
  a.eval();
  b.eval();
  check_close(a.forward_relu(x).to_vector(), tg::relu(b(x)).to_vector(), 1e-6);
  CHECK(a.num_batches_tracked.item() == 1);
  // A training_forward hook (DataParallel's synchronised statistics) replaces the fused op.
  a.train();
  int calls = 0;
  a.training_forward = [&](tg::nn::BatchNorm2d& m, const Tensor& in) {
    ++calls;
    return tg::batch_norm(in, m.running_mean, m.running_var, m.weight, m.bias, true, m.momentum, m.eps);
  };
  a.forward_relu(x, r);
  CHECK(calls == 1);
  CHECK(a.num_batches_tracked.item() == 2);
  CHECK_THROWS_WITH_AS(a.forward_relu(x, tg::randn({2, 4, 3, 1})),
                       doctest::Contains("BatchNorm2d(4)::forward_relu: residual [2, 4, 3, 1] does not fit input [2, 4, 3, 3]"),
                       tg::Error);
}

TEST_CASE("batch_norm_relu: a residual of another shape, dtype or device is an error") {
  Tensor x = tg::randn({2, 3, 4, 4});
  CHECK_THROWS_WITH_AS(tg::batch_norm_relu(x, Tensor(), Tensor(), Tensor(), Tensor(), true, 0.1, 1e-5, tg::randn({1, 3, 4, 4})),
                       doctest::Contains("batch_norm_relu: residual [1, 3, 4, 4] does not fit input [2, 3, 4, 4]"),
                       tg::Error);
  CHECK_THROWS_AS(tg::batch_norm_relu(x, Tensor(), Tensor(), Tensor(), Tensor(), true, 0.1, 1e-5,
                                      tg::randn({2, 3, 4, 4}, tg::DType::F64)),
                  tg::Error);
  CHECK_THROWS_AS(tg::batch_norm_relu(x, Tensor(), Tensor(), Tensor(), Tensor(), true, 0.1, 1e-5,
                                      tg::randn({2, 3, 4, 4}).to(tg::Device::Test)),
                  tg::Error);
  CHECK_THROWS_WITH_AS(tg::batch_norm_relu(x, Tensor(), Tensor(), tg::ones({4}), Tensor(), true),
                       doctest::Contains("batch_norm_relu: weight [4] does not fit input [2, 3, 4, 4]"), tg::Error);
  CHECK_THROWS_WITH_AS(tg::batch_norm_relu(x, Tensor(), Tensor(), Tensor(), Tensor(), false),
                       doctest::Contains("batch_norm_relu: evaluation needs running_mean"), tg::Error);
}

TEST_CASE("Conv2d: PyTorch's initialisation bounds, names, forward shape") {
  tg::Generator g(1);
  tg::nn::Conv2d conv(3, 8, 3, 2, 1, true, g);
  double bound = 1 / std::sqrt(27.0);
  check_uniform(conv.weight.to_vector(), bound, "weight");
  tg::nn::Conv2d wide(3, 200, 3, 1, 0, true, g);  // enough biases to see both ends of their range
  check_uniform(wide.bias.to_vector(), bound, "bias");
  auto names = conv.named_parameters();
  REQUIRE(names.size() == 2);
  CHECK(names[0].first == "weight");
  CHECK(conv.weight.shape() == Shape{8, 3, 3, 3});
  CHECK(conv(tg::randn({2, 3, 9, 9})).shape() == Shape{2, 8, 5, 5});
  tg::nn::Conv2d nobias(3, 8, 1, 1, 0, false, g);
  CHECK(nobias.num_parameters() == 24);
}

TEST_CASE("BatchNorm2d: parameters, PyTorch's buffers, running statistics, eval") {
  tg::nn::BatchNorm2d bn(3);
  auto sd = bn.state_dict();
  for (const char* k : {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}) CHECK(sd.count(k));
  CHECK(bn.num_parameters() == 6);
  CHECK(bn.num_batches_tracked.dtype() == tg::DType::I64);
  tg::Generator g(2);
  Tensor x = tg::add(tg::mul(tg::randn({4, 3, 5, 5}, g), 2.0), 1.0);
  Tensor y = bn(x);
  CHECK(bn.num_batches_tracked.item() == 1);
  auto m = tg::mean(y, {0, 2, 3}).to_vector();
  for (double v : m) CHECK(v == doctest::Approx(0).scale(1.0).epsilon(1e-5));
  // running = 0.9 running + 0.1 batch statistic (unbiased variance over the 100 values of each channel)
  auto xv = x.to_vector(), rm = bn.running_mean.to_vector(), rv = bn.running_var.to_vector();
  for (int c = 0; c < 3; ++c) {
    double s = 0, ss = 0;
    for (int n = 0; n < 4; ++n)
      for (int k = 0; k < 25; ++k) s += xv[(n * 3 + c) * 25 + k];
    double mu = s / 100;
    for (int n = 0; n < 4; ++n)
      for (int k = 0; k < 25; ++k) ss += (xv[(n * 3 + c) * 25 + k] - mu) * (xv[(n * 3 + c) * 25 + k] - mu);
    CHECK(rm[c] == doctest::Approx(0.1 * mu).epsilon(1e-5));
    CHECK(rv[c] == doctest::Approx(0.9 + 0.1 * ss / 99).epsilon(1e-5));
  }
  bn.eval();
  Tensor e = bn(x);
  CHECK(bn.num_batches_tracked.item() == 1);
  CHECK(e.shape() == x.shape());
  bn.to(tg::DType::F64);
  CHECK(bn.running_var.dtype() == tg::DType::F64);
  CHECK(bn.num_batches_tracked.dtype() == tg::DType::I64);
}

TEST_CASE("pooling and flatten layers") {
  Tensor x = tg::randn({2, 3, 8, 8});
  CHECK(tg::nn::MaxPool2d(2)(x).shape() == Shape{2, 3, 4, 4});
  CHECK(tg::nn::AvgPool2d(3, 1, 1)(x).shape() == Shape{2, 3, 8, 8});
  CHECK(tg::nn::AdaptiveAvgPool2d()(x).shape() == Shape{2, 3, 1, 1});
  CHECK(tg::nn::Flatten()(x).shape() == Shape{2, 192});
}

TEST_CASE("channel, spatial and kernel mismatches are errors that show the shapes") {
  Tensor x = tg::randn({2, 3, 5, 5});
  CHECK_THROWS_WITH_AS(tg::conv2d(x, tg::randn({4, 2, 3, 3})),
                       doctest::Contains("conv2d: input [2, 3, 5, 5] does not fit weight [4, 2, 3, 3]"), tg::Error);
  CHECK_THROWS_WITH_AS(tg::conv2d(x, tg::randn({4, 3, 7, 7})),
                       doctest::Contains("kernel 7x7 (weight [4, 3, 7, 7]) does not fit input [2, 3, 5, 5]"),
                       tg::Error);
  CHECK_THROWS_WITH_AS(tg::conv2d(tg::randn({3, 5, 5}), tg::randn({4, 3, 3, 3})), doctest::Contains("[3, 5, 5]"),
                       tg::Error);
  CHECK_THROWS_WITH_AS(tg::conv2d(x, tg::randn({4, 3, 3, 3}), tg::randn({3})),
                       doctest::Contains("bias [3] does not fit weight [4, 3, 3, 3]"), tg::Error);
  CHECK_THROWS_WITH_AS(tg::nn::Conv2d(4, 8, 3)(x), doctest::Contains("input [2, 3, 5, 5] does not have 4 channels"),
                       tg::Error);
  CHECK_THROWS_WITH_AS(tg::nn::BatchNorm2d(4)(x), doctest::Contains("BatchNorm2d(4): input [2, 3, 5, 5]"), tg::Error);
  CHECK_THROWS_WITH_AS(tg::batch_norm(x, Tensor(), Tensor(), tg::ones({4}), Tensor(), true),
                       doctest::Contains("weight [4] does not fit input [2, 3, 5, 5]"), tg::Error);
  CHECK_THROWS_WITH_AS(tg::batch_norm(tg::randn({1, 3, 1, 1}), Tensor(), Tensor(), Tensor(), Tensor(), true),
                       doctest::Contains("more than 1 value per channel"), tg::Error);
  CHECK_THROWS_WITH_AS(tg::max_pool2d(x, 7), doctest::Contains("max_pool2d: kernel 7x7 does not fit input [2, 3, 5, 5]"),
                       tg::Error);
  CHECK_THROWS_WITH_AS(tg::avg_pool2d(x, 2, 2, 2), doctest::Contains("at most half of kernel"), tg::Error);
  CHECK_THROWS_WITH_AS(tg::adaptive_avg_pool2d(x, 2, 2), doctest::Contains("must divide the input plane of [2, 3, 5, 5]"),
                       tg::Error);
}
