// Tensor basics: factories, views, values of ops (including the multithreaded paths), and errors.
#include <doctest/doctest.h>

#include <omp.h>

#include <cmath>
#include <numeric>

#include "tapegrad/tapegrad.hpp"

namespace tg = tapegrad;
using tg::DType;
using tg::Shape;
using tg::Tensor;
using V = std::vector<double>;

TEST_CASE("factories") {
  CHECK(tg::zeros({2, 3}).to_vector() == V(6, 0.0));
  CHECK(tg::ones({2}, DType::F64).to_vector() == V{1, 1});
  CHECK(tg::full({3}, 2.5).to_vector() == V{2.5, 2.5, 2.5});
  CHECK(tg::arange(4).to_vector() == V{0, 1, 2, 3});
  CHECK(tg::arange(1.0, 2.0, 0.25, DType::F64).to_vector() == V{1, 1.25, 1.5, 1.75});
  Tensor s = tg::scalar(3.0);
  CHECK(s.dim() == 0);
  CHECK(s.item() == 3.0);
  Tensor v = tg::from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(v.shape() == Shape{2, 3});
  CHECK(v.dtype() == DType::F32);
  CHECK(v.size(-1) == 3);
  CHECK(v.to_vector<float>()[5] == 6.0f);
  CHECK_THROWS_WITH_AS(tg::from_vector(std::vector<double>{1, 2}, {3}), doctest::Contains("[3]"), tg::Error);
  CHECK_THROWS_WITH_AS(v.data<double>(), doctest::Contains("f32"), tg::Error);
  CHECK_THROWS_AS(v.item(), tg::Error);
  CHECK(tg::zeros({0, 3}).numel() == 0);
}

TEST_CASE("seeded generators repeat") {
  tg::Generator a(5), b(5), c(6);
  auto x = tg::randn({100}, a).to_vector(), y = tg::randn({100}, b).to_vector(), z = tg::randn({100}, c).to_vector();
  CHECK(x == y);
  CHECK(x != z);
  double m = std::accumulate(x.begin(), x.end(), 0.0) / 100;
  CHECK(std::abs(m) < 0.35);
  auto u = tg::rand({1000}, a).to_vector();
  for (double e : u) REQUIRE((e >= 0 && e < 1));
  auto r = tg::randint(7, {1000}, a).to_vector<int64_t>();
  for (auto e : r) REQUIRE((e >= 0 && e < 7));
  std::string st = a.state();
  double n1 = a.normal();
  a.set_state(st);
  CHECK(a.normal() == n1);
}

TEST_CASE("reshape shares storage; transpose, permute, slice, concat copy the right values") {
  Tensor x = tg::arange(6, DType::F64);
  Tensor y = x.reshape({2, 3});
  CHECK(y.raw_data() == x.raw_data());
  CHECK(x.reshape({-1, 2}).shape() == Shape{3, 2});
  CHECK_THROWS_WITH_AS(x.reshape({4, 2}), doctest::Contains("[4, 2]"), tg::Error);
  CHECK(y.t().to_vector() == V{0, 3, 1, 4, 2, 5});
  Tensor z = tg::arange(24, DType::F64).reshape({2, 3, 4});
  Tensor p = z.permute({2, 0, 1});
  CHECK(p.shape() == Shape{4, 2, 3});
  CHECK(p.to_vector()[1] == 4);   // p[0,0,1] = z[0,1,0]
  CHECK(p.to_vector()[3] == 12);  // p[0,1,0] = z[1,0,0]
  CHECK(y.slice(1, 1, 3).to_vector() == V{1, 2, 4, 5});
  CHECK(y.slice(0, 1, 2).to_vector() == V{3, 4, 5});
  CHECK_THROWS_WITH_AS(y.slice(1, 2, 5), doctest::Contains("out of bounds"), tg::Error);
  Tensor c = tg::concat({y, tg::full({2, 1}, 9.0, DType::F64)}, 1);
  CHECK(c.to_vector() == V{0, 1, 2, 9, 3, 4, 5, 9});
  CHECK_THROWS_WITH_AS(tg::concat({y, tg::zeros({3, 1}, DType::F64)}, 1), doctest::Contains("[3, 1]"), tg::Error);
  CHECK(z.flatten(0, 1).shape() == Shape{6, 4});
  CHECK(x.to(DType::F32).dtype() == DType::F32);
  Tensor lab = tg::from_vector(std::vector<int64_t>{3, 1, 2}, {3});
  CHECK(lab.slice(0, 1, 3).to_vector<int64_t>() == std::vector<int64_t>{1, 2});
}

TEST_CASE("elementwise values and broadcasting") {
  Tensor a = tg::from_vector(V{1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = tg::from_vector(V{10, 20, 30}, {3});
  CHECK((a + b).to_vector() == V{11, 22, 33, 14, 25, 36});
  Tensor col = tg::from_vector(V{1, 2}, {2, 1});
  CHECK((a * col).to_vector() == V{1, 2, 3, 8, 10, 12});
  CHECK((a - 1.0).to_vector() == V{0, 1, 2, 3, 4, 5});
  CHECK((2.0 - a).to_vector() == V{1, 0, -1, -2, -3, -4});
  CHECK((a / 2.0).to_vector() == V{0.5, 1, 1.5, 2, 2.5, 3});
  CHECK(tg::relu(a - 3.0).to_vector() == V{0, 0, 0, 1, 2, 3});
  CHECK(tg::pow(a, 2.0).to_vector() == V{1, 4, 9, 16, 25, 36});
  CHECK(tg::sqrt(tg::from_vector(V{4, 9}, {2})).to_vector() == V{2, 3});
  CHECK(tg::sigmoid(tg::zeros({1}, DType::F64)).item() == 0.5);
  CHECK_THROWS_WITH_AS(a + tg::zeros({2}, DType::F64), doctest::Contains("add: shapes [2, 3] and [2]"), tg::Error);
  CHECK_THROWS_WITH_AS(a + tg::zeros({3}, DType::F32), doctest::Contains("dtype mismatch"), tg::Error);
  Tensor idx = tg::from_vector(std::vector<int64_t>{1}, {1});
  CHECK_THROWS_WITH_AS(tg::exp(idx), doctest::Contains("i64"), tg::Error);
}

TEST_CASE("large tensors take the multithreaded paths and agree with a plain loop") {
  tg::Generator g(1);
  Tensor x = tg::randn({1000, 700}, g, DType::F64);
  Tensor bias = tg::randn({700}, g, DType::F64);
  auto xv = x.to_vector(), bv = bias.to_vector();
  double total = 0;
  for (double v : xv) total += v;
  CHECK(tg::sum(x).item() == doctest::Approx(total).epsilon(1e-12));
  auto y = (x + bias).to_vector();
  for (size_t i = 0; i < y.size(); i += 997) REQUIRE(y[i] == xv[i] + bv[i % 700]);
  auto col = tg::sum(x, {0}).to_vector();
  double c5 = 0;
  for (int r = 0; r < 1000; ++r) c5 += xv[static_cast<size_t>(r) * 700 + 5];
  CHECK(col[5] == doctest::Approx(c5).epsilon(1e-12));
  auto row = tg::max(x, {1}).to_vector();
  double m7 = -1e300;
  for (int c = 0; c < 700; ++c) m7 = std::max(m7, xv[7 * 700 + c]);
  CHECK(row[7] == m7);
}

TEST_CASE("reductions, softmax, losses: values") {
  Tensor a = tg::from_vector(V{1, 5, 3, 4, 2, 6}, {2, 3});
  CHECK(tg::sum(a).item() == 21);
  CHECK(tg::sum(a, {1}).to_vector() == V{9, 12});
  CHECK(tg::sum(a, {0}, true).shape() == Shape{1, 3});
  CHECK(tg::mean(a).item() == 3.5);
  CHECK(tg::mean(a, {0}).to_vector() == V{2.5, 3.5, 4.5});
  CHECK(tg::max(a).item() == 6);
  CHECK(tg::max(a, {1}).to_vector() == V{5, 6});
  CHECK(tg::argmax(a, 1).to_vector<int64_t>() == std::vector<int64_t>{1, 2});
  auto s = tg::softmax(a, 1).to_vector();
  CHECK(s[0] + s[1] + s[2] == doctest::Approx(1.0));
  auto ls = tg::log_softmax(a, 1).to_vector();
  CHECK(std::exp(ls[4]) == doctest::Approx(tg::softmax(a, 1).to_vector()[4]));
  Tensor lab = tg::from_vector(std::vector<int64_t>{1, 0}, {2});
  double expect = -(ls[1] + ls[3]) / 2;
  CHECK(tg::cross_entropy(a, lab).item() == doctest::Approx(expect));
  CHECK(tg::cross_entropy(a, lab, tg::Reduction::Sum).item() == doctest::Approx(2 * expect));
  Tensor bad = tg::from_vector(std::vector<int64_t>{1, 3}, {2});
  CHECK_THROWS_WITH_AS(tg::cross_entropy(a, bad), doctest::Contains("label 3 at index 1 is out of range [0, 3)"),
                       tg::Error);
  CHECK_THROWS_WITH_AS(tg::cross_entropy(a, tg::zeros({2})), doctest::Contains("i64"), tg::Error);
  CHECK(tg::mse_loss(a, a + 1.0).item() == 1.0);
  // Big logits stay finite.
  Tensor big = tg::from_vector(V{1000, 0, -1000}, {1, 3});
  CHECK(std::isfinite(tg::cross_entropy(big, tg::from_vector(std::vector<int64_t>{2}, {1})).item()));
}

TEST_CASE("matmul values match a naive product") {
  tg::Generator g(2);
  Tensor a = tg::randn({2, 5, 7}, g, DType::F64), b = tg::randn({2, 7, 3}, g, DType::F64);
  auto c = tg::matmul(a, b).to_vector(), av = a.to_vector(), bv = b.to_vector();
  for (int bt = 0; bt < 2; ++bt)
    for (int i = 0; i < 5; ++i)
      for (int j = 0; j < 3; ++j) {
        double s = 0;
        for (int k = 0; k < 7; ++k) s += av[bt * 35 + i * 7 + k] * bv[bt * 21 + k * 3 + j];
        REQUIRE(c[bt * 15 + i * 3 + j] == doctest::Approx(s).epsilon(1e-12));
      }
  CHECK_THROWS_WITH_AS(tg::matmul(tg::zeros({3, 4}), tg::zeros({5, 6})),
                       doctest::Contains("matmul: [3, 4] x [5, 6]: inner dims differ"), tg::Error);
  CHECK_THROWS_WITH_AS(tg::linear(tg::zeros({2, 3}), tg::zeros({4, 5})), doctest::Contains("[2, 3]"), tg::Error);
}

TEST_CASE("dropout") {
  Tensor x = tg::ones({1000});
  tg::Generator g(1);
  auto y = tg::dropout(x, 0.25, true, g).to_vector();
  int zeros = 0;
  for (double v : y) {
    REQUIRE((v == 0.0 || v == doctest::Approx(1 / 0.75)));
    zeros += v == 0.0;
  }
  CHECK(zeros > 180);
  CHECK(zeros < 320);
  CHECK(tg::dropout(x, 0.25, false).raw_data() == x.raw_data());
  CHECK_THROWS_WITH_AS(tg::dropout(x, 1.0, true), doctest::Contains("[0, 1)"), tg::Error);
}

TEST_CASE("threads can be set") {
  // Two threads and then one, set here: the checks hold whatever OMP_NUM_THREADS the test runs under.
  const int before = tg::num_threads();
  tg::set_num_threads(2);
  CHECK(tg::num_threads() == 2);
  int team = 0;
#pragma omp parallel
  {
#pragma omp single
    team = omp_get_num_threads();
  }
  CHECK(team == 2);  // the parallel regions of the kernels get the two threads
  tg::set_num_threads(1);
  CHECK(tg::num_threads() == 1);
  tg::set_num_threads(before);
  CHECK(tg::num_threads() == before);
  CHECK_THROWS_AS(tg::set_num_threads(0), tg::Error);
}
