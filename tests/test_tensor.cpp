// Tensor basics: factories, views, values of ops (including the multithreaded paths), and errors.
#include <doctest/doctest.h>

#include <omp.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>

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

TEST_CASE("indexing: t[i], select, index with slices, squeeze, unsqueeze, stack") {
  Tensor x = tg::arange(24, DType::F64).reshape({2, 3, 4});
  CHECK(x[1].shape() == Shape{3, 4});
  CHECK(x[1][2].to_vector() == V{20, 21, 22, 23});
  CHECK(x[-1][0][3].item() == 15);
  CHECK(x.select(2, 1).to_vector() == V{1, 5, 9, 13, 17, 21});
  CHECK(x.select(-1, -1).shape() == Shape{2, 3});
  Tensor s = x.index({tg::Slice(), tg::Slice(1, 3), 0});
  CHECK(s.shape() == Shape{2, 2});
  CHECK(s.to_vector() == V{4, 8, 16, 20});
  CHECK(x.index({1}).to_vector() == x[1].to_vector());
  CHECK(x.index({0, tg::Slice(-2)}).to_vector() == V{4, 5, 6, 7, 8, 9, 10, 11});  // Python's x[0, -2:]
  CHECK(x.index({tg::Slice(1, 100)}).shape() == Shape{1, 3, 4});                   // clamped as Python
  CHECK(x.index({tg::Slice(2, 1)}).shape() == Shape{0, 3, 4});
  CHECK_THROWS_WITH_AS(x[2], doctest::Contains("index 2 is out of range for dim 0 of size 2"), tg::Error);
  CHECK_THROWS_WITH_AS(x.select(3, 0), doctest::Contains("dim 3 out of range"), tg::Error);
  CHECK_THROWS_WITH_AS(x.index({0, 0, 0, 0}), doctest::Contains("4 indices for a tensor of shape [2, 3, 4]"),
                       tg::Error);
  CHECK_THROWS_WITH_AS(tg::scalar(1.0)[0], doctest::Contains("0-dim"), tg::Error);
  Tensor lab = tg::from_vector(std::vector<int64_t>{7, 8, 9}, {3});
  CHECK(lab[1].to_vector<int64_t>() == std::vector<int64_t>{8});

  Tensor u = x.unsqueeze(1);
  CHECK(u.shape() == Shape{2, 1, 3, 4});
  CHECK(u.raw_data() == x.raw_data());
  CHECK(x.unsqueeze(-1).shape() == Shape{2, 3, 4, 1});
  CHECK(u.squeeze().shape() == Shape{2, 3, 4});
  CHECK(u.squeeze(1).shape() == Shape{2, 3, 4});
  CHECK(u.squeeze(0).shape() == Shape{2, 1, 3, 4});  // not size 1: unchanged
  CHECK(tg::ones({1, 1}).squeeze().dim() == 0);

  Tensor a = tg::from_vector(V{1, 2}, {2}), b = tg::from_vector(V{3, 4}, {2});
  CHECK(tg::stack({a, b}).to_vector() == V{1, 2, 3, 4});
  CHECK(tg::stack({a, b}, 1).to_vector() == V{1, 3, 2, 4});
  CHECK(tg::stack({a, b}, -1).shape() == Shape{2, 2});
  CHECK_THROWS_WITH_AS(tg::stack({a, tg::zeros({3}, DType::F64)}), doctest::Contains("stack: shapes [2] and [3]"),
                       tg::Error);
}

TEST_CASE("method forms and 1.0 / x") {
  Tensor a = tg::from_vector(V{1, 5, 3, 4, 2, 6}, {2, 3});
  CHECK(a.sum().item() == 21);
  CHECK(a.sum(1).to_vector() == V{9, 12});
  CHECK(a.sum({0, 1}).item() == 21);
  CHECK(a.mean(0).to_vector() == V{2.5, 3.5, 4.5});
  CHECK(a.mean(-1, true).shape() == Shape{2, 1});
  CHECK(a.max().item() == 6);
  CHECK(a.max(1).to_vector() == V{5, 6});
  CHECK(a.argmax(1).to_vector<int64_t>() == std::vector<int64_t>{1, 2});
  CHECK(a.exp().to_vector() == tg::exp(a).to_vector());
  CHECK(a.log().sqrt().to_vector() == tg::sqrt(tg::log(a)).to_vector());
  CHECK((a - 3.0).abs().to_vector() == V{2, 2, 0, 1, 1, 3});
  CHECK(a.pow(2).to_vector() == V{1, 25, 9, 16, 4, 36});
  CHECK(a.softmax(1).to_vector() == tg::softmax(a, 1).to_vector());
  CHECK(a.matmul(a.t()).to_vector() == tg::matmul(a, a.t()).to_vector());
  CHECK((1.0 / a).to_vector() == V{1, 0.2, 1.0 / 3, 0.25, 0.5, 1.0 / 6});
  CHECK((12.0 / tg::from_vector(std::vector<float>{3, 4}, {2})).to_vector() == V{4, 3});
}

// A mask from "1100". Not V{1, 1, 0, 0}: GCC 12.2 at -O2/-O3 with AVX-512 (-march=native here) builds that
// constant as {1, 1, 1, 1} (its SLP vectoriser; -fno-tree-slp-vectorize avoids it).
static V mask(const std::string& bits) {
  V m;
  for (char c : bits) m.push_back(c == '1');
  return m;
}

TEST_CASE("comparisons give masks; where selects exactly") {
  Tensor a = tg::from_vector(V{1, 2, 3, NAN}, {4});
  Tensor b = tg::from_vector(V{2, 2, 2, 2}, {4});
  CHECK(a.lt(b).to_vector() == mask("1000"));
  CHECK(a.le(b).to_vector() == mask("1100"));
  CHECK(a.gt(b).to_vector() == mask("0010"));
  CHECK(a.ge(2.0).to_vector() == mask("0110"));
  CHECK(a.eq(2.0).to_vector() == mask("0100"));
  CHECK(a.ne(b).to_vector() == mask("1011"));
  CHECK(a.gt(b).dtype() == DType::F64);
  Tensor col = tg::from_vector(V{0, 2}, {2, 1});
  CHECK(tg::gt(b.slice(0, 0, 3) + tg::from_vector(V{-1, 0, 1}, {3}), col).to_vector() == mask("111001"));
  // accuracy from i64 predictions and labels
  Tensor pred = tg::from_vector(std::vector<int64_t>{1, 0, 2, 2}, {4});
  Tensor lab = tg::from_vector(std::vector<int64_t>{1, 1, 2, 0}, {4});
  CHECK(pred.eq(lab).dtype() == DType::F32);
  CHECK(pred.eq(lab).mean().item() == 0.5);
  CHECK(pred.lt(1.5).to_vector() == mask("1100"));
  CHECK_THROWS_WITH_AS(pred.eq(b), doctest::Contains("eq: dtype mismatch"), tg::Error);
  Tensor w = tg::randn({4}).requires_grad_();
  CHECK_FALSE(w.gt(0.0).requires_grad());

  Tensor x = tg::from_vector(V{-1, 0, 4, 9}, {4});
  Tensor r = tg::where(x.gt(0.0), tg::sqrt(x), tg::zeros({}, DType::F64));  // sqrt(-1) = NaN stays out
  CHECK(r.to_vector() == V{0, 0, 2, 3});
  CHECK(tg::where(x.gt(0.0), tg::log(x), x).to_vector() == V{-1, 0, std::log(4.0), std::log(9.0)});
  Tensor m = tg::from_vector(mask("10"), {2, 1});
  CHECK(tg::where(m, tg::ones({3}, DType::F64), x.slice(0, 0, 3)).to_vector() == V{1, 1, 1, -1, 0, 4});
  CHECK_THROWS_WITH_AS(tg::where(tg::ones({3}), x, x), doctest::Contains("where: shapes [3] and [4]"), tg::Error);
}

TEST_CASE("in-place +=, -=, *=, /= outside the graph; an error inside it") {
  Tensor acc = tg::zeros({2, 3}, DType::F64);
  const void* storage = acc.raw_data();
  acc += tg::ones({2, 3}, DType::F64);
  acc += tg::from_vector(V{1, 2, 3}, {3});  // broadcast into acc's shape
  acc *= 2.0;
  acc -= 1.0;
  acc /= tg::from_vector(V{1, 2}, {2, 1});
  CHECK(acc.to_vector() == V{3, 5, 7, 1.5, 2.5, 3.5});
  CHECK(acc.raw_data() == storage);
  CHECK_THROWS_WITH_AS(acc += tg::ones({3, 3}, DType::F64), doctest::Contains("cannot be broadcast"), tg::Error);
  Tensor row = tg::zeros({3}, DType::F64);
  CHECK_THROWS_WITH_AS(row += acc, doctest::Contains("[2, 3] does not broadcast to the updated tensor's shape [3]"),
                       tg::Error);

  Tensor w = tg::randn({3}).requires_grad_();
  CHECK_THROWS_WITH_AS(w += tg::ones({3}), doctest::Contains("operator+=: in-place update of a tensor [3] that is "
                                                             "part of a graph (it requires grad); write y = y + x instead"),
                       tg::Error);
  Tensor data = tg::ones({3});
  CHECK_THROWS_WITH_AS(data *= w, doctest::Contains("the other operand requires grad"), tg::Error);
  CHECK_THROWS_AS(tg::exp(w) -= 1.0, tg::Error);
  {
    tg::NoGradGuard ng;  // an optimizer's update
    w -= 0.5;
  }
  CHECK(w.requires_grad());
  CHECK(w.is_leaf());
}

// Expected strings from PyTorch 1.13 (tests/tools/make_print_cases.py writes tests/data/print_cases.json).
TEST_CASE("printing matches PyTorch") {
  const char* dir = std::getenv("TAPEGRAD_TEST_DATA");
  REQUIRE_MESSAGE(dir != nullptr, "TAPEGRAD_TEST_DATA is not set");
  std::ifstream f(std::string(dir) + "/print_cases.json");
  REQUIRE(f.good());
  nlohmann::json j = nlohmann::json::parse(f);
  REQUIRE(j["cases"].size() >= 15);
  for (auto& c : j["cases"]) {
    CAPTURE(c["name"].get<std::string>());
    Shape shape = c["shape"].get<Shape>();
    V values;
    for (auto& v : c["values"]) values.push_back(v.is_string() ? std::stod(v.get<std::string>()) : v.get<double>());
    std::string dt = c["dtype"];
    Tensor t = tg::from_vector(values, shape).to(dt == "f32" ? DType::F32 : dt == "f64" ? DType::F64 : DType::I64);
    if (c["requires_grad"].get<bool>()) t.requires_grad_();
    std::ostringstream os;
    os << t;
    CHECK(os.str() == c["expected"].get<std::string>());
  }
  std::ostringstream os;
  Tensor w = tg::ones({2}).requires_grad_();
  os << tg::exp(w) << " " << Tensor();
  CHECK(os.str() == "tensor([2.7183, 2.7183], grad_fn=<exp>) tensor(undefined)");
}

TEST_CASE("the CPU block cache: counts bytes in tensors, reuses a freed size, releases old blocks for a new one") {
  const tg::Device cpu = tg::Device::CPU;
  const size_t small = size_t{1} << 22, big = small + 16384;  // 4 MiB and a size no other test asks for
  Tensor a = tg::zeros({static_cast<int64_t>(small / 4)});
  tg::reset_peak_memory(cpu);
  const tg::MemoryUse m0 = tg::memory_use(cpu);
  CHECK(m0.peak == m0.in_use);
  CHECK(m0.in_use >= small);

  a = Tensor();  // its block is cached
  const tg::MemoryUse m1 = tg::memory_use(cpu);
  CHECK(m1.in_use == m0.in_use - small);
  CHECK(m1.cached >= small);

  // A size not in the cache: at least as many bytes of the oldest cached blocks go back to the system first.
  Tensor b = tg::zeros({static_cast<int64_t>(big / 4)});
  const tg::MemoryUse m2 = tg::memory_use(cpu);
  CHECK(m2.in_use == m1.in_use + big);
  CHECK(m2.cached <= (m1.cached > big ? m1.cached - big : 0));
  CHECK(m2.peak == std::max(m0.peak, m2.in_use));

  // The same size again is the freed block itself.
  b = Tensor();
  const tg::MemoryUse m3 = tg::memory_use(cpu);
  CHECK(m3.cached == m2.cached + big);
  Tensor c = tg::zeros({static_cast<int64_t>(big / 4)});
  const tg::MemoryUse m4 = tg::memory_use(cpu);
  CHECK(m4.cached == m3.cached - big);
  CHECK(m4.in_use == m2.in_use);
  CHECK(m4.peak == m2.peak);
}
