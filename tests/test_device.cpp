// Devices: factories with a device, moves (to/cpu), Module::to, the facade's device check, checkpoints across
// devices, and training on the test device (the CPU kernels under their own tag and memory) bit for bit equal
// to the CPU: any tensor that silently lands on the CPU meets a test-device operand in some kernel and throws.
#include <doctest/doctest.h>

#include <cctype>
#include <filesystem>
#include <map>
#include <unistd.h>

#include "../src/philox.hpp"
#include "tapegrad/io.hpp"
#include "tapegrad/models/lstm_lm.hpp"
#include "tapegrad/models/mlp.hpp"
#include "tapegrad/models/resnet.hpp"
#include "tapegrad/nn/utils.hpp"
#include "tapegrad/tapegrad.hpp"

namespace tg = tapegrad;
using tg::Device;
using tg::DType;
using tg::Shape;
using tg::Tensor;
using V = std::vector<double>;

TEST_CASE("factories take a device and read naturally") {
  CHECK(tg::zeros({2, 3}, Device::Test).device() == Device::Test);
  CHECK(tg::zeros({2, 3}, Device::Test).dtype() == DType::F32);
  Tensor f = tg::full({2}, 1.5, {DType::F64, Device::Test});
  CHECK(f.dtype() == DType::F64);
  CHECK(f.device() == Device::Test);
  CHECK(f.to_vector() == V{1.5, 1.5});
  CHECK(tg::zeros_like(f).device() == Device::Test);
  CHECK(tg::ones_like(f).dtype() == DType::F64);
  CHECK(tg::ones_like(f).device() == Device::Test);
  CHECK(tg::scalar(2.0, Device::Test).item() == 2.0);
  CHECK(tg::arange(3, {DType::F64, Device::Test}).to_vector() == V{0, 1, 2});
  CHECK(tg::empty({4}, Device::Test).device() == Device::Test);

  // A literal's type picks the dtype.
  CHECK(tg::from_vector({1.0, 2.0}, {2}).dtype() == DType::F64);
  CHECK(tg::from_vector({1.0f, 2.0f}, {2}).dtype() == DType::F32);
  CHECK(tg::from_vector({1, 2, 3}, {3}).dtype() == DType::I64);
  CHECK(tg::from_vector({1.0, 2.0}, {2}, Device::Test).device() == Device::Test);
  CHECK(tg::randn({3}, DType::F64).dtype() == DType::F64);

  // Random factories draw on the host: the same values on every device.
  tg::Generator a(5), b(5);
  CHECK(tg::randn({50}, a, {DType::F64, Device::Test}).to_vector() == tg::randn({50}, b, DType::F64).to_vector());
  CHECK(tg::rand({50}, a, Device::Test).to_vector() == tg::rand({50}, b).to_vector());
  Tensor r = tg::randint(9, {50}, a, Device::Test);
  CHECK(r.device() == Device::Test);
  CHECK(r.to_vector<int64_t>() == tg::randint(9, {50}, b).to_vector<int64_t>());

  CHECK(tg::device_from_name("test") == Device::Test);
  CHECK_THROWS_WITH_AS(tg::device_from_name("gpu"), doctest::Contains("unknown device 'gpu'"), tg::Error);
}

TEST_CASE("host code cannot read a device tensor's memory; to_vector, item and printing copy") {
  Tensor t = tg::from_vector({1.0, 2.0, 3.0}, {3}, Device::Test);
  CHECK_THROWS_WITH_AS(t.data<double>(), doctest::Contains("is on test, not the CPU"), tg::Error);
  CHECK_THROWS_WITH_AS(t.raw_data(), doctest::Contains("copy it with cpu() first"), tg::Error);
  CHECK(t.to_vector() == V{1, 2, 3});
  CHECK(tg::sum(t).item() == 6.0);
  std::ostringstream os;
  os << t;
  CHECK(os.str() == "tensor([1., 2., 3.], device='test', dtype=f64)");  // the printer's format (tensor_print.cpp)
  Tensor h = t.cpu();
  CHECK(h.device() == Device::CPU);
  CHECK(h.data<double>()[2] == 3.0);
  CHECK(h.raw_data() != t.detach().to(Device::Test).cpu().raw_data());  // copies, not aliases
}

TEST_CASE("operands on different devices: a clear error, never a result") {
  Tensor a = tg::ones({2, 2}), b = tg::ones({2, 2}, Device::Test);
  CHECK_THROWS_WITH_AS(a + b, doctest::Contains("device mismatch: cpu vs test"), tg::Error);
  CHECK_THROWS_WITH_AS(tg::matmul(a, b), doctest::Contains("matmul"), tg::Error);
  // Ops that do not compare devices themselves meet the facade's check, which names the kernel.
  Tensor bias = tg::ones({2});
  CHECK_THROWS_WITH_AS(tg::linear(b, tg::ones({2, 2}, Device::Test), bias),
                       doctest::Contains("operands on different devices: test and cpu"), tg::Error);
  Tensor w = tg::ones({5, 3}, Device::Test);
  CHECK_THROWS_WITH_AS(tg::embedding(w, tg::from_vector({1, 2}, {2})), doctest::Contains("embedding"), tg::Error);
  // A gradient for backward lives on its output's device.
  Tensor x = tg::ones({2}, Device::Test).requires_grad_();
  Tensor y = x * 2.0;
  CHECK_THROWS_WITH_AS(y.backward(tg::ones({2})), doctest::Contains("on cpu does not match the output f32 [2] on test"),
                       tg::Error);
}

TEST_CASE("to(Device) moves values; gradients flow back to the source device; copy_ crosses devices") {
  Tensor x = tg::from_vector({1.0, -2.0, 3.0}, {3}).requires_grad_();
  Tensor y = x.to(Device::Test);
  CHECK(y.device() == Device::Test);
  CHECK(x.to(Device::CPU).impl_ptr() == x.impl_ptr());  // already there: the same tensor
  tg::sum(y * y).backward();  // the seed is made on the test device
  REQUIRE(x.grad().defined());
  CHECK(x.grad().device() == Device::CPU);
  CHECK(x.grad().to_vector() == V{2, -4, 6});

  Tensor d = tg::zeros({3}, {DType::F32, Device::Test});
  d.copy_(x.detach());  // converts the dtype and moves
  CHECK(d.device() == Device::Test);
  CHECK(d.to_vector() == V{1, -2, 3});
  CHECK_THROWS_AS(tg::cuda_available() ? (void)0 : (void)x.cuda(), tg::Error);
}

TEST_CASE("Module::to moves parameters, buffers and gradients in place") {
  tg::Generator g(1);
  auto net = tg::models::resnet20(10, g);
  Tensor w = net->named_parameters()[0].second;
  w.set_grad(tg::ones_like(w));
  std::vector<double> before = w.to_vector();
  net->to(Device::Test);
  for (auto& [name, p] : net->named_parameters()) CHECK_MESSAGE(p.device() == Device::Test, name);
  for (auto& [name, b] : net->named_buffers()) CHECK_MESSAGE(b.device() == Device::Test, name);
  CHECK(w.device() == Device::Test);  // the handle an optimizer holds moved too
  CHECK(w.grad().device() == Device::Test);
  CHECK(w.to_vector() == before);
  net->to(Device::CPU);
  CHECK(w.device() == Device::CPU);
}

// A model on dev trains `steps` plain SGD steps (through ops, so that only models and losses are tested here);
// returns the parameters and the last loss on the CPU.
template <class Step>
static std::pair<std::vector<std::vector<double>>, double> train(tg::nn::Module& net, Device dev, int steps,
                                                                 Step step) {
  net.to(dev);
  double loss = 0;
  for (int s = 0; s < steps; ++s) {
    net.zero_grad();
    Tensor l = step(s);
    CHECK(l.device() == dev);
    l.backward();
    loss = l.item();
    tg::nn::clip_grad_norm(net.parameters(), 1.0);
    tg::NoGradGuard no_grad;
    for (Tensor& p : net.parameters()) {
      REQUIRE(p.grad().device() == dev);
      p.copy_(p - 0.1 * p.grad());
    }
  }
  std::vector<std::vector<double>> out;
  for (Tensor& p : net.parameters()) out.push_back(p.to_vector());
  return {out, loss};
}

TEST_CASE("the MLP trains on the test device exactly as on the CPU") {
  tg::Generator data(3);
  Tensor x = tg::randn({16, 20}, data), y = tg::randint(5, {16}, data);
  auto run = [&](Device dev) {
    tg::Generator g(7);
    tg::models::MLP net(20, 12, 5, g);
    return train(net, dev, 3, [&](int) { return tg::cross_entropy(net(x.to(dev)), y.to(dev)); });
  };
  auto cpu = run(Device::CPU), test = run(Device::Test);
  CHECK(cpu.first == test.first);
  CHECK(cpu.second == test.second);
}

TEST_CASE("a small ResNet (conv, batch norm, zero-padded shortcuts) trains on the test device as on the CPU") {
  tg::Generator data(4);
  Tensor x = tg::randn({2, 3, 8, 8}, data), y = tg::randint(3, {2}, data);
  auto run = [&](Device dev) {
    tg::Generator g(8);
    tg::models::ResNet net({1, 1}, {4, 8}, 4, tg::models::BasicBlock::Shortcut::ZeroPad, 3, g);
    auto r = train(net, dev, 2, [&](int) { return tg::cross_entropy(net(x.to(dev)), y.to(dev)); });
    for (auto& [name, b] : net.named_buffers()) r.first.push_back(b.to_vector());
    return r;
  };
  auto cpu = run(Device::CPU), test = run(Device::Test);
  CHECK(cpu.first == test.first);
  CHECK(cpu.second == test.second);
}

TEST_CASE("the LSTM language model (embedding, dropout, LSTM, tied decoder) trains on the test device as on the CPU") {
  tg::Generator data(5);
  Tensor tokens = tg::randint(12, {4, 3}, data), target = tg::randint(12, {12}, data);
  auto run = [&](Device dev) {
    tg::Generator g(9);
    tg::models::LSTMLanguageModel lm({.vocab = 12, .emb = 8, .hidden = 8, .layers = 2, .dropout = 0.3,
                                      .tie_weights = true},
                                     g);
    return train(lm, dev, 2, [&](int) { return tg::cross_entropy(lm(tokens.to(dev)).logits, target.to(dev)); });
  };
  auto cpu = run(Device::CPU), test = run(Device::Test);
  CHECK(cpu.first == test.first);
  CHECK(cpu.second == test.second);
}

TEST_CASE("a checkpoint written from the test device loads on the CPU, and the other way round") {
  auto path = (std::filesystem::temp_directory_path() / ("tg_device_" + std::to_string(::getpid()) + ".safetensors"))
                  .string();
  tg::Generator g(2), h(3);
  tg::models::MLP a(6, 4, 3, g), b(6, 4, 3, h);
  a.to(Device::Test);
  tg::save_checkpoint(path, a, nullptr, {});
  tg::load_checkpoint(path, b, nullptr);
  for (size_t i = 0; i < 4; ++i) CHECK(a.parameters()[i].to_vector() == b.parameters()[i].to_vector());
  tg::Generator k(4);
  tg::models::MLP c(6, 4, 3, k);
  c.to(Device::Test);
  tg::load_checkpoint(path, c, nullptr);
  CHECK(c.parameters()[0].device() == Device::Test);
  CHECK(c.parameters()[0].to_vector() == b.parameters()[0].to_vector());
  std::filesystem::remove(path);
}

TEST_CASE("dropout masks: Philox-4x32-10, keyed by (seed, element), the same on every device") {
  // Random123's known answer for counter 0, key 0: words 0x6627e8d5, 0xe169c58d, ...
  CHECK(tg::philox_uniform(0, 0) == static_cast<double>((uint64_t{0x6627e8d5} << 32 | 0xe169c58d) >> 11) * 0x1.0p-53);
  tg::Generator a(11), b(11);
  Tensor x = tg::ones({1000}, DType::F64);
  auto cpu = tg::dropout(x, 0.3, true, a).to_vector();
  auto test = tg::dropout(x.to(Device::Test), 0.3, true, b).to_vector();
  CHECK(cpu == test);
  CHECK(a.state() == b.state());  // one draw per mask
}

// The optimizer updates go through the facade (src/backend.cpp), so on the test device they run the CPU twin:
// every optimizer, and a two-group spec, must train bit for bit as on the CPU with its state on the device, and
// its checkpoint must move between devices (saved on one, loaded on the other, the next step still equal).
namespace {

// The optimizer's state tensors (keys "<param>.<name>" but not the step counts) as values.
std::map<std::string, V> state_of(const tg::optim::Optimizer& opt, Device expect) {
  std::map<std::string, V> out;
  for (auto& [k, t] : opt.state_dict()) {
    if (!std::isdigit(static_cast<unsigned char>(k[0])) || k.ends_with(".step")) continue;
    CHECK_MESSAGE(t.device() == expect, opt.describe(), " ", k);
    out[k] = t.to_vector();
  }
  return out;
}

}  // namespace

TEST_CASE("every optimizer trains on the test device exactly as on the CPU, its state on the device") {
  tg::Generator data(6);
  Tensor x = tg::randn({16, 20}, data), y = tg::randint(5, {16}, data);
  auto path = (std::filesystem::temp_directory_path() / ("tg_device_opt_" + std::to_string(::getpid()) +
                                                         ".safetensors"))
                  .string();
  for (const char* spec :
       {"sgd:lr=0.1", "sgdm:lr=0.1,weight_decay=1e-3", "sgdm:lr=0.1,nesterov=true", "adagrad:lr_decay=0.1,weight_decay=1e-3",
        "adam:weight_decay=1e-3", "amsgrad", "adamw", "adabound", "amsbound:weight_decay=1e-3", "adaboundw",
        "adabound:lr=1e-3,final_lr=0.1,weight_decay=5e-4; no_decay: lr=1e-2,weight_decay=0,amsbound=true"}) {
    CAPTURE(spec);
    struct Run {
      tg::Generator g{7};
      tg::models::MLP net{20, 12, 5, g};
      std::unique_ptr<tg::optim::Optimizer> opt;
    };
    auto make = [&](Device dev) {
      auto r = std::make_unique<Run>();
      r->net.to(dev);
      std::vector<tg::optim::ParamGroup> groups{{"decay", {}}, {"no_decay", {}}};  // weights, biases
      for (auto& [name, p] : r->net.named_parameters()) groups[name.ends_with("bias") ? 1 : 0].params.push_back(p);
      r->opt = std::string(spec).find(';') == std::string::npos ? tg::optim::make(spec, r->net.parameters())
                                                                 : tg::optim::make(spec, groups);
      return r;
    };
    auto train = [&](Run& r, int steps) {
      const Device dev = r.net.parameters()[0].device();
      for (int s = 0; s < steps; ++s) {
        r.opt->zero_grad();
        tg::cross_entropy(r.net(x.to(dev)), y.to(dev)).backward();
        r.opt->step();
      }
    };
    auto params = [](Run& r) {
      std::vector<V> out;
      for (Tensor& p : r.net.parameters()) out.push_back(p.to_vector());
      return out;
    };
    auto cpu = make(Device::CPU), test = make(Device::Test);
    train(*cpu, 3);
    train(*test, 3);
    CHECK(params(*cpu) == params(*test));
    const auto state = state_of(*cpu->opt, Device::CPU);
    CHECK(!state.empty() == (std::string(spec) != "sgd:lr=0.1"));
    CHECK(state_of(*test->opt, Device::Test) == state);
    for (size_t i = 0; i < cpu->net.parameters().size(); ++i) {  // read back from the device explicitly
      Tensor a = cpu->opt->effective_lr(i), b = test->opt->effective_lr(i);
      CHECK(a.defined() == b.defined());
      if (a.defined()) CHECK(a.to_vector() == b.to_vector());
    }
    const auto telemetry = test->opt->lr_telemetry();
    CHECK(telemetry.size() == cpu->opt->lr_telemetry().size());
    for (size_t k = 0; k < telemetry.size(); ++k) CHECK(telemetry[k].lr.median == cpu->opt->lr_telemetry()[k].lr.median);

    // Saved on the test device, loaded on the CPU; saved there, loaded on the test device: the same state on
    // each, on its own device, and one more step equal everywhere.
    tg::save_checkpoint(path, test->net, test->opt.get(), {});
    auto on_cpu = make(Device::CPU);
    tg::load_checkpoint(path, on_cpu->net, on_cpu->opt.get());
    CHECK(state_of(*on_cpu->opt, Device::CPU) == state);
    tg::save_checkpoint(path, on_cpu->net, on_cpu->opt.get(), {});
    auto back = make(Device::Test);
    tg::load_checkpoint(path, back->net, back->opt.get());
    CHECK(state_of(*back->opt, Device::Test) == state);
    for (Run* r : {cpu.get(), test.get(), on_cpu.get(), back.get()}) train(*r, 1);
    CHECK(params(*test) == params(*cpu));
    CHECK(params(*on_cpu) == params(*cpu));
    CHECK(params(*back) == params(*cpu));
  }
  std::filesystem::remove(path);
}
