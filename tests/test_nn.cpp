// Modules: registration, names, state dicts, train/eval, the layers and init.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include "tapegrad/tapegrad.hpp"
#include "check_uniform.hpp"

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
  check_uniform(l.weight.to_vector(), bound, "weight");
  check_uniform(l.bias.to_vector(), bound, "bias");
  check_uniform(tg::nn::Linear(100, 300, true, g).bias.to_vector(), bound, "bias of 300");
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
  check_uniform(w.to_vector(), std::sqrt(6.0 / 500.0), "xavier_uniform_");
  tg::nn::init::kaiming_uniform_(w, 0.0, tg::nn::init::Nonlinearity::ReLU, g);
  check_uniform(w.to_vector(), std::sqrt(2.0) * std::sqrt(3.0 / 300), "kaiming_uniform_");
  tg::nn::init::kaiming_normal_(w, 0.0, tg::nn::init::Nonlinearity::ReLU, g);
  double ss = 0;
  for (double v : w.to_vector()) ss += v * v;
  CHECK(std::sqrt(ss / w.numel()) == doctest::Approx(std::sqrt(2.0 / 300)).epsilon(0.03));
  double m = 0;
  for (double v : w.to_vector()) m += v / w.numel();
  CHECK(std::abs(m) < 4 * std::sqrt(2.0 / 300) / std::sqrt(60000.0));  // mean 0 within 4 standard errors
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

namespace {
// A module as a user writes one: no type-name string, submodules held and called like functions.
struct Net : tg::nn::Module {
  tg::nn::ModuleHolder<tg::nn::Conv2d> conv1 = register_module("conv1", std::make_shared<tg::nn::Conv2d>(1, 2, 3));
  tg::nn::ModuleHolder<tg::nn::ModuleList> heads = register_module("heads", std::make_shared<tg::nn::ModuleList>());
  Net() {
    heads->push_back(std::make_shared<tg::nn::Linear>(8, 3));
    heads->push_back(std::make_shared<tg::nn::Linear>(8, 1));
  }
  Tensor forward(const Tensor& x) {
    Tensor h = tg::relu(conv1(x)).flatten(1);  // [N, 2 * 2 * 2]
    return heads->at<tg::nn::Linear>(0)(h) + heads->at<tg::nn::Linear>(1)(h);
  }
};
}  // namespace

TEST_CASE("a user's module: its own type name, holders called as functions, ModuleList") {
  Net net;
  CHECK(net.type_name() == "Net");
  CHECK(net.conv1->type_name() == "Conv2d");
  CHECK(net.forward(tg::randn({5, 1, 4, 4})).shape() == Shape{5, 3});
  std::vector<std::string> names;
  for (auto& [n, _] : net.named_parameters()) names.push_back(n);
  CHECK(names == std::vector<std::string>{"conv1.weight", "conv1.bias", "heads.0.weight", "heads.0.bias",
                                          "heads.1.weight", "heads.1.bias"});
  CHECK(net.heads->size() == 2);
  int n = 0;
  for (auto& m : *net.heads) n += m->type_name() == "Linear";
  CHECK(n == 2);
  CHECK_THROWS_WITH_AS((*net.heads)[2], doctest::Contains("ModuleList: index 2 is out of range (2 modules)"),
                       tg::Error);
  CHECK_THROWS_WITH_AS(net.heads->at<tg::nn::Conv2d>(1), doctest::Contains("module 1 is a Linear"), tg::Error);
}

TEST_CASE("named_modules and apply visit the tree in PyTorch's orders") {
  Net net;
  std::vector<std::string> names, types;
  for (auto& [name, m] : net.named_modules()) {
    names.push_back(name);
    types.push_back(m->type_name());
  }
  CHECK(names == std::vector<std::string>{"", "conv1", "heads", "heads.0", "heads.1"});
  CHECK(types == std::vector<std::string>{"Net", "Conv2d", "ModuleList", "Linear", "Linear"});
  std::vector<std::string> order;
  net.apply([&](tg::nn::Module& m) { order.push_back(m.type_name()); });
  CHECK(order == std::vector<std::string>{"Conv2d", "Linear", "Linear", "ModuleList", "Net"});
  // the common use: re-initialise every Linear layer
  net.apply([](tg::nn::Module& m) {
    if (auto* l = dynamic_cast<tg::nn::Linear*>(&m)) l->bias.fill_(0.25);
  });
  for (auto& [name, t] : net.named_parameters())
    if (name.find("heads") == 0 && name.find("bias") != std::string::npos)
      for (double v : t.to_vector()) CHECK(v == 0.25);
}

TEST_CASE("Linear takes any rank: leading dims flattened and restored") {
  tg::Generator g(2);
  tg::nn::Linear l(4, 3, true, g, tg::DType::F64);
  Tensor x = tg::randn({2, 5, 4}, g, tg::DType::F64);
  Tensor y = l(x);
  CHECK(y.shape() == Shape{2, 5, 3});
  CHECK(y[1][2].to_vector() == l(x[1][2].unsqueeze(0)).squeeze(0).to_vector());
  CHECK(l(x[0][0]).shape() == Shape{3});
  CHECK_THROWS_WITH_AS(l(tg::zeros({2, 5, 3}, tg::DType::F64)), doctest::Contains("expected [*, 4]"), tg::Error);
}

TEST_CASE("misuse: Sequential out of range, a 3-D image into Conv2d and BatchNorm2d") {
  tg::nn::Sequential s{std::make_shared<tg::nn::ReLU>()};
  CHECK_THROWS_WITH_AS(s[1], doctest::Contains("Sequential: index 1 is out of range (1 layers)"), tg::Error);
  tg::nn::Conv2d conv(3, 4, 3);
  CHECK_THROWS_WITH_AS(conv(tg::zeros({3, 8, 8})),
                       doctest::Contains("expected a 4-D input [N, 3, H, W], got 3-D [3, 8, 8] (add the batch dim"),
                       tg::Error);
  CHECK_THROWS_WITH_AS(conv(tg::zeros({1, 2, 8, 8})), doctest::Contains("does not have 3 channels"), tg::Error);
  tg::nn::BatchNorm2d bn(3);
  CHECK_THROWS_WITH_AS(bn(tg::zeros({3, 8, 8})), doctest::Contains("expected a 4-D input [N, 3, H, W], got 3-D"),
                       tg::Error);
}

TEST_CASE("LayerNorm, GELU, SiLU, LeakyReLU modules") {
  tg::nn::LayerNorm ln({4});
  auto np = ln.named_parameters();
  REQUIRE(np.size() == 2);
  CHECK(np[0].first == "weight");
  CHECK(np[1].first == "bias");
  Tensor x = tg::from_vector(std::vector<double>{1, 2, 3, 4, -1, 0, 1, 2}, {2, 4});
  ln.to(tg::DType::F64);
  Tensor y = ln(x);
  CHECK(y.mean(1).abs().max().item() < 1e-12);
  CHECK(y[0].pow(2).mean().item() == doctest::Approx(1.25 / (1.25 + 1e-5)).epsilon(1e-12));  // var 1.25
  CHECK(tg::nn::LayerNorm({3, 4}, 1e-5, false).named_parameters().empty());
  CHECK_THROWS_WITH_AS(ln(tg::zeros({2, 5}, tg::DType::F64)), doctest::Contains("does not end with normalized_shape [4]"),
                       tg::Error);
  Tensor v = tg::from_vector(std::vector<double>{-2, 3}, {2});
  CHECK(tg::nn::LeakyReLU(0.1)(v).to_vector() == std::vector<double>{-0.2, 3});
  CHECK(tg::nn::SiLU()(v).to_vector() == (v * tg::sigmoid(v)).to_vector());
  CHECK(tg::nn::GELU()(v).to_vector()[1] == doctest::Approx(3 * 0.5 * (1 + std::erf(3 / std::sqrt(2.0)))));
  CHECK(tg::nn::GELU(true).tanh_approximation);
}

TEST_CASE("nn::GRU: PyTorch's parameter names and shapes, init bounds and spread, state in and out") {
  tg::Generator g(6);
  tg::nn::GRU gru(3, 8, 2, 0.0, true, g, tg::DType::F64);
  std::vector<std::string> names;
  for (auto& [n, t] : gru.named_parameters()) names.push_back(n);
  CHECK(names == std::vector<std::string>{"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "weight_ih_l1",
                                          "weight_hh_l1", "bias_ih_l1", "bias_hh_l1"});
  CHECK(gru.weight_ih[0].shape() == Shape{24, 3});
  CHECK(gru.weight_ih[1].shape() == Shape{24, 8});
  const double bound = 1.0 / std::sqrt(8.0);
  double lo = 1, hi = -1;
  for (auto& p : gru.parameters())
    for (double v : p.to_vector()) lo = std::min(lo, v), hi = std::max(hi, v);
  CHECK(lo >= -bound);
  CHECK(hi <= bound);
  CHECK(lo < -0.9 * bound);
  CHECK(hi > 0.9 * bound);
  Tensor x = tg::randn({5, 2, 3}, g, tg::DType::F64);
  tg::nn::GRUResult r = gru(x);
  CHECK(r.output.shape() == Shape{5, 2, 8});
  CHECK(r.h.shape() == Shape{2, 2, 8});
  CHECK(r.h[1].to_vector() == r.output[4].to_vector());  // the last layer's last step
  // carrying the state over equals running the whole sequence
  tg::nn::GRUResult a = gru(x.slice(0, 0, 2)), b = gru(x.slice(0, 2, 5), a.h);
  auto whole = r.output[4].to_vector(), split = b.output[2].to_vector();
  for (size_t i = 0; i < whole.size(); ++i) CHECK(split[i] == doctest::Approx(whole[i]).epsilon(1e-12));
  CHECK_THROWS_WITH_AS(gru(tg::zeros({5, 2, 4}, tg::DType::F64)), doctest::Contains("does not fit input_size 3"),
                       tg::Error);
  CHECK_THROWS_WITH_AS(gru(x, tg::zeros({1, 2, 8}, tg::DType::F64)), doctest::Contains("expected [2, 2, 8]"), tg::Error);
}

TEST_CASE("binary_cross_entropy_with_logits: log 2 and gradient sigmoid(0) - y at logit 0; large logits stay finite") {
  Tensor x = tg::zeros({4}, tg::DType::F64).requires_grad_();
  Tensor y = tg::full({4}, 0.25, tg::DType::F64);
  Tensor loss = tg::binary_cross_entropy_with_logits(x, y);
  CHECK(loss.item() == doctest::Approx(std::log(2.0)).epsilon(1e-15));
  loss.backward();
  for (double g : x.grad().to_vector()) CHECK(g == doctest::Approx((0.5 - 0.25) / 4).epsilon(1e-15));
  Tensor big = tg::from_vector(std::vector<double>{800, -800}, {2});
  Tensor t = tg::from_vector(std::vector<double>{0, 1}, {2});
  CHECK(tg::binary_cross_entropy_with_logits(big, t, tg::Reduction::Sum).item() == doctest::Approx(1600));
  CHECK_THROWS_WITH_AS(tg::nll_loss(tg::zeros({2, 3}), tg::from_vector(std::vector<int64_t>{0, 3}, {2})),
                       doctest::Contains("nll_loss: label 3 at index 1 is out of range [0, 3)"), tg::Error);
  CHECK_THROWS_WITH_AS(tg::l1_loss(tg::zeros({2}), tg::zeros({3})), doctest::Contains("l1_loss: input [2] and target [3]"),
                       tg::Error);
}
