// One harness for every op: the gradient from backward() against central finite differences, in f64,
// on several shapes including broadcasting. Adding an op is one line in the table.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <string>

#include "tapegrad/tapegrad.hpp"

namespace tg = tapegrad;
using tg::Shape;
using tg::Tensor;
using V = std::vector<double>;

namespace {

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

enum class Domain { Any, Positive, AwayFromZero };

struct Case {
  std::string name;
  std::vector<Shape> shapes;
  Fn f;
  Domain domain = Domain::Any;
};

Tensor make_input(const Shape& s, Domain d, tg::Generator& gen) {
  Tensor t = tg::randn(s, gen, tg::DType::F64);
  double* p = t.data<double>();
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (d == Domain::Positive) p[i] = 0.5 + std::abs(p[i]);
    if (d == Domain::AwayFromZero) p[i] = (p[i] >= 0 ? 0.2 : -0.2) + p[i];
  }
  return t;
}

// loss = sum(f(x) * r) with fixed random r, so every output element carries a distinct weight.
double loss_of(const Case& c, const std::vector<Tensor>& xs, const Tensor& r) {
  tg::NoGradGuard ng;
  return tg::sum(tg::mul(c.f(xs), r)).item();
}

void check_case(const Case& c) {
  CAPTURE(c.name);
  tg::Generator gen(42);
  std::vector<Tensor> xs;
  for (auto& s : c.shapes) xs.push_back(make_input(s, c.domain, gen).requires_grad_());
  Tensor out = c.f(xs);
  Tensor r = tg::randn(out.shape(), gen, tg::DType::F64);
  tg::sum(tg::mul(out, r)).backward();
  const double eps = 1e-6;
  for (size_t k = 0; k < xs.size(); ++k) {
    CAPTURE(k);
    REQUIRE_MESSAGE(xs[k].grad().defined(), c.name << ": input " << k << " got no gradient");
    auto analytic = xs[k].grad().to_vector<double>();
    double* p = xs[k].data<double>();
    for (int64_t i = 0; i < xs[k].numel(); ++i) {
      double keep = p[i];
      p[i] = keep + eps;
      double up = loss_of(c, xs, r);
      p[i] = keep - eps;
      double down = loss_of(c, xs, r);
      p[i] = keep;
      double numeric = (up - down) / (2 * eps);
      CAPTURE(i);
      CHECK(analytic[i] == doctest::Approx(numeric).epsilon(1e-5).scale(1.0));
    }
  }
}

// README's custom op: forward off the tape, one node recorded with record().
Tensor cube(const Tensor& x) {
  Tensor y;
  {
    tg::NoGradGuard off;
    y = x * x * x;
  }
  if (tg::needs_grad({x}))
    tg::record("cube", {x}, {y}, [x = x.detach()](const tg::Grads& g) { return tg::Grads{g[0] * x * x * 3.0}; });
  return y;
}

Tensor labels(std::vector<int64_t> v) { return tg::from_vector(v, {static_cast<int64_t>(v.size())}); }

std::vector<Case> cases() {
  using V = const std::vector<Tensor>&;
  std::vector<Case> cs = {
      {"add same", {{3, 4}, {3, 4}}, [](V x) { return x[0] + x[1]; }},
      {"add row broadcast", {{3, 4}, {4}}, [](V x) { return x[0] + x[1]; }},
      {"add outer broadcast", {{3, 1}, {1, 4}}, [](V x) { return x[0] + x[1]; }},
      {"add 3-D broadcast", {{2, 3, 4}, {3, 1}}, [](V x) { return x[0] + x[1]; }},
      {"add scalar tensor", {{}, {5}}, [](V x) { return x[0] + x[1]; }},
      {"sub broadcast", {{2, 3}, {2, 1}}, [](V x) { return x[0] - x[1]; }},
      {"mul same", {{3, 4}, {3, 4}}, [](V x) { return x[0] * x[1]; }},
      {"mul broadcast", {{2, 1, 4}, {3, 1}}, [](V x) { return x[0] * x[1]; }},
      {"mul self", {{5}}, [](V x) { return x[0] * x[0]; }},
      {"div same", {{3, 4}, {3, 4}}, [](V x) { return x[0] / x[1]; }, Domain::Positive},
      {"div broadcast", {{3, 4}, {4}}, [](V x) { return x[0] / x[1]; }, Domain::Positive},
      {"add/mul by scalar", {{3, 2}}, [](V x) { return x[0] * 3.0 + 1.5; }},
      {"neg", {{4}}, [](V x) { return -x[0]; }},
      {"exp", {{3, 4}}, [](V x) { return tg::exp(x[0]); }},
      {"log", {{3, 4}}, [](V x) { return tg::log(x[0]); }, Domain::Positive},
      {"sqrt", {{3, 4}}, [](V x) { return tg::sqrt(x[0]); }, Domain::Positive},
      {"pow 2", {{3, 4}}, [](V x) { return tg::pow(x[0], 2.0); }},
      {"pow 3", {{6}}, [](V x) { return tg::pow(x[0], 3.0); }},
      {"pow 0.5", {{6}}, [](V x) { return tg::pow(x[0], 0.5); }, Domain::Positive},
      {"tanh", {{3, 4}}, [](V x) { return tg::tanh(x[0]); }},
      {"sigmoid", {{3, 4}}, [](V x) { return tg::sigmoid(x[0]); }},
      {"relu", {{3, 4}}, [](V x) { return tg::relu(x[0]); }, Domain::AwayFromZero},
      {"matmul 2-D", {{3, 4}, {4, 5}}, [](V x) { return tg::matmul(x[0], x[1]); }},
      {"matmul 1xK", {{1, 4}, {4, 2}}, [](V x) { return tg::matmul(x[0], x[1]); }},
      {"matmul batched", {{2, 3, 4}, {2, 4, 5}}, [](V x) { return tg::matmul(x[0], x[1]); }},
      {"matmul 3-D x 2-D", {{2, 3, 4}, {4, 5}}, [](V x) { return tg::matmul(x[0], x[1]); }},
      {"matmul 2-D x 3-D", {{3, 4}, {2, 4, 5}}, [](V x) { return tg::matmul(x[0], x[1]); }},
      {"linear", {{5, 4}, {3, 4}, {3}}, [](V x) { return tg::linear(x[0], x[1], x[2]); }},
      {"linear no bias", {{5, 4}, {3, 4}}, [](V x) { return tg::linear(x[0], x[1]); }},
      {"sum all", {{3, 4}}, [](V x) { return tg::sum(x[0]); }},
      {"sum dim 0", {{3, 4}}, [](V x) { return tg::sum(x[0], {0}); }},
      {"sum dim -1 keepdim", {{3, 4}}, [](V x) { return tg::sum(x[0], {-1}, true); }},
      {"sum dims 0,2", {{2, 3, 4}}, [](V x) { return tg::sum(x[0], {0, 2}); }},
      {"mean all", {{3, 4}}, [](V x) { return tg::mean(x[0]); }},
      {"mean dim 1", {{2, 3, 4}}, [](V x) { return tg::mean(x[0], {1}); }},
      {"max all", {{3, 4}}, [](V x) { return tg::max(x[0]); }},
      {"max dim 1", {{3, 4}}, [](V x) { return tg::max(x[0], {1}); }},
      {"max dims 0,2 keepdim", {{2, 3, 4}}, [](V x) { return tg::max(x[0], {0, 2}, true); }},
      {"softmax last", {{3, 5}}, [](V x) { return tg::softmax(x[0], -1); }},
      {"softmax middle", {{2, 3, 4}}, [](V x) { return tg::softmax(x[0], 1); }},
      {"log_softmax last", {{3, 5}}, [](V x) { return tg::log_softmax(x[0], 1); }},
      {"log_softmax first", {{3, 2}}, [](V x) { return tg::log_softmax(x[0], 0); }},
      {"cross_entropy mean", {{4, 5}}, [](V x) { return tg::cross_entropy(x[0], labels({0, 4, 2, 2})); }},
      {"cross_entropy sum", {{3, 3}},
       [](V x) { return tg::cross_entropy(x[0], labels({1, 0, 2}), tg::Reduction::Sum); }},
      {"mse_loss", {{3, 4}, {3, 4}}, [](V x) { return tg::mse_loss(x[0], x[1]); }},
      {"mse_loss sum", {{5}, {5}}, [](V x) { return tg::mse_loss(x[0], x[1], tg::Reduction::Sum); }},
      {"dropout train", {{4, 6}},
       [](V x) {
         tg::Generator g(7);  // the same mask on every evaluation
         return tg::dropout(x[0], 0.3, true, g);
       }},
      {"dropout eval", {{4}}, [](V x) { return tg::dropout(x[0], 0.3, false); }},
      {"expand", {{3, 1}}, [](V x) { return tg::expand(x[0], {2, 3, 4}); }},
      {"reshape", {{3, 4}}, [](V x) { return x[0].reshape({2, -1}) * x[0].reshape({2, 6}); }},
      {"flatten", {{2, 3, 4}}, [](V x) { return tg::exp(x[0].flatten(1)); }},
      {"transpose", {{3, 4}}, [](V x) { return tg::matmul(x[0].t(), x[0]); }},
      {"permute", {{2, 3, 4}}, [](V x) { return x[0].permute({2, 0, 1}); }},
      {"slice inner", {{3, 5}}, [](V x) { return x[0].slice(1, 1, 4); }},
      {"slice outer", {{4, 2}}, [](V x) { return x[0].slice(0, 2, 4); }},
      {"concat", {{2, 3}, {2, 1}, {2, 2}}, [](V x) { return tg::concat({x[0], x[1], x[2]}, 1); }},
      {"clone", {{3}}, [](V x) { return x[0].clone() * x[0]; }},
      {"conv2d 3x3", {{2, 3, 5, 5}, {4, 3, 3, 3}, {4}}, [](V x) { return tg::conv2d(x[0], x[1], x[2]); }},
      {"conv2d stride 2 pad 1", {{2, 2, 6, 5}, {3, 2, 3, 3}, {3}},
       [](V x) { return tg::conv2d(x[0], x[1], x[2], 2, 1); }},
      {"conv2d stride 3 pad 2 no bias", {{1, 2, 7, 7}, {2, 2, 3, 3}},
       [](V x) { return tg::conv2d(x[0], x[1], Tensor(), 3, 2); }},
      {"conv2d 2x3 kernel", {{2, 2, 4, 5}, {3, 2, 2, 3}}, [](V x) { return tg::conv2d(x[0], x[1]); }},
      {"conv2d 1x1", {{2, 4, 3, 3}, {5, 4, 1, 1}, {5}}, [](V x) { return tg::conv2d(x[0], x[1], x[2]); }},
      {"conv2d 1x1 stride 2", {{2, 3, 5, 5}, {2, 3, 1, 1}}, [](V x) { return tg::conv2d(x[0], x[1], Tensor(), 2); }},
      // several samples per matrix product (small planes), in each kernel's stride-1 and strided paths
      {"conv2d 3x3 pad 1, batch of 9", {{9, 2, 3, 3}, {3, 2, 3, 3}, {3}},
       [](V x) { return tg::conv2d(x[0], x[1], x[2], 1, 1); }},
      {"conv2d 1x1, batch of 7", {{7, 3, 2, 2}, {2, 3, 1, 1}}, [](V x) { return tg::conv2d(x[0], x[1]); }},
      {"conv2d 3x3 stride 2 pad 1, batch of 8", {{8, 2, 4, 4}, {3, 2, 3, 3}},
       [](V x) { return tg::conv2d(x[0], x[1], Tensor(), 2, 1); }},
      {"conv2d 5x5 pad 2", {{2, 2, 5, 4}, {2, 2, 5, 5}}, [](V x) { return tg::conv2d(x[0], x[1], Tensor(), 1, 2); }},
      {"conv2d 3x3 pad 2 (wider output)", {{2, 2, 3, 4}, {2, 2, 3, 3}},
       [](V x) { return tg::conv2d(x[0], x[1], Tensor(), 1, 2); }},
      {"batch_norm train", {{3, 4, 2, 3}, {4}, {4}},
       [](V x) { return tg::batch_norm(x[0], Tensor(), Tensor(), x[1], x[2], true); }},
      {"batch_norm train [N, C]", {{5, 3}}, [](V x) { return tg::batch_norm(x[0], Tensor(), Tensor(), Tensor(), Tensor(), true); }},
      {"batch_norm eval", {{2, 3, 2, 2}, {3}, {3}},
       [](V x) {
         Tensor rm = tg::from_vector(std::vector<double>{0.1, -0.3, 0.5}, {3});
         Tensor rv = tg::from_vector(std::vector<double>{0.5, 1.5, 2.0}, {3});
         return tg::batch_norm(x[0], rm, rv, x[1], x[2], false);
       }},
      // The fused op: x, weight, bias (and the residual) all get gradients through the ReLU mask.
      {"batch_norm_relu train", {{3, 4, 2, 3}, {4}, {4}},
       [](V x) { return tg::batch_norm_relu(x[0], Tensor(), Tensor(), x[1], x[2], true); }},
      {"batch_norm_relu train + residual", {{3, 4, 2, 3}, {4}, {4}, {3, 4, 2, 3}},
       [](V x) { return tg::batch_norm_relu(x[0], Tensor(), Tensor(), x[1], x[2], true, 0.1, 1e-5, x[3]); }},
      {"batch_norm_relu train [N, C], no affine", {{6, 3}, {6, 3}},
       [](V x) { return tg::batch_norm_relu(x[0], Tensor(), Tensor(), Tensor(), Tensor(), true, 0.1, 1e-5, x[1]); }},
      {"batch_norm_relu eval + residual", {{2, 3, 2, 2}, {3}, {3}, {2, 3, 2, 2}},
       [](V x) {
         Tensor rm = tg::from_vector(std::vector<double>{0.1, -0.3, 0.5}, {3});
         Tensor rv = tg::from_vector(std::vector<double>{0.5, 1.5, 2.0}, {3});
         return tg::batch_norm_relu(x[0], rm, rv, x[1], x[2], false, 0.1, 1e-5, x[3]);
       }},
      {"batch_norm_relu eval", {{2, 3, 2, 2}, {3}, {3}},
       [](V x) {
         Tensor rm = tg::from_vector(std::vector<double>{0.1, -0.3, 0.5}, {3});
         Tensor rv = tg::from_vector(std::vector<double>{0.5, 1.5, 2.0}, {3});
         return tg::batch_norm_relu(x[0], rm, rv, x[1], x[2], false);
       }},
      {"max_pool2d 2", {{2, 3, 4, 4}}, [](V x) { return tg::max_pool2d(x[0], 2); }},
      {"max_pool2d 3 stride 2 pad 1", {{1, 2, 5, 5}}, [](V x) { return tg::max_pool2d(x[0], 3, 2, 1); }},
      {"max_pool2d 1 stride 2 (subsample)", {{1, 2, 5, 4}}, [](V x) { return tg::max_pool2d(x[0], 1, 2); }},
      {"avg_pool2d 2", {{2, 2, 4, 6}}, [](V x) { return tg::avg_pool2d(x[0], 2); }},
      {"avg_pool2d 3 stride 2 pad 1", {{1, 2, 5, 5}}, [](V x) { return tg::avg_pool2d(x[0], 3, 2, 1); }},
      {"adaptive_avg_pool2d 2x3", {{2, 2, 4, 6}}, [](V x) { return tg::adaptive_avg_pool2d(x[0], 2, 3); }},
      {"global_avg_pool2d", {{2, 3, 3, 3}}, [](V x) { return tg::global_avg_pool2d(x[0]); }},
      {"cnn composite", {{2, 2, 6, 6}, {3, 2, 3, 3}, {3}, {3}, {2, 12}, {2}},
       [](V x) {
         Tensor h = tg::conv2d(x[0], x[1], Tensor(), 1, 1);
         h = tg::max_pool2d(tg::relu(tg::batch_norm(h, Tensor(), Tensor(), x[2], x[3], true)), 3);
         return tg::cross_entropy(tg::linear(h.flatten(1), x[4], x[5]), labels({1, 0}));
       }},
      {"embedding (repeated indices)", {{6, 3}},
       [](V x) { return tg::embedding(x[0], tg::from_vector(std::vector<int64_t>{2, 4, 2, 0, 5, 2}, {2, 3})); }},
      // LSTM: x [T, B, I], h0, c0 [B, H], w_ih [4H, I], w_hh [4H, H], b_ih, b_hh [4H]; y, h and c all carry weight.
      {"lstm 4 steps, h0 and c0", {{4, 2, 3}, {2, 5}, {2, 5}, {20, 3}, {20, 5}, {20}, {20}},
       [](V x) {
         tg::LstmOutput o = tg::lstm(x[0], x[1], x[2], x[3], x[4], x[5], x[6]);
         return tg::concat({o.y.flatten(), o.h.flatten(), o.c.flatten()}, 0);
       }},
      {"lstm zero state, no bias, 1 step", {{1, 3, 2}, {16, 2}, {16, 4}},
       [](V x) {
         tg::LstmOutput o = tg::lstm(x[0], Tensor(), Tensor(), x[1], x[2]);
         return tg::concat({o.y.flatten(), o.c.flatten()}, 0);
       }},
      {"lstm 2 layers over 3 steps", {{3, 2, 3}, {16, 3}, {16, 4}, {16}, {16}, {16, 4}, {16, 4}, {16}, {16}},
       [](V x) {
         tg::LstmOutput l0 = tg::lstm(x[0], Tensor(), Tensor(), x[1], x[2], x[3], x[4]);
         tg::LstmOutput l1 = tg::lstm(tg::tanh(l0.y), Tensor(), Tensor(), x[5], x[6], x[7], x[8]);
         return tg::concat({l1.y.flatten(), l0.h.flatten(), l1.c.flatten()}, 0);
       }},
      {"lstm state carried into a second segment", {{2, 2, 3}, {2, 2, 3}, {2, 4}, {2, 4}, {16, 3}, {16, 4}, {16}, {16}},
       [](V x) {
         tg::LstmOutput a = tg::lstm(x[0], x[2], x[3], x[4], x[5], x[6], x[7]);
         tg::LstmOutput b = tg::lstm(x[1], a.h, a.c, x[4], x[5], x[6], x[7]);
         return tg::concat({a.y.flatten(), b.y.flatten(), b.c.flatten()}, 0);
       }},
      {"language model composite", {{7, 3}, {12, 3}, {12, 3}, {12}, {12}, {7, 3}, {7}},
       [](V x) {
         Tensor tokens = tg::from_vector(std::vector<int64_t>{1, 6, 0, 3, 3, 2}, {3, 2});
         tg::LstmOutput o = tg::lstm(tg::embedding(x[0], tokens), Tensor(), Tensor(), x[1], x[2], x[3], x[4]);
         Tensor logits = tg::linear(o.y.reshape({6, 3}), x[5], x[6]);
         return tg::cross_entropy(logits, labels({6, 0, 3, 3, 2, 5}));
       }},
      // the tensor API: indexing, method forms, comparisons as masks, where, stack, 1 / x
      {"t[i] and select", {{3, 4}}, [](V x) { return tg::concat({x[0][1], x[0].select(1, -1), x[0][2]}, 0); }},
      {"index with slices", {{3, 4, 2}}, [](V x) { return x[0].index({tg::Slice(1), tg::Slice(0, 3), 1}); }},
      {"unsqueeze and squeeze", {{3, 1, 2}}, [](V x) { return x[0].squeeze().unsqueeze(0) * x[0].squeeze(1); }},
      {"stack dim 1", {{2, 3}, {2, 3}, {2, 3}}, [](V x) { return tg::stack({x[0], x[1], x[2]}, 1); }},
      {"where (broadcast)", {{3, 4}, {4}},
       [](V x) { return tg::where(tg::from_vector(std::vector<double>{1, 0, 1}, {3, 1}), x[0], x[1]); }},
      {"where guarding log", {{5}}, [](V x) { return tg::where(x[0].gt(0.0), tg::log(x[0]), x[0] * 2.0); },
       Domain::AwayFromZero},
      {"abs", {{3, 4}}, [](V x) { return tg::abs(x[0]); }, Domain::AwayFromZero},
      {"erf", {{3, 4}}, [](V x) { return tg::erf(x[0]); }},
      {"1 / x", {{3, 4}}, [](V x) { return 1.0 / x[0]; }, Domain::AwayFromZero},
      {"methods sum(dim), mean(dim), exp, pow", {{3, 4}},
       [](V x) { return x[0].exp().sum(1) + x[0].pow(3).mean(1, false) + x[0].abs().sqrt().max(1); },
       Domain::AwayFromZero},
      {"masked by a comparison", {{4, 3}}, [](V x) { return x[0] * x[0].gt(0.1) + x[0].lt(-0.1); },
       Domain::AwayFromZero},
      {"custom op through record() (README)", {{3, 4}}, [](V x) { return cube(x[0]) * x[0]; }},
      // layers and losses composed of other ops
      {"gelu", {{3, 4}}, [](V x) { return tg::gelu(x[0]); }},
      {"gelu tanh approximation", {{3, 4}}, [](V x) { return tg::gelu(x[0], true); }},
      {"silu", {{3, 4}}, [](V x) { return tg::silu(x[0]); }},
      {"leaky_relu", {{3, 4}}, [](V x) { return tg::leaky_relu(x[0], 0.2); }, Domain::AwayFromZero},
      {"layer_norm last dim", {{3, 5}, {5}, {5}}, [](V x) { return tg::layer_norm(x[0], {5}, x[1], x[2]); }},
      {"layer_norm last two dims, no affine", {{2, 3, 4}}, [](V x) { return tg::layer_norm(x[0], {3, 4}); }},
      {"nll_loss of log_softmax", {{4, 5}},
       [](V x) { return tg::nll_loss(tg::log_softmax(x[0], 1), labels({0, 4, 2, 2})); }},
      {"nll_loss sum", {{3, 3}}, [](V x) { return tg::nll_loss(x[0], labels({1, 0, 2}), tg::Reduction::Sum); }},
      {"bce with logits", {{3, 4}, {3, 4}}, [](V x) { return tg::binary_cross_entropy_with_logits(x[0], tg::sigmoid(x[1])); }},
      {"bce with logits sum, large logits", {{6}},
       [](V x) {
         Tensor t = tg::from_vector(std::vector<double>{0, 1, 0.3, 1, 0, 0.5}, {6});
         return tg::binary_cross_entropy_with_logits(x[0] * 20.0, t, tg::Reduction::Sum);
       }},
      {"l1_loss", {{3, 4}, {3, 4}}, [](V x) { return tg::l1_loss(x[0], x[1]); }, Domain::AwayFromZero},
      {"smooth_l1_loss beta 0.5 (both sides)", {{4, 5}, {4, 5}},
       [](V x) { return tg::smooth_l1_loss(x[0], x[1], tg::Reduction::Sum, 0.5); }},
      {"huber_loss delta 0.7", {{4, 5}, {4, 5}}, [](V x) { return tg::huber_loss(x[0], x[1], tg::Reduction::Mean, 0.7); }},
      // GRU: x [T, B, I], h0 [B, H], w_ih [3H, I], w_hh [3H, H], b_ih, b_hh [3H]; y and h both carry weight.
      {"gru 3 steps, h0", {{3, 2, 3}, {2, 4}, {12, 3}, {12, 4}, {12}, {12}},
       [](V x) {
         tg::GruOutput o = tg::gru(x[0], x[1], x[2], x[3], x[4], x[5]);
         return tg::concat({o.y.flatten(), o.h.flatten()}, 0);
       }},
      {"gru zero state, no bias", {{2, 3, 2}, {9, 2}, {9, 3}},
       [](V x) { return tg::gru(x[0], Tensor(), x[1], x[2]).y; }},
      {"mlp composite", {{4, 3}, {5, 3}, {5}, {2, 5}, {2}},
       [](V x) {
         Tensor h = tg::tanh(tg::linear(x[0], x[1], x[2]));
         return tg::cross_entropy(tg::linear(h, x[3], x[4]), labels({0, 1, 1, 0}));
       }},
  };
  return cs;
}

}  // namespace

TEST_CASE("every op's gradient matches central finite differences (f64)") {
  for (const Case& c : cases()) {
    SUBCASE(c.name.c_str()) { check_case(c); }
  }
}

TEST_CASE("gradients accumulate over two uses and two backward passes") {
  Tensor x = tg::from_vector(std::vector<double>{1, 2, 3}, {3}).requires_grad_();
  tg::sum(x * 2.0 + x * x).backward();  // d/dx = 2 + 2x
  CHECK(x.grad().to_vector() == std::vector<double>{4, 6, 8});
  tg::sum(x).backward();  // accumulates +1
  CHECK(x.grad().to_vector() == std::vector<double>{5, 7, 9});
  x.zero_grad();
  CHECK_FALSE(x.grad().defined());
}

TEST_CASE("backward frees the tape and refuses a second pass") {
  Tensor x = tg::randn({4}, tg::default_generator(), tg::DType::F64).requires_grad_();
  Tensor loss = tg::sum(tg::exp(x));
  CHECK(tg::tape_size() >= 2);
  loss.backward();
  CHECK(tg::tape_size() == 0);
  CHECK_THROWS_WITH_AS(loss.backward(), doctest::Contains("already freed"), tg::Error);
}

TEST_CASE("a dropped graph frees itself") {
  Tensor x = tg::randn({4}).requires_grad_();
  { Tensor y = tg::sum(tg::exp(x) * 3.0); }
  CHECK(tg::tape_size() == 0);
}

TEST_CASE("backward misuse is a clear error") {
  Tensor x = tg::randn({3}).requires_grad_();
  Tensor y = tg::exp(x);
  CHECK_THROWS_WITH_AS(y.backward(), doctest::Contains("explicit gradient"), tg::Error);
  CHECK_THROWS_WITH_AS(y.backward(tg::ones({4})), doctest::Contains("does not match"), tg::Error);
  y.backward(tg::ones({3}));
  CHECK(x.grad().defined());
  Tensor c = tg::randn({3});
  CHECK_THROWS_WITH_AS(tg::sum(c).backward(), doctest::Contains("does not require grad"), tg::Error);
}

TEST_CASE("NoGradGuard and detach stop recording") {
  Tensor x = tg::randn({3}).requires_grad_();
  {
    tg::NoGradGuard ng;
    Tensor y = tg::exp(x);
    CHECK_FALSE(y.requires_grad());
  }
  CHECK(tg::grad_enabled());
  Tensor d = x.detach();
  CHECK_FALSE(d.requires_grad());
  CHECK(d.raw_data() == x.raw_data());
  Tensor z = tg::sum(x * d);
  z.backward();
  CHECK(x.grad().to_vector() == d.to_vector());  // d acted as a constant
}

TEST_CASE("f32 gradients agree with f64 ones") {
  tg::Generator gen(3);
  Tensor a64 = tg::randn({8, 6}, gen, tg::DType::F64);
  Tensor w64 = tg::randn({4, 6}, gen, tg::DType::F64);
  Tensor a32 = a64.to(tg::DType::F32).requires_grad_(), w32 = w64.to(tg::DType::F32).requires_grad_();
  a64.requires_grad_();
  w64.requires_grad_();
  Tensor l64 = tg::cross_entropy(tg::linear(tg::relu(a64), w64), labels({0, 1, 2, 3, 0, 1, 2, 3}));
  Tensor l32 = tg::cross_entropy(tg::linear(tg::relu(a32), w32), labels({0, 1, 2, 3, 0, 1, 2, 3}));
  CHECK(l32.item() == doctest::Approx(l64.item()).epsilon(1e-5));
  l64.backward();
  l32.backward();
  auto g64 = w64.grad().to_vector(), g32 = w32.grad().to_vector();
  for (size_t i = 0; i < g64.size(); ++i) CHECK(g32[i] == doctest::Approx(g64[i]).epsilon(1e-4).scale(1e-3));
}

TEST_CASE("leaves never share gradient storage") {
  Tensor a = tg::randn({3}).requires_grad_(), b = tg::randn({3}).requires_grad_();
  tg::sum(a + b).backward();  // add hands the same gradient tensor to both inputs
  a.grad().fill_(5.0);        // what a user's in-place clipping does
  CHECK(b.grad().to_vector() == V{1, 1, 1});
  Tensor seed = tg::ones({3});
  Tensor c = tg::randn({3}).requires_grad_();
  (c * 1.0).backward(seed);
  seed.fill_(7.0);
  CHECK(c.grad().to_vector() == V{1, 1, 1});
}
