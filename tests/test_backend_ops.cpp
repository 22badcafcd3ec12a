// The backend parity harness (in the style of ggml's test-backend-ops): every op with a device twin runs on
// random inputs, for several shapes (broadcast, transposed, batched), in f32 and f64, forward and backward, on
// the CPU and on the device under test; outputs and input gradients must agree: f64 to 1e-12 relative, f32 to
// 1e-5, reductions with a bound that grows with the number of terms.
//
// The device comes from TG_TEST_DEVICE (cuda or test). On cuda without a GPU it is SKIPPED (exit 77, "no CUDA
// device"); on the test device (the CPU kernels under another tag) it checks the harness itself in CI.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <iostream>

#include "tapegrad/nn/utils.hpp"
#include "tapegrad/optim/make.hpp"
#include "tapegrad/tapegrad.hpp"

namespace tg = tapegrad;
using tg::Device;
using tg::DType;
using tg::Shape;
using tg::Tensor;

namespace {

Device g_device = Device::Test;

// Inputs: each a shape, and the domain its values are drawn from.
enum class Domain { Normal, Positive, Labels };
struct Input {
  Shape shape;
  Domain domain = Domain::Normal;
  int64_t classes = 0;  // Labels: I64 in [0, classes)
};
using Fn = std::function<Tensor(const std::vector<Tensor>&)>;
struct Case {
  std::string name;
  std::vector<Input> inputs;
  Fn f;
  double terms = 1;  // the longest sum behind one output element: the bound grows with it
};

// a matches the reference b: |a - b| <= tol * terms * max(1, |b|) everywhere (NaNs must match too).
bool close(const std::vector<double>& a, const std::vector<double>& b, double tol, std::string& why) {
  if (a.size() != b.size()) {
    why = std::to_string(a.size()) + " vs " + std::to_string(b.size()) + " elements";
    return false;
  }
  for (size_t i = 0; i < a.size(); ++i) {
    bool ok = std::isnan(b[i]) ? std::isnan(a[i]) : std::abs(a[i] - b[i]) <= tol * std::max(1.0, std::abs(b[i]));
    if (!ok) {
      why = "element " + std::to_string(i) + ": " + std::to_string(a[i]) + " vs " + std::to_string(b[i]);
      return false;
    }
  }
  return true;
}

std::vector<Tensor> make_inputs(const Case& c, DType d, uint64_t seed) {
  tg::Generator g(seed);
  std::vector<Tensor> in;
  for (const Input& i : c.inputs) {
    if (i.domain == Domain::Labels) in.push_back(tg::randint(i.classes, i.shape, g));
    else if (i.domain == Domain::Positive) in.push_back(tg::add(tg::rand(i.shape, g, d), 0.5));
    else in.push_back(tg::randn(i.shape, g, d));
  }
  return in;
}

// Runs c on dev from the same inputs: the output and each float input's gradient, as host vectors.
std::vector<std::vector<double>> run(const Case& c, DType d, Device dev, uint64_t seed) {
  std::vector<Tensor> in;
  for (Tensor& t : make_inputs(c, d, seed)) {
    Tensor m = t.to(dev);
    if (m.dtype() != DType::I64) m.requires_grad_();
    in.push_back(m);
  }
  Tensor y = c.f(in);
  std::vector<std::vector<double>> out{y.to_vector()};
  if (y.dtype() == DType::I64 || !y.requires_grad()) return out;
  tg::Generator g(seed + 1);
  y.backward(tg::randn(y.shape(), g, y.dtype()).to(dev));
  for (Tensor& t : in)
    if (t.dtype() != DType::I64) out.push_back(t.grad().defined() ? t.grad().to_vector() : std::vector<double>{});
  return out;
}

void check(const Case& c) {
  for (DType d : {DType::F32, DType::F64}) {
    const double tol = (d == DType::F64 ? 1e-12 : 1e-5) * c.terms;
    for (uint64_t seed : {1u, 2u}) {
      auto ref = run(c, d, Device::CPU, seed), got = run(c, d, g_device, seed);
      REQUIRE(ref.size() == got.size());
      for (size_t k = 0; k < ref.size(); ++k) {
        std::string why;
        CHECK_MESSAGE(close(got[k], ref[k], tol, why), c.name, " ", tg::name(d), " seed ", seed,
                      k == 0 ? " output" : " gradient of input " + std::to_string(k - 1), ": ", why);
      }
    }
  }
}

Tensor first(const std::vector<Tensor>& x) { return x[0]; }

}  // namespace

TEST_CASE("the comparison catches a wrong element and a missing NaN") {
  std::string why;
  CHECK(close({1.0, 2.0}, {1.0, 2.0 + 1e-13}, 1e-12, why));
  CHECK_FALSE(close({1.0, 2.0}, {1.0, 2.0 + 1e-9}, 1e-12, why));
  CHECK(why.find("element 1") == 0);
  CHECK_FALSE(close({1.0, 0.0}, {1.0, NAN}, 1e-12, why));
}

TEST_CASE("unary ops and affine") {
  const std::vector<Shape> shapes{{7}, {3, 5}, {2, 3, 4}};
  for (const Shape& s : shapes) {
    check({"exp", {{s}}, [](auto& x) { return tg::exp(x[0]); }});
    check({"log", {{s, Domain::Positive}}, [](auto& x) { return tg::log(x[0]); }});
    check({"sqrt", {{s, Domain::Positive}}, [](auto& x) { return tg::sqrt(x[0]); }});
    check({"tanh", {{s}}, [](auto& x) { return tg::tanh(x[0]); }});
    check({"sigmoid", {{s}}, [](auto& x) { return tg::sigmoid(x[0]); }});
    check({"relu", {{s}}, [](auto& x) { return tg::relu(x[0]); }});
    check({"pow 2", {{s}}, [](auto& x) { return tg::pow(x[0], 2.0); }});
    check({"pow 1.5", {{s, Domain::Positive}}, [](auto& x) { return tg::pow(x[0], 1.5); }});
    check({"affine", {{s}}, [](auto& x) { return x[0] * 2.5 + 1.0; }});
  }
}

TEST_CASE("batch norm + ReLU (+ residual), fused: training and evaluation") {
  // x [N, C, H, W], weight, bias [C], residual like x; the running statistics are fresh constants on x's device.
  auto bn = [](bool training, bool residual) {
    return [=](auto& x) {
      tg::TensorOptions o{x[0].dtype(), x[0].device()};
      Tensor rm = tg::zeros({x[0].size(1)}, o), rv = tg::ones({x[0].size(1)}, o);
      return tg::batch_norm_relu(x[0], rm, rv, x[1], x[2], training, 0.1, 1e-5, residual ? x[3] : Tensor());
    };
  };
  for (bool training : {true, false})
    for (bool residual : {false, true})
      check({std::string("batch_norm_relu") + (training ? " train" : " eval") + (residual ? " + residual" : ""),
             {{{2, 3, 5, 5}}, {{3}}, {{3}}, {{2, 3, 5, 5}}},
             bn(training, residual),
             50});
}

TEST_CASE("binary ops with broadcasting (the gradients reduce with sum_to)") {
  const std::vector<std::pair<Shape, Shape>> pairs{
      {{4, 5}, {4, 5}}, {{4, 5}, {5}}, {{3, 1, 5}, {4, 1}}, {{2, 3, 4}, {}}, {{1}, {6, 7}}, {{5, 1}, {1, 6}}};
  for (auto& [a, b] : pairs) {
    double terms = static_cast<double>(std::max(tg::numel(a), tg::numel(b)));
    check({"add", {{a}, {b}}, [](auto& x) { return x[0] + x[1]; }, terms});
    check({"sub", {{a}, {b}}, [](auto& x) { return x[0] - x[1]; }, terms});
    check({"mul", {{a}, {b}}, [](auto& x) { return x[0] * x[1]; }, terms});
    check({"div", {{a}, {b, Domain::Positive}}, [](auto& x) { return x[0] / x[1]; }, terms});
  }
  check({"expand", {{{3, 1}}}, [](auto& x) { return tg::expand(x[0], {2, 3, 4}); }, 8});
}

TEST_CASE("reductions, max, argmax") {
  for (const Shape& s : std::vector<Shape>{{10}, {6, 7}, {3, 4, 5}}) {
    double n = static_cast<double>(tg::numel(s));
    check({"sum", {{s}}, [](auto& x) { return tg::sum(x[0]); }, n});
    check({"mean", {{s}}, [](auto& x) { return tg::mean(x[0]); }, n});
    check({"sum dim 0", {{s}}, [](auto& x) { return tg::sum(x[0], {0}); }, n});
    check({"mean dim -1 keepdim", {{s}}, [](auto& x) { return tg::mean(x[0], {-1}, true); }, n});
    check({"max", {{s}}, [](auto& x) { return tg::max(x[0]); }});
    check({"max dim 0", {{s}}, [](auto& x) { return tg::max(x[0], {0}); }});
    check({"argmax dim -1", {{s}}, [](auto& x) { return tg::argmax(x[0], -1); }});
  }
}

TEST_CASE("softmax, log_softmax, cross_entropy") {
  for (const Shape& s : std::vector<Shape>{{5, 10}, {3, 4, 6}, {1, 1000}}) {
    double n = static_cast<double>(s.back());
    check({"softmax dim -1", {{s}}, [](auto& x) { return tg::softmax(x[0], -1); }, n});
    check({"softmax dim 0", {{s}}, [](auto& x) { return tg::softmax(x[0], 0); }, n});
    check({"log_softmax dim -1", {{s}}, [](auto& x) { return tg::log_softmax(x[0], -1); }, n});
  }
  for (Shape s : std::vector<Shape>{{8, 10}, {3, 1000}}) {
    double n = static_cast<double>(s[0] * s[1]);
    check({"cross_entropy mean", {{s}, {{s[0]}, Domain::Labels, s[1]}},
           [](auto& x) { return tg::cross_entropy(x[0], x[1]); }, n});
    check({"cross_entropy sum", {{s}, {{s[0]}, Domain::Labels, s[1]}},
           [](auto& x) { return tg::cross_entropy(x[0], x[1], tg::Reduction::Sum); }, n});
  }
}

TEST_CASE("matrix products: gemm (plain, transposed, batched, shared operand) and linear") {
  check({"matmul", {{{4, 6}}, {{6, 5}}}, [](auto& x) { return tg::matmul(x[0], x[1]); }, 6});
  check({"matmul a^T b", {{{6, 4}}, {{6, 5}}}, [](auto& x) { return tg::matmul(x[0].t(), x[1]); }, 6});
  check({"matmul a b^T", {{{4, 6}}, {{5, 6}}}, [](auto& x) { return tg::matmul(x[0], x[1].t()); }, 6});
  check({"matmul batched", {{{3, 4, 6}}, {{3, 6, 5}}}, [](auto& x) { return tg::matmul(x[0], x[1]); }, 18});
  check({"matmul shared", {{{3, 4, 6}}, {{6, 5}}}, [](auto& x) { return tg::matmul(x[0], x[1]); }, 18});
  check({"matmul large", {{{33, 70}}, {{70, 65}}}, [](auto& x) { return tg::matmul(x[0], x[1]); }, 70});
  check({"linear", {{{8, 12}}, {{5, 12}}, {{5}}}, [](auto& x) { return tg::linear(x[0], x[1], x[2]); }, 12});
  check({"linear no bias", {{{8, 12}}, {{5, 12}}}, [](auto& x) { return tg::linear(x[0], x[1]); }, 12});
}

TEST_CASE("layout: permute, transpose, slice, concat, reshape, dtype conversion") {
  check({"permute", {{{2, 3, 4}}}, [](auto& x) { return x[0].permute({2, 0, 1}); }});
  check({"transpose", {{{5, 7}}}, [](auto& x) { return x[0].t(); }});
  check({"slice", {{{4, 6, 3}}}, [](auto& x) { return x[0].slice(1, 2, 5); }});
  check({"concat", {{{2, 3}}, {{2, 4}}}, [](auto& x) { return tg::concat({x[0], x[1]}, 1); }});
  check({"concat dim 0", {{{2, 3}}, {{1, 3}}}, [](auto& x) { return tg::concat({x[0], x[1]}, 0); }});
  check({"reshape", {{{2, 6}}}, [](auto& x) { return x[0].reshape({3, 4}) * 2.0; }});
  check({"to f64 and back", {{{3, 4}}}, [](auto& x) { return x[0].to(DType::F64).to(x[0].dtype()) * 3.0; }});
}

TEST_CASE("embedding, dropout, gradient clipping (sum_squares), fill") {
  check({"embedding", {{{7, 5}}, {{4, 3}, Domain::Labels, 7}}, [](auto& x) { return tg::embedding(x[0], x[1]); },
         12});
  check({"dropout", {{{40, 30}}}, [](auto& x) {
           tg::Generator g(3);
           return tg::dropout(x[0], 0.4, true, g);
         }});
  check({"zeros_like + x", {{{3, 3}}}, [](auto& x) { return tg::zeros_like(x[0]) + x[0]; }});
  for (DType d : {DType::F32, DType::F64}) {
    auto norm = [&](Device dev) {
      tg::Generator g(4);
      std::vector<Tensor> ps;
      for (Shape s : std::vector<Shape>{{100, 30}, {7}}) {
        Tensor p = tg::zeros(s, {d, dev}).requires_grad_();
        p.set_grad(tg::randn(s, g, d).to(dev));
        ps.push_back(p);
      }
      double total = tg::nn::clip_grad_norm(ps, 1.0);
      return std::make_pair(total, ps[0].grad().to_vector());
    };
    auto [ref_total, ref_g] = norm(Device::CPU);
    auto [got_total, got_g] = norm(g_device);
    CHECK(std::abs(got_total - ref_total) <= 1e-12 * 3007 * ref_total);
    std::string why;
    CHECK_MESSAGE(close(got_g, ref_g, (d == DType::F64 ? 1e-12 : 1e-5) * 3007, why), why);
  }
}

// One LSTM layer (cuDNN's RNN on CUDA): y, the final h and c as one output, and the gradients of x, the
// initial state and all four weights; with a given or a zero initial state, without biases, with the state
// carried from one segment into the next (as a language model's truncated backpropagation does), and in
// evaluation (no backward: cuDNN's inference mode). A sum of I + H terms per gate per step, T steps deep.
TEST_CASE("lstm: forward, gradients, carried state, evaluation") {
  auto all = [](const tg::LstmOutput& o) {
    const int64_t H = o.h.size(1);
    return tg::concat({o.y.reshape({-1, H}), o.h, o.c}, 0);
  };
  struct Size {
    int64_t T, B, I, H;
  };
  for (Size z : std::vector<Size>{{1, 1, 1, 1}, {3, 2, 4, 5}, {6, 3, 7, 16}, {4, 5, 33, 20}}) {
    const Shape x{z.T, z.B, z.I}, s{z.B, z.H}, wi{4 * z.H, z.I}, wh{4 * z.H, z.H}, b{4 * z.H};
    const double terms = static_cast<double>((z.I + z.H + 2) * z.T);
    const std::string at = " T" + std::to_string(z.T) + " B" + std::to_string(z.B) + " I" + std::to_string(z.I) +
                           " H" + std::to_string(z.H);
    check({"lstm" + at, {{x}, {s}, {s}, {wi}, {wh}, {b}, {b}},
           [&](auto& v) { return all(tg::lstm(v[0], v[1], v[2], v[3], v[4], v[5], v[6])); }, terms});
    check({"lstm zero state" + at, {{x}, {wi}, {wh}, {b}, {b}},
           [&](auto& v) { return all(tg::lstm(v[0], Tensor(), Tensor(), v[1], v[2], v[3], v[4])); }, terms});
    check({"lstm no bias" + at, {{x}, {s}, {s}, {wi}, {wh}},
           [&](auto& v) { return all(tg::lstm(v[0], v[1], v[2], v[3], v[4])); }, terms});
    check({"lstm evaluation" + at, {{x}, {s}, {s}, {wi}, {wh}, {b}, {b}}, [&](auto& v) {
             tg::NoGradGuard no_grad;
             return all(tg::lstm(v[0], v[1], v[2], v[3], v[4], v[5], v[6]));
           }, terms});
    if (z.T > 1)
      check({"lstm two segments" + at, {{x}, {s}, {s}, {wi}, {wh}, {b}, {b}}, [&](auto& v) {
               const int64_t cut = z.T / 2;
               auto a = tg::lstm(v[0].slice(0, 0, cut), v[1], v[2], v[3], v[4], v[5], v[6]);
               auto c = tg::lstm(v[0].slice(0, cut, z.T), a.h, a.c, v[3], v[4], v[5], v[6]);
               return tg::concat({a.y.reshape({-1, z.H}), all(c)}, 0);
             }, terms});
  }
}

// The optimizer updates (multi-tensor kernels): each spec takes one kernel with one set of its flags through
// three steps (the first step and later ones differ) on a list that mixes a tensor of several chunks of the CUDA
// twin (65536 elements each) with small ones, and more tensors than one launch's table holds (560); parameters
// and state must agree with the CPU twin's.
TEST_CASE("optimizer updates") {
  constexpr size_t kTensors = 600;
  for (DType d : {DType::F32, DType::F64}) {
    for (const char* spec : {"sgd:lr=0.1", "sgdm:lr=0.1,weight_decay=1e-3,dampening=0.2",
                             "sgdm:lr=0.1,nesterov=true", "adagrad:lr_decay=0.1,weight_decay=1e-3",
                             "adam:weight_decay=1e-3", "amsgrad", "adamw", "adabound:weight_decay=1e-3", "amsbound",
                             "adaboundw"}) {
      auto run = [&](Device dev) {
        tg::Generator g(3);
        std::vector<Tensor> ps;
        std::vector<Shape> shapes{{150000}, {3, 5}, {7}};
        shapes.resize(kTensors, Shape{2});
        for (const Shape& s : shapes) ps.push_back(tg::randn(s, g, d).to(dev).requires_grad_());
        auto opt = tg::optim::make(spec, ps);
        for (int t = 0; t < 3; ++t) {
          for (Tensor& p : ps) p.set_grad(tg::randn(p.shape(), g, d).to(dev));
          opt->step();
        }
        std::vector<std::vector<double>> out;
        for (Tensor& p : ps) out.push_back(p.to_vector());
        for (auto& [k, t] : opt->state_dict()) out.push_back(t.to_vector());
        return out;
      };
      auto ref = run(Device::CPU), got = run(g_device);
      REQUIRE(ref.size() == got.size());
      for (size_t k = 0; k < ref.size(); ++k) {
        std::string why;
        CHECK_MESSAGE(close(got[k], ref[k], d == DType::F64 ? 1e-12 : 1e-5, why), spec, " ", tg::name(d),
                      k < kTensors ? " parameter " : " state ", k, ": ", why);
      }
    }
  }
}

// Convolution (cuDNN on CUDA): stride 1 and 2, padding, 1x1, non-square kernels, with and without bias. The
// bound grows with the longest sum: C R S terms per output, K R S per input gradient, N P Q per weight gradient.
TEST_CASE("convolution: strides, padding, 1x1, non-square kernels, bias or none") {
  struct Conv {
    Shape x, w;
    int64_t stride, padding;
    bool bias;
  };
  const std::vector<Conv> convs{{{2, 3, 7, 7}, {4, 3, 3, 3}, 1, 1, true},  {{2, 3, 8, 8}, {5, 3, 3, 3}, 2, 1, false},
                                {{3, 4, 5, 5}, {6, 4, 1, 1}, 1, 0, true},  {{2, 4, 6, 6}, {3, 4, 1, 1}, 2, 0, false},
                                {{2, 3, 6, 9}, {4, 3, 2, 5}, 1, 2, true},  {{2, 2, 9, 7}, {3, 2, 3, 2}, 2, 0, false},
                                {{1, 8, 4, 4}, {8, 8, 3, 3}, 1, 1, true},  {{4, 2, 5, 5}, {2, 2, 5, 5}, 1, 2, false}};
  for (const Conv& c : convs) {
    const int64_t P = (c.x[2] + 2 * c.padding - c.w[2]) / c.stride + 1, Q = (c.x[3] + 2 * c.padding - c.w[3]) / c.stride + 1;
    const double terms = static_cast<double>(
        std::max({c.w[1] * c.w[2] * c.w[3], c.w[0] * c.w[2] * c.w[3], c.x[0] * P * Q}));
    const std::string name = "conv2d x " + tg::to_string(c.x) + " w " + tg::to_string(c.w) + " stride " +
                             std::to_string(c.stride) + " padding " + std::to_string(c.padding);
    if (c.bias)
      check({name + " bias", {{c.x}, {c.w}, {{c.w[0]}}},
             [c](auto& x) { return tg::conv2d(x[0], x[1], x[2], c.stride, c.padding); }, terms});
    else
      check({name, {{c.x}, {c.w}}, [c](auto& x) { return tg::conv2d(x[0], x[1], Tensor(), c.stride, c.padding); },
             terms});
  }
}

// With set_deterministic(true) the device may only choose deterministic algorithms: two runs of a convolution's
// forward and backward (the backward passes are where cuDNN has atomics-based ones) must agree bit for bit.
TEST_CASE("deterministic convolutions: two runs give identical outputs and gradients") {
  tg::set_deterministic(true);
  auto run = [] {
    tg::Generator g(7);
    Tensor x = tg::randn({8, 16, 12, 12}, g).to(g_device).requires_grad_();
    Tensor w = tg::randn({32, 16, 3, 3}, g).to(g_device).requires_grad_();
    Tensor b = tg::randn({32}, g).to(g_device).requires_grad_();
    Tensor y = tg::conv2d(x, w, b, 2, 1);
    y.backward(tg::randn(y.shape(), g).to(g_device));
    return std::vector<std::vector<double>>{y.to_vector(), x.grad().to_vector(), w.grad().to_vector(),
                                            b.grad().to_vector()};
  };
  CHECK(tg::deterministic());
  const auto first_run = run(), second_run = run();
  tg::set_deterministic(false);
  CHECK_FALSE(tg::deterministic());
  REQUIRE(first_run.size() == second_run.size());
  for (size_t k = 0; k < first_run.size(); ++k) CHECK_MESSAGE(first_run[k] == second_run[k], "tensor ", k, " differs");
}

// With TF32 allowed, f32 convolutions may run on tensor cores (10-bit mantissas: about 1e-3 relative per product):
// they must still agree with the CPU's within the worst case of that rounding (a check that the path runs and
// is not garbage, not of its accuracy).
TEST_CASE("convolution with TF32 allowed") {
  tg::set_allow_tf32(true);
  auto run = [](Device dev) {
    tg::Generator g(9);
    Tensor x = tg::randn({4, 16, 10, 10}, g).to(dev).requires_grad_();
    Tensor w = tg::randn({24, 16, 3, 3}, g).to(dev).requires_grad_();
    Tensor y = tg::conv2d(x, w, Tensor(), 1, 1);
    y.backward(tg::randn(y.shape(), g).to(dev));
    return std::vector<std::vector<double>>{y.to_vector(), x.grad().to_vector(), w.grad().to_vector()};
  };
  const auto ref = run(Device::CPU), got = run(g_device);
  tg::set_allow_tf32(false);
  const double terms[] = {16 * 9, 24 * 9, 4 * 10 * 10};  // the longest sums of y, gx, gw
  for (size_t k = 0; k < ref.size(); ++k) {
    std::string why;
    CHECK_MESSAGE(close(got[k], ref[k], 2e-3 * terms[k], why), "tensor ", k, ": ", why);
  }
}

// Batch norm (cuDNN on CUDA), per channel over M = N * inner values: training (batch statistics) and evaluation
// (running statistics as inputs), with weight and bias or without, 4-D and 2-D inputs.
TEST_CASE("batch norm: training and evaluation, affine or not, 4-D and 2-D") {
  for (const Shape& s : std::vector<Shape>{{4, 3, 5, 5}, {8, 6}, {2, 5, 3, 7}}) {
    const int64_t C = s[1];
    const double M = static_cast<double>(tg::numel(s) / C);
    check({"batch_norm train " + tg::to_string(s), {{s}, {{C}}, {{C}}},
           [](auto& x) { return tg::batch_norm(x[0], Tensor(), Tensor(), x[1], x[2], true); }, M});
    check({"batch_norm train no affine " + tg::to_string(s), {{s}},
           [](auto& x) { return tg::batch_norm(x[0], Tensor(), Tensor(), Tensor(), Tensor(), true); }, M});
    check({"batch_norm eval " + tg::to_string(s), {{s}, {{C}}, {{C}, Domain::Positive}, {{C}}, {{C}}},
           [](auto& x) { return tg::batch_norm(x[0], x[1], x[2], x[3], x[4], false); }, M});
    check({"batch_norm eval no affine " + tg::to_string(s), {{s}, {{C}}, {{C}, Domain::Positive}},
           [](auto& x) { return tg::batch_norm(x[0], x[1], x[2], Tensor(), Tensor(), false); }, M});
  }
}

// The running statistics move as on the CPU (momentum towards the batch mean and the unbiased variance):
// outputs of two training steps and the statistics after them.
TEST_CASE("batch norm: the running statistics after two training steps") {
  for (DType d : {DType::F32, DType::F64})
    for (const Shape& s : std::vector<Shape>{{4, 3, 5, 5}, {8, 6}}) {
      const int64_t C = s[1];
      auto run = [&](Device dev) {
        tg::Generator g(5);
        Tensor rm = tg::zeros({C}, {d, dev}), rv = tg::ones({C}, {d, dev});
        Tensor w = tg::randn({C}, g, d).to(dev), b = tg::randn({C}, g, d).to(dev);
        std::vector<std::vector<double>> out;
        for (int step = 0; step < 2; ++step) {
          Tensor x = (tg::randn(s, g, d) * 2.0 + 1.0).to(dev);
          out.push_back(tg::batch_norm(x, rm, rv, w, b, true, 0.1, 1e-5).to_vector());
        }
        out.push_back(rm.to_vector());
        out.push_back(rv.to_vector());
        return out;
      };
      const auto ref = run(Device::CPU), got = run(g_device);
      const double tol = (d == DType::F64 ? 1e-12 : 1e-5) * static_cast<double>(tg::numel(s) / C);
      const char* what[] = {"output of step 1", "output of step 2", "running_mean", "running_var"};
      for (size_t k = 0; k < ref.size(); ++k) {
        std::string why;
        CHECK_MESSAGE(close(got[k], ref[k], tol, why), tg::name(d), " ", tg::to_string(s), " ", what[k], ": ", why);
      }
    }
}

// Pooling (small kernels on CUDA): max (padding is -inf; the backward scatters through the argmax indices) and
// average (count_include_pad), non-overlapping and overlapping windows (up to R S outputs per input), global and
// adaptive average (the same kernels).
TEST_CASE("pooling: max and average, strides and padding, global and adaptive average") {
  for (const Shape& s : std::vector<Shape>{{2, 3, 8, 8}, {1, 2, 7, 5}}) {
    const std::string in = std::string(" ").append(tg::to_string(s));
    check({"max_pool2d 2" + in, {{s}}, [](auto& x) { return tg::max_pool2d(x[0], 2); }});
    check({"max_pool2d 3 stride 2 padding 1" + in, {{s}}, [](auto& x) { return tg::max_pool2d(x[0], 3, 2, 1); }, 9});
    check({"max_pool2d 3 stride 1 padding 1" + in, {{s}}, [](auto& x) { return tg::max_pool2d(x[0], 3, 1, 1); }, 9});
    check({"avg_pool2d 2" + in, {{s}}, [](auto& x) { return tg::avg_pool2d(x[0], 2); }, 4});
    check({"avg_pool2d 3 stride 2 padding 1" + in, {{s}}, [](auto& x) { return tg::avg_pool2d(x[0], 3, 2, 1); }, 9});
    check({"avg_pool2d 3 stride 1 padding 1" + in, {{s}}, [](auto& x) { return tg::avg_pool2d(x[0], 3, 1, 1); }, 9});
  }
  check({"global_avg_pool2d", {{{2, 4, 6, 6}}}, [](auto& x) { return tg::global_avg_pool2d(x[0]); }, 36});
  check({"adaptive_avg_pool2d 2x3", {{{2, 3, 8, 6}}}, [](auto& x) { return tg::adaptive_avg_pool2d(x[0], 2, 3); }, 8});
}

TEST_CASE("bad labels and indices: an error naming the value (on CUDA at the next host wait), then work goes on") {
  Tensor logits = tg::randn({3, 5}, g_device), w = tg::randn({4, 2}, g_device);
  Tensor labels = tg::from_vector({1, 7, 0}, {3}, g_device), idx = tg::from_vector({0, -1}, {2}, g_device);
  CHECK_THROWS_WITH_AS(tg::cross_entropy(logits, labels).item(), doctest::Contains("label 7 at "), tg::Error);
  CHECK_THROWS_WITH_AS(tg::embedding(w, idx).to_vector(), doctest::Contains("index -1 at "), tg::Error);
  Tensor good = tg::from_vector({1, 4, 0}, {3}, g_device);
  const double got = tg::cross_entropy(logits, good).item(), ref = tg::cross_entropy(logits.cpu(), good.cpu()).item();
  CHECK(std::abs(got - ref) <= 1e-5 * std::max(1.0, std::abs(ref)));
}

int main(int argc, char** argv) {
  const char* env = std::getenv("TG_TEST_DEVICE");
  g_device = tg::device_from_name(env ? env : "test");
  if (g_device == Device::CPU) {
    std::cerr << "TG_TEST_DEVICE=cpu: the harness compares a device against the CPU\n";
    return 2;
  }
  if (g_device == Device::CUDA && !tg::cuda_available()) {
    std::cout << "SKIP: no CUDA device (a CPU-only build, or no GPU on this machine)\n";
    return 77;
  }
  std::cout << "backend ops: cpu vs " << tg::name(g_device) << "\n";
  doctest::Context ctx;
  ctx.applyCommandLine(argc, argv);
  return ctx.run();
}
