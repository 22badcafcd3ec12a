// The recurrent stack: the lstm op against the same recurrence composed of primitive ops (values and every
// gradient, with the threaded recurrence), embedding, nn::LSTM (names, shapes, init, state, dropout),
// clip_grad_norm, and the language model (parameter count, shapes, tying, a training step, checkpoints).
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <string>

#include "tapegrad/models/lstm_lm.hpp"
#include "tapegrad/tapegrad.hpp"
#include "check_uniform.hpp"

namespace tg = tapegrad;
using tg::Shape;
using tg::Tensor;
using V = std::vector<double>;

namespace {

// The LSTM recurrence written with primitive ops (matmul, sigmoid, tanh, slice): the reference.
tg::LstmOutput lstm_reference(const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih,
                              const Tensor& w_hh, const Tensor& b_ih, const Tensor& b_hh) {
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2), H = w_hh.size(1);
  Tensor h = h0, c = c0;
  std::vector<Tensor> ys;
  for (int64_t t = 0; t < T; ++t) {
    Tensor a = tg::matmul(x.slice(0, t, t + 1).reshape({B, I}), w_ih.t()) + b_ih + tg::matmul(h, w_hh.t()) + b_hh;
    Tensor i = tg::sigmoid(a.slice(1, 0, H)), f = tg::sigmoid(a.slice(1, H, 2 * H));
    Tensor g = tg::tanh(a.slice(1, 2 * H, 3 * H)), o = tg::sigmoid(a.slice(1, 3 * H, 4 * H));
    c = f * c + i * g;
    h = o * tg::tanh(c);
    ys.push_back(h.reshape({1, B, H}));
  }
  return {tg::concat(ys, 0), h, c};
}

void check_close(const Tensor& a, const Tensor& b, double tol, const std::string& what) {
  CAPTURE(what);
  REQUIRE(a.defined());
  REQUIRE(b.defined());
  REQUIRE(a.shape() == b.shape());
  auto va = a.to_vector<double>(), vb = b.to_vector<double>();
  double worst = 0;
  for (size_t i = 0; i < va.size(); ++i) worst = std::max(worst, std::abs(va[i] - vb[i]) / (1.0 + std::abs(vb[i])));
  CHECK(worst <= tol);
}

// Runs op (lstm or the reference) on copies of the inputs, backward of sum(y r1) + sum(h r2) + sum(c r3),
// and returns the outputs followed by the gradients of the seven inputs.
template <class Op>
std::vector<Tensor> run_lstm(Op op, const std::vector<Tensor>& inputs, const std::vector<Tensor>& weights) {
  std::vector<Tensor> in;
  for (const Tensor& t : inputs) in.push_back(t.clone().requires_grad_());
  tg::LstmOutput o = op(in[0], in[1], in[2], in[3], in[4], in[5], in[6]);
  Tensor loss = tg::sum(o.y * weights[0]) + tg::sum(o.h * weights[1]) + tg::sum(o.c * weights[2]);
  loss.backward();
  std::vector<Tensor> out{o.y.detach(), o.h.detach(), o.c.detach()};
  for (const Tensor& t : in) out.push_back(t.grad());
  return out;
}

}  // namespace

TEST_CASE("lstm op equals the recurrence composed of primitive ops: values and all gradients, 1 and 2 threads") {
  // B * 4H * H = 8 * 400 * 100 is above the size where the recurrence runs on several threads; H = 100 is not
  // a multiple of the 16-unit bands, so the last band is partial.
  const int64_t T = 5, B = 8, I = 30, H = 100;
  tg::Generator g(11);
  auto r = [&](const Shape& s, double scale) { return tg::randn(s, g, tg::DType::F64) * scale; };
  const std::vector<Tensor> inputs{r({T, B, I}, 1.0),      r({B, H}, 0.5),      r({B, H}, 0.5), r({4 * H, I}, 0.2),
                                   r({4 * H, H}, 0.1), r({4 * H}, 0.3), r({4 * H}, 0.3)};
  const std::vector<Tensor> weights{r({T, B, H}, 1.0), r({B, H}, 1.0), r({B, H}, 1.0)};
  const int threads = tg::num_threads();
  const auto ref = run_lstm(lstm_reference, inputs, weights);
  const char* names[] = {"y", "h", "c", "dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh"};
  for (int nt : {1, 2}) {
    CAPTURE(nt);
    tg::set_num_threads(nt);
    const auto got = run_lstm(tg::lstm, inputs, weights);
    for (size_t k = 0; k < ref.size(); ++k) check_close(got[k], ref[k], 1e-12, names[k]);
  }
  tg::set_num_threads(threads);
  CHECK(tg::tape_size() == 0);
}

TEST_CASE("lstm in f32 (packed recurrent weights, threaded recurrence) agrees with f64") {
  tg::Generator g(5);
  const int64_t T = 6, B = 8, I = 7, H = 100;
  std::vector<Tensor> in64{tg::randn({T, B, I}, g, tg::DType::F64), tg::randn({4 * H, I}, g, tg::DType::F64) * 0.3,
                           tg::randn({4 * H, H}, g, tg::DType::F64) * 0.1, tg::randn({4 * H}, g, tg::DType::F64) * 0.3};
  std::vector<Tensor> in32;
  for (auto& t : in64) in32.push_back(t.to(tg::DType::F32).requires_grad_()), t.requires_grad_();
  auto run = [](std::vector<Tensor>& in) {
    tg::LstmOutput o = tg::lstm(in[0], Tensor(), Tensor(), in[1], in[2], in[3], in[3]);
    tg::sum(o.y * o.y).backward();
    return o.y.detach();
  };
  check_close(run(in32), run(in64), 1e-5, "y");
  for (size_t k = 0; k < in64.size(); ++k) check_close(in32[k].grad(), in64[k].grad(), 1e-4, "grad " + std::to_string(k));
}

TEST_CASE("lstm refuses inputs that do not fit, naming the shapes") {
  Tensor x = tg::randn({3, 2, 4}), w_ih = tg::randn({20, 4}), w_hh = tg::randn({20, 5}), b = tg::randn({20});
  CHECK_THROWS_WITH_AS(tg::lstm(tg::randn({3, 4}), {}, {}, w_ih, w_hh), doctest::Contains("[T, B, I]"), tg::Error);
  CHECK_THROWS_WITH_AS(tg::lstm(x, {}, {}, tg::randn({20, 3}), w_hh), doctest::Contains("[20, 4]"), tg::Error);
  CHECK_THROWS_WITH_AS(tg::lstm(x, {}, {}, w_ih, tg::randn({20, 4})), doctest::Contains("[4H, H]"), tg::Error);
  CHECK_THROWS_WITH_AS(tg::lstm(x, tg::randn({3, 5}), {}, w_ih, w_hh), doctest::Contains("expected [2, 5]"),
                       tg::Error);
  CHECK_THROWS_WITH_AS(tg::lstm(x, {}, {}, w_ih, w_hh, b), doctest::Contains("both"), tg::Error);
  CHECK_THROWS_WITH_AS(tg::lstm(x, {}, {}, w_ih, w_hh, tg::randn({16}), tg::randn({16})),
                       doctest::Contains("must be [20]"), tg::Error);
  CHECK_THROWS_WITH_AS(tg::lstm(x.to(tg::DType::F64), {}, {}, w_ih, w_hh), doctest::Contains("dtype mismatch"),
                       tg::Error);
}

TEST_CASE("embedding: rows gathered, gradient only in the rows used, indices checked") {
  Tensor w = tg::arange(12, tg::DType::F64).reshape({4, 3}).clone().requires_grad_();
  Tensor idx = tg::from_vector(std::vector<int64_t>{3, 1, 3}, {3});
  Tensor y = tg::embedding(w, idx);
  CHECK(y.shape() == Shape{3, 3});
  CHECK(y.to_vector() == V{9, 10, 11, 3, 4, 5, 9, 10, 11});
  tg::sum(y * tg::from_vector(V{1, 2, 3, 4, 5, 6, 7, 8, 9}, {3, 3})).backward();
  CHECK(w.grad().to_vector() == V{0, 0, 0, 4, 5, 6, 0, 0, 0, 8, 10, 12});  // row 3 used twice: 1+7, 2+8, 3+9
  CHECK_THROWS_WITH_AS(tg::embedding(w, tg::from_vector(std::vector<int64_t>{0, 4}, {2})),
                       doctest::Contains("index 4 at position 1 is out of range [0, 4)"), tg::Error);
  CHECK_THROWS_WITH_AS(tg::embedding(w, tg::from_vector(std::vector<int64_t>{-1}, {1})),
                       doctest::Contains("out of range"), tg::Error);
  CHECK_THROWS_WITH_AS(tg::embedding(w, tg::randn({2})), doctest::Contains("indices must be i64"), tg::Error);
  tg::nn::Embedding emb(10, 4);
  CHECK(emb.named_parameters().front().first == "weight");
  CHECK(emb(tg::from_vector(std::vector<int64_t>{1, 2, 3, 4, 5, 6}, {2, 3})).shape() == Shape{2, 3, 4});
}


TEST_CASE("nn::LSTM: PyTorch's parameter names, shapes and init bounds; state in and out") {
  tg::Generator gen(3);
  tg::nn::LSTM lstm(6, 8, 3, 0.0, true, gen);
  const auto named = lstm.named_parameters();
  REQUIRE(named.size() == 12);
  CHECK(named[0].first == "weight_ih_l0");
  CHECK(named[0].second.shape() == Shape{32, 6});
  CHECK(named[1].first == "weight_hh_l0");
  CHECK(named[2].first == "bias_ih_l0");
  CHECK(named[3].first == "bias_hh_l0");
  CHECK(named[4].first == "weight_ih_l1");
  CHECK(named[4].second.shape() == Shape{32, 8});
  CHECK(named[11].first == "bias_hh_l2");
  CHECK(lstm.num_parameters() == (32 * 6 + 32 * 8 + 64) + 2 * (32 * 8 + 32 * 8 + 64));
  const double bound = 1.0 / std::sqrt(8.0);
  for (auto& [name, p] : named) check_uniform(p.to_vector(), bound, name);

  Tensor x = tg::randn({5, 2, 6}, gen);
  tg::nn::LSTMResult zero = lstm(x);
  CHECK(zero.output.shape() == Shape{5, 2, 8});
  CHECK(zero.state.h.shape() == Shape{3, 2, 8});
  CHECK(zero.state.c.shape() == Shape{3, 2, 8});
  // The last layer's final h is the output's last step.
  check_close(zero.state.h.slice(0, 2, 3).reshape({2, 8}), zero.output.slice(0, 4, 5).reshape({2, 8}), 0, "h");
  // An explicit zero state is the default; another state changes the output.
  tg::nn::LSTMResult explicit_zero = lstm(x, {tg::zeros({3, 2, 8}), tg::zeros({3, 2, 8})});
  check_close(explicit_zero.output, zero.output, 0, "zero state");
  tg::nn::LSTMResult carried = lstm(x, {zero.state.h.detach(), zero.state.c.detach()});
  CHECK(tg::max(tg::pow(carried.output - zero.output, 2.0)).item() > 1e-6);
  CHECK_THROWS_WITH_AS(lstm(x, {tg::zeros({2, 2, 8}), Tensor()}), doctest::Contains("expected [3, 2, 8]"), tg::Error);
  CHECK_THROWS_WITH_AS(lstm(tg::randn({5, 2, 7})), doctest::Contains("input_size 6"), tg::Error);
  CHECK_THROWS_AS(tg::nn::LSTM(6, 8, 2, 1.0), tg::Error);
}

TEST_CASE("nn::LSTM: gradients reach h0, c0 and every layer; dropout between layers only in training") {
  tg::Generator gen(4);
  tg::nn::LSTM lstm(3, 5, 2, 0.5, true, gen);
  Tensor x = tg::randn({4, 2, 3}, gen);
  Tensor h0 = tg::randn({2, 2, 5}, gen).requires_grad_(), c0 = tg::randn({2, 2, 5}, gen).requires_grad_();
  tg::nn::LSTMResult r = lstm(x, {h0, c0});
  tg::sum(r.output).backward();
  for (auto& [name, p] : lstm.named_parameters()) CHECK_MESSAGE(p.grad().defined(), name);
  CHECK(h0.grad().defined());
  CHECK(c0.grad().defined());
  lstm.eval();
  Tensor e1 = lstm(x).output, e2 = lstm(x).output;
  check_close(e1, e2, 0, "evaluation is deterministic");
  lstm.train();
  Tensor t1 = lstm(x).output;
  CHECK(tg::max(tg::pow(t1 - e1, 2.0)).item() > 1e-8);  // the mask on layer 0's output changed layer 1's input
  lstm.zero_grad();
}

TEST_CASE("clip_grad_norm: PyTorch's total norm and scaling") {
  Tensor a = tg::zeros({2}).requires_grad_(), b = tg::zeros({1}).requires_grad_(), none = tg::zeros({3}).requires_grad_();
  a.set_grad(tg::from_vector(std::vector<float>{3, 4}, {2}));
  b.set_grad(tg::from_vector(std::vector<float>{12}, {1}));
  CHECK(tg::nn::clip_grad_norm({a, b, none}, 100.0) == doctest::Approx(13.0));
  CHECK(a.grad().to_vector() == V{3, 4});  // below max_norm: unchanged
  CHECK(tg::nn::clip_grad_norm({a, b, none}, 6.5) == doctest::Approx(13.0));
  const double f = 6.5 / (13.0 + 1e-6);
  auto ga = a.grad().to_vector(), gb = b.grad().to_vector();
  CHECK(ga[0] == doctest::Approx(3 * f).epsilon(1e-6));
  CHECK(ga[1] == doctest::Approx(4 * f).epsilon(1e-6));
  CHECK(gb[0] == doctest::Approx(12 * f).epsilon(1e-6));
  CHECK(tg::nn::clip_grad_norm({a, b}, 1.0) == doctest::Approx(6.5).epsilon(1e-6));
  CHECK_FALSE(none.grad().defined());
  b.set_grad(tg::from_vector(std::vector<float>{std::numeric_limits<float>::quiet_NaN()}, {1}));
  CHECK(std::isnan(tg::nn::clip_grad_norm({a, b}, 1.0)));
  CHECK(a.grad().to_vector()[0] == doctest::Approx(3 * f * 1.0 / 6.5).epsilon(1e-5));  // left as it was
  CHECK_THROWS_WITH_AS(tg::nn::clip_grad_norm({a}, 0.0), doctest::Contains("max_norm"), tg::Error);
}

TEST_CASE("language model: parameter count, shapes, names, tied weights") {
  tg::Generator gen(0);
  tg::models::LMOptions o{.vocab = 10000, .emb = 200, .hidden = 200, .layers = 2};
  tg::models::LSTMLanguageModel lm(o, gen);
  // encoder 10000*200, per layer 4*200*(200+200) + 2*800, decoder 200*10000 + 10000
  CHECK(lm.num_parameters() == 2000000 + 2 * 321600 + 2010000);
  auto sd = lm.state_dict();
  for (const char* k : {"encoder.weight", "rnn.weight_ih_l0", "rnn.bias_hh_l1", "decoder.weight", "decoder.bias"})
    CHECK_MESSAGE(sd.count(k), k);
  tg::models::LSTMLanguageModel tied({.vocab = 50, .emb = 8, .hidden = 8, .layers = 1, .tie_weights = true}, gen);
  CHECK(tied.num_parameters() == 50 * 8 + 4 * 8 * 16 + 2 * 32 + 50);
  CHECK_FALSE(tied.state_dict().count("decoder.weight"));
  CHECK(tied.decoder_weight().raw_data() == tied.encoder->weight.raw_data());
  Tensor tokens = tg::randint(50, {7, 3}, gen);
  tg::models::LMOutput out = tied(tokens);
  CHECK(out.logits.shape() == Shape{21, 50});
  CHECK(out.state.h.shape() == Shape{1, 3, 8});
  tg::cross_entropy(out.logits, tg::randint(50, {21}, gen)).backward();
  CHECK(tied.encoder->weight.grad().defined());
  CHECK_THROWS_WITH_AS(tg::models::LSTMLanguageModel({.vocab = 5, .emb = 4, .hidden = 6, .tie_weights = true}),
                       doctest::Contains("emb == hidden"), tg::Error);
  CHECK_THROWS_WITH_AS(tied(tg::randn({3, 2})), doctest::Contains("i64 [T, B]"), tg::Error);
}

TEST_CASE("language model: SGD with clipping learns a successor rule; state carried detached") {
  tg::Generator gen(1);
  tg::models::LSTMLanguageModel lm({.vocab = 20, .emb = 16, .hidden = 16, .layers = 2, .dropout = 0.1}, gen);
  auto opt = tg::optim::make("sgd:lr=20", lm.parameters());
  std::vector<int64_t> seq;  // each word's successor is the next id: learnable from the input word alone
  for (int64_t t = 0; t < 9; ++t)
    for (int64_t b = 0; b < 4; ++b) seq.push_back((t + 5 * b) % 20);
  Tensor data = tg::from_vector(seq, {9, 4});
  Tensor input = data.slice(0, 0, 8), target = data.slice(0, 1, 9).reshape({32});
  tg::nn::LSTMState state;
  double first = 0, last = 0;
  for (int step = 0; step < 60; ++step) {
    opt->zero_grad();
    tg::models::LMOutput out = lm(input, state);
    Tensor loss = tg::cross_entropy(out.logits, target);
    loss.backward();
    CHECK(tg::nn::clip_grad_norm(lm.parameters(), 0.25) > 0);
    opt->step();
    state = {out.state.h.detach(), out.state.c.detach()};
    (step == 0 ? first : last) = loss.item();
  }
  CHECK(tg::tape_size() == 0);
  CHECK(first == doctest::Approx(std::log(20.0)).epsilon(0.1));
  CHECK(last < 0.5 * first);
}

TEST_CASE("language model: a checkpoint saves and loads by name") {
  const std::string path =
      (std::filesystem::temp_directory_path() / ("tg_lm_" + std::to_string(::getpid()) + ".safetensors")).string();
  tg::Generator g1(1), g2(2);
  tg::models::LMOptions o{.vocab = 30, .emb = 6, .hidden = 5, .layers = 2};
  tg::models::LSTMLanguageModel a(o, g1), b(o, g2);
  a.eval();
  b.eval();
  Tensor tokens = tg::randint(30, {4, 2}, g1);
  tg::NoGradGuard ng;
  tg::save_checkpoint(path, a, nullptr, {{"epoch", "3"}});
  CHECK(tg::max(tg::pow(a(tokens).logits - b(tokens).logits, 2.0)).item() > 0);
  const tg::Metadata meta = tg::load_checkpoint(path, b, nullptr);
  CHECK(meta.at("epoch") == "3");
  check_close(b(tokens).logits, a(tokens).logits, 0, "logits after loading");
  std::filesystem::remove(path);
}
