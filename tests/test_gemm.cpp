// The f32 matrix products (the micro-kernel of the CPU's level, Eigen at the baseline level) against the same
// products in f64, through the ops that use every form of the kernel: matmul (A B), linear (A B^T + bias), their
// gradients (A B^T and A^T B), batched products; sizes around the kernel's tiles (AVX-512: 10 x 32, AVX2: 6 x 16)
// and blocks (384 deep, 192 rows), large enough for the threaded split. With a micro-kernel, f32 results do not
// depend on the thread count (bands of rows or columns, never of the depth). tests/isa/test_levels.sh runs this
// suite at every level.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <string>

#include "tapegrad/tapegrad.hpp"

namespace tg = tapegrad;
using tg::Shape;
using tg::Tensor;

namespace {

void check_close(const Tensor& f32, const Tensor& f64, int64_t depth, const std::string& what) {
  CAPTURE(what);
  REQUIRE(f32.shape() == f64.shape());
  const auto a = f32.to_vector<double>(), b = f64.to_vector<double>();
  const double tol = 2e-6 * std::sqrt(static_cast<double>(depth));  // inputs ~N(0,1): sums of `depth` products
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]) / (std::abs(b[i]) + std::sqrt(double(depth))));
  CHECK(worst < tol);
}

struct Products {
  Tensor y, da, db, lin, dx, dw, dbias;
};

// y = a b, and linear(a, w, bias) = a w^T + bias, with the gradients of sum(y r) and sum(lin s).
Products products(const Tensor& a0, const Tensor& b0, const Tensor& w0, const Tensor& bias0, const Tensor& r,
                  const Tensor& s, tg::DType d) {
  Tensor a = a0.to(d).detach().requires_grad_(), b = b0.to(d).detach().requires_grad_(),
         w = w0.to(d).detach().requires_grad_(),
         bias = bias0.to(d).detach().requires_grad_();
  Products p;
  p.y = tg::matmul(a, b);
  p.lin = tg::linear(a, w, bias);
  (tg::sum(p.y * r.to(d)) + tg::sum(p.lin * s.to(d))).backward();
  p.da = a.grad();  // r b^T + s w: the B^T and plain forms
  p.db = b.grad();  // a^T r: the A^T form
  p.dw = w.grad();
  p.dbias = bias.grad();
  p.y = p.y.detach(), p.lin = p.lin.detach();
  return p;
}

}  // namespace

TEST_CASE("f32 products equal f64 ones around the kernel's tiles and blocks, for every transpose") {
  const int threads = tg::num_threads();
  const std::vector<std::array<int64_t, 3>> shapes = {{1, 1, 1},    {3, 5, 2},    {10, 32, 16},  {11, 33, 17},
                                                      {20, 70, 385}, {193, 65, 7}, {45, 40, 770}, {70, 100, 64},
                                                      {6, 16, 9},    {7, 17, 257}, {199, 48, 300}};
  for (auto [m, n, k] : shapes) {
    CAPTURE(m);
    CAPTURE(n);
    CAPTURE(k);
    tg::Generator g(static_cast<uint64_t>(m * 1000 + n * 10 + k));
    Tensor a = tg::randn({m, k}, g, tg::DType::F64), b = tg::randn({k, n}, g, tg::DType::F64);
    Tensor w = tg::randn({n, k}, g, tg::DType::F64), bias = tg::randn({n}, g, tg::DType::F64);
    Tensor r = tg::randn({m, n}, g, tg::DType::F64), s = tg::randn({m, n}, g, tg::DType::F64);
    const Products ref = products(a, b, w, bias, r, s, tg::DType::F64);
    Products one;
    for (int nt : {1, 2}) {
      tg::set_num_threads(nt);
      const Products p = products(a, b, w, bias, r, s, tg::DType::F32);
      check_close(p.y, ref.y, k, "a b");
      check_close(p.lin, ref.lin, k, "a w^T + bias");
      check_close(p.da, ref.da, 2 * n, "r b^T + s w");
      check_close(p.db, ref.db, m, "a^T r");
      check_close(p.dw, ref.dw, m, "s^T a");
      check_close(p.dbias, ref.dbias, m, "column sums of s");
      if (nt == 1) {
        one = p;
      } else if (std::string(tg::cpu_isa()) != "baseline") {  // bands of rows or columns: the same sums in the
        // same order (Eigen, at the baseline level, sums a column in an order that depends on where its band starts)
        CHECK(p.y.to_vector() == one.y.to_vector());
        CHECK(p.lin.to_vector() == one.lin.to_vector());
        CHECK(p.db.to_vector() == one.db.to_vector());
      }
    }
  }
  tg::set_num_threads(threads);
}

TEST_CASE("batched f32 products equal f64 ones") {
  tg::Generator g(9);
  Tensor a = tg::randn({6, 17, 40}, g, tg::DType::F64), b = tg::randn({6, 40, 35}, g, tg::DType::F64);
  check_close(tg::matmul(a.to(tg::DType::F32), b.to(tg::DType::F32)), tg::matmul(a, b), 40, "batched");
  Tensor shared = tg::randn({40, 35}, g, tg::DType::F64);
  check_close(tg::matmul(a.to(tg::DType::F32), shared.to(tg::DType::F32)), tg::matmul(a, shared), 40, "shared B");
}
