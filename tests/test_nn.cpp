// Modules: registration, names, state dicts, train/eval, the layers and init.
#include <doctest/doctest.h>

#include <cmath>
#include <memory>

#include "tapegrad/tapegrad.hpp"

namespace tg = tapegrad;
using tg::Shape;
using tg::Tensor;

namespace {
struct Block : tg::nn::Layer {
  std::shared_ptr<tg::nn::Sequential> body;
  Tensor scale;
  Block() : Layer("Block") {
    tg::Generator g(1);
    body = register_module("body", std::make_shared<tg::nn::Sequential>(std::initializer_list<std::shared_ptr<tg::nn::Layer>>{
        std::make_shared<tg::nn::Linear>(4, 8, true, g), std::make_shared<tg::nn::ReLU>(),
        std::make_shared<tg::nn::Dropout>(0.5), std::make_shared<tg::nn::Linear>(8, 2, false, g)}));
    scale = register_buffer("scale", tg::full({2}, 2.0));
  }
  Tensor forward(const Tensor& x) override { return body->forward(x) * scale; }
};
}  // namespace

TEST_CASE("named parameters have dotted paths in registration order") {
  Block b;
  auto np = b.named_parameters();
  REQUIRE(np.size() == 3);
  CHECK(np[0].first == "body.0.weight");
  CHECK(np[1].first == "body.0.bias");
  CHECK(np[2].first == "body.3.weight");
  CHECK(np[0].second.shape() == Shape{8, 4});
  CHECK(b.num_parameters() == 8 * 4 + 8 + 2 * 8);
  auto sd = b.state_dict();
  CHECK(sd.size() == 4);
  CHECK(sd.count("scale") == 1);
  for (auto& p : b.parameters()) CHECK(p.requires_grad());
  CHECK_THROWS_WITH_AS(b.register_buffer("scale", tg::zeros({1})), doctest::Contains("already registered"), tg::Error);
  CHECK_THROWS_WITH_AS(b.register_buffer("a.b", tg::zeros({1})), doctest::Contains("invalid name"), tg::Error);
}

TEST_CASE("train and eval reach every submodule; dropout follows") {
  Block b;
  Tensor x = tg::ones({3, 4});
  b.eval();
  CHECK_FALSE((*b.body)[2]->is_training());
  auto y1 = b(x).to_vector(), y2 = b(x).to_vector();
  CHECK(y1 == y2);
  b.train();
  CHECK((*b.body)[2]->is_training());
}

TEST_CASE("load_state_dict copies in place and names what does not fit") {
  Block a, b;
  a.body->named_parameters();
  for (auto& [n, t] : a.named_parameters()) t.fill_(0.5);
  b.load_state_dict(a.state_dict());
  for (auto& [n, t] : b.named_parameters()) CHECK(t.to_vector()[0] == 0.5);
  auto sd = a.state_dict();
  sd.erase("body.0.bias");
  sd["extra"] = tg::zeros({1});
  CHECK_THROWS_WITH_AS(b.load_state_dict(sd), doctest::Contains("missing keys: body.0.bias; unexpected keys: extra"),
                       tg::Error);
  auto sd2 = a.state_dict();
  sd2["body.0.weight"] = tg::zeros({4, 8});
  CHECK_THROWS_WITH_AS(b.load_state_dict(sd2), doctest::Contains("'body.0.weight' has shape [4, 8]"), tg::Error);
}

TEST_CASE("Linear: PyTorch's initialisation bounds, forward shape, errors") {
  tg::Generator g(3);
  tg::nn::Linear l(100, 30, true, g);
  double bound = 1.0 / std::sqrt(100.0);
  double mx = 0;
  for (double v : l.weight.to_vector()) mx = std::max(mx, std::abs(v));
  CHECK(mx <= bound);
  CHECK(mx > 0.9 * bound);
  for (double v : l.bias.to_vector()) CHECK(std::abs(v) <= bound);
  CHECK(l(tg::zeros({5, 100})).shape() == Shape{5, 30});
  CHECK_THROWS_WITH_AS(l(tg::zeros({5, 99})), doctest::Contains("[5, 99]"), tg::Error);
  tg::Generator g2(3);
  tg::nn::Linear same(100, 30, true, g2);
  CHECK(same.weight.to_vector() == l.weight.to_vector());
}

TEST_CASE("init functions") {
  tg::Generator g(4);
  Tensor w = tg::empty({200, 300});
  tg::nn::init::xavier_uniform_(w, 1.0, g);
  double b = std::sqrt(6.0 / 500.0), mx = 0;
  for (double v : w.to_vector()) mx = std::max(mx, std::abs(v));
  CHECK(mx <= b);
  tg::nn::init::kaiming_normal_(w, 0.0, tg::nn::init::Nonlinearity::ReLU, g);
  double ss = 0;
  for (double v : w.to_vector()) ss += v * v;
  CHECK(std::sqrt(ss / w.numel()) == doctest::Approx(std::sqrt(2.0 / 300)).epsilon(0.03));
  tg::nn::init::normal_(w, 1.0, 0.0, g);
  CHECK(w.to_vector()[17] == 1.0);
  CHECK(tg::nn::init::fan_in(tg::empty({8, 3, 3, 3})) == 27);
  CHECK_THROWS_AS(tg::nn::init::fan_in(tg::empty({8})), tg::Error);
}

TEST_CASE("a module converts to f64 in place") {
  Block b;
  Tensor w = b.named_parameters()[0].second;
  b.to(tg::DType::F64);
  CHECK(w.dtype() == tg::DType::F64);
  CHECK(b(tg::ones({2, 4}, tg::DType::F64)).dtype() == tg::DType::F64);
}
