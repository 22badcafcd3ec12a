// The layers and losses against PyTorch 1.13: outputs and gradients of sum(output * r) on the inputs that
// tests/tools/make_nn_reference.py drew and wrote to tests/data/nn_reference.json (f64, agreement to 1e-10).
#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>

#include "tapegrad/tapegrad.hpp"

namespace tg = tapegrad;
using tg::Tensor;
using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

static Tensor labels(std::vector<int64_t> v) { return tg::from_vector(v, {static_cast<int64_t>(v.size())}); }

// The same functions as the generator's, by case name.
static const std::map<std::string, Fn>& functions() {
  using V = const std::vector<Tensor>&;
  static const std::map<std::string, Fn> fs = {
      {"layer_norm", [](V x) { return tg::layer_norm(x[0], {5}, x[1], x[2]); }},
      {"layer_norm two dims, no affine", [](V x) { return tg::layer_norm(x[0], {3, 4}); }},
      {"gelu", [](V x) { return tg::gelu(x[0]); }},
      {"gelu tanh", [](V x) { return tg::gelu(x[0], true); }},
      {"silu", [](V x) { return tg::silu(x[0]); }},
      {"leaky_relu 0.2", [](V x) { return tg::leaky_relu(x[0], 0.2); }},
      {"gru",
       [](V x) {
         tg::GruOutput o = tg::gru(x[0], x[1], x[2], x[3], x[4], x[5]);
         return tg::concat({o.y.flatten(), o.h.flatten()}, 0);
       }},
      {"nll_loss of log_softmax", [](V x) { return tg::nll_loss(tg::log_softmax(x[0], 1), labels({0, 4, 2, 2})); }},
      {"bce with logits", [](V x) { return tg::binary_cross_entropy_with_logits(x[0] * 3.0, tg::sigmoid(x[1])); }},
      {"l1_loss", [](V x) { return tg::l1_loss(x[0], x[1]); }},
      {"smooth_l1_loss sum beta 0.5", [](V x) { return tg::smooth_l1_loss(x[0], x[1], tg::Reduction::Sum, 0.5); }},
      {"huber_loss delta 0.7", [](V x) { return tg::huber_loss(x[0], x[1], tg::Reduction::Mean, 0.7); }},
  };
  return fs;
}

static void check_close(const std::vector<double>& got, const std::vector<double>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    CAPTURE(i);
    CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-10).scale(1.0));
  }
}

TEST_CASE("layers and losses match PyTorch 1.13: values and gradients") {
  const char* dir = std::getenv("TAPEGRAD_TEST_DATA");
  REQUIRE_MESSAGE(dir != nullptr, "TAPEGRAD_TEST_DATA is not set");
  std::ifstream f(std::string(dir) + "/nn_reference.json");
  REQUIRE(f.good());
  nlohmann::json j = nlohmann::json::parse(f);
  REQUIRE(j["cases"].size() == functions().size());
  for (auto& c : j["cases"]) {
    std::string name = c["name"];
    CAPTURE(name);
    REQUIRE(functions().count(name) == 1);
    std::vector<Tensor> xs;
    for (auto& in : c["inputs"])
      xs.push_back(tg::from_vector(in["values"].get<std::vector<double>>(), in["shape"].get<tg::Shape>()).requires_grad_());
    Tensor y = functions().at(name)(xs);
    CHECK(y.shape() == c["output"]["shape"].get<tg::Shape>());
    check_close(y.to_vector(), c["output"]["values"].get<std::vector<double>>());
    Tensor r = tg::from_vector(c["r"].get<std::vector<double>>(), y.shape());
    tg::sum(y * r).backward();
    for (size_t k = 0; k < xs.size(); ++k) {
      CAPTURE(k);
      REQUIRE(xs[k].grad().defined());
      check_close(xs[k].grad().to_vector(), c["grads"][k].get<std::vector<double>>());
    }
  }
}
