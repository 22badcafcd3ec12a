// Optimizers: trajectories against the references (tests/data/optim_golden.json: PyTorch 1.13 and
// Luolc/AdaBound), constructor validation, optim::make() specs, schedulers and exact resume.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "tapegrad/io.hpp"
#include "tapegrad/nn/layers.hpp"
#include "tapegrad/ops.hpp"
#include "tapegrad/optim.hpp"

#include "../examples/custom_optimizer.hpp"

using namespace tapegrad;
using nlohmann::json;

namespace {

const json& golden() {
  static const json j = [] {
    const char* dir = std::getenv("TAPEGRAD_TEST_DATA");
    const std::string path = std::string(dir ? dir : "tests/data") + "/optim_golden.json";
    std::ifstream f(path);
    if (!f) throw std::runtime_error("cannot open " + path + " (set TAPEGRAD_TEST_DATA)");
    return json::parse(f);
  }();
  return j;
}

void flatten(const json& j, std::vector<double>& out) {
  if (j.is_array()) {
    for (const auto& x : j) flatten(x, out);
  } else {
    out.push_back(j.get<double>());
  }
}

std::vector<double> flat(const json& j) {
  std::vector<double> v;
  flatten(j, v);
  return v;
}

// A leaf parameter of dtype d holding the values of j (rounded once to d), requiring grad.
Tensor param_from(const json& j, const Shape& s, DType d) {
  Tensor t = from_vector(flat(j), s).to(d);
  t.requires_grad_(true);
  return t;
}

std::string kv_of(const json& hparams) {
  std::string s;
  for (const auto& [key, v] : hparams.items()) {
    std::string value;
    if (v.is_boolean()) value = v.get<bool>() ? "true" : "false";
    else if (v.is_array()) value = optim::format_number(v[0].get<double>()) + "/" + optim::format_number(v[1].get<double>());
    else value = optim::format_number(v.get<double>());
    s += (s.empty() ? "" : ",") + key + "=" + value;
  }
  return s;
}

// The spec string of a golden case's config ("adam:lr=0.01,betas=0.99/0.999"), with a section per
// parameter group that overrides keys ("adam:lr=0.01;g1:lr=0.02,weight_decay=0").
std::string spec_of(const json& config) {
  std::string s = config.at("optimizer").get<std::string>();
  const std::string head = kv_of(config.at("hparams"));
  if (!head.empty()) s += ":" + head;
  if (config.contains("groups"))
    for (size_t g = 0; g < config.at("groups").size(); ++g) {
      const json& group = config.at("groups")[g];
      if (group.contains("hparams")) s += ";g" + std::to_string(g) + ":" + kv_of(group.at("hparams"));
    }
  return s;
}

// Sets the lr of every group from a schedule entry: one number, or one per group.
void set_lrs(optim::Optimizer& opt, const json& lr) {
  if (!lr.is_array()) return opt.set_lr(lr.get<double>());
  for (size_t g = 0; g < lr.size(); ++g) opt.set_lr(g, lr[g].get<double>());
}

// The optimizer of a golden case over params: optim::make, or the user-side RMSprop of the example.
std::unique_ptr<optim::Optimizer> optimizer_of(const json& config, const std::vector<Tensor>& params) {
  if (config.at("optimizer") != "rmsprop") return optim::make(spec_of(config), params);
  const json& h = config.at("hparams");
  return std::make_unique<RMSprop>(params, h.at("lr").get<double>(),
                                   RMSpropOptions{h.value("alpha", 0.99), h.value("eps", 1e-8), h.value("weight_decay", 0.0)});
}

bool close(double x, double ref, double atol, double rtol) { return std::abs(x - ref) <= atol + rtol * std::abs(ref); }

// Runs one golden case; returns "" when every value is within the README's tolerances, else the first
// mismatch.
std::string run_case(const json& c) {
  const json& problem = golden().at("problems").at(c.at("problem").get<std::string>());
  const std::string kind = problem.at("kind");
  const DType dtype = c.at("dtype") == "f64" ? DType::F64 : DType::F32;
  const double atol = dtype == DType::F64 ? 1e-12 : 1e-6, rtol = dtype == DType::F64 ? 1e-10 : 1e-4;
  const double loss_rtol = dtype == DType::F64 ? 1e-12 : 1e-5;
  const json& config = c.at("config");
  std::map<int64_t, json> schedule;
  if (config.contains("lr_schedule"))
    for (const auto& e : config.at("lr_schedule")) schedule[e[0].get<int64_t>()] = e[1];
  const int64_t steps = problem.at("steps");
  std::ostringstream err;

  if (kind == "scripted" || kind == "quadratic") {
    const int64_t dim = problem.at("dim");
    Tensor p = param_from(problem.at("p0"), {dim}, dtype);
    auto opt = optimizer_of(config, {p});
    const std::vector<double> a = kind == "quadratic" ? flat(problem.at("a")) : std::vector<double>{};
    const std::vector<double> cc = kind == "quadratic" ? flat(problem.at("c")) : std::vector<double>{};
    for (int64_t t = 1; t <= steps; ++t) {
      if (kind == "scripted") {
        p.set_grad(from_vector(flat(problem.at("grads")[t - 1]), {dim}).to(dtype));
      } else {  // g = a * (p - c), in the case's dtype
        Tensor g = zeros({dim}, dtype);
        if (dtype == DType::F64) {
          for (int64_t i = 0; i < dim; ++i) g.data<double>()[i] = a[i] * (p.data<double>()[i] - cc[i]);
        } else {
          for (int64_t i = 0; i < dim; ++i)
            g.data<float>()[i] = float(a[i]) * (p.data<float>()[i] - float(cc[i]));
        }
        p.set_grad(g);
      }
      if (schedule.count(t)) set_lrs(*opt, schedule[t]);
      opt->step();
      const std::vector<double> ref = flat(c.at("params")[t - 1]), got = p.to_vector<double>();
      for (int64_t i = 0; i < dim; ++i)
        if (!close(got[i], ref[i], atol, rtol)) {
          err.precision(17);
          err << "step " << t << " p[" << i << "] = " << got[i] << ", reference " << ref[i];
          return err.str();
        }
    }
    return "";
  }

  // mlp: loss before each step, then backward and step; final parameters at the end.
  const std::vector<double> X = flat(problem.at("X"));
  const int64_t n = problem.at("X").size(), in = problem.at("X")[0].size();
  const int64_t hidden = problem.at("W1").size(), out = problem.at("W2").size();
  Tensor x = from_vector(X, {n, in}).to(dtype);
  std::vector<int64_t> labels;
  for (const auto& y : problem.at("y")) labels.push_back(y.get<int64_t>());
  Tensor y = from_vector(labels, {n});
  Tensor W1 = param_from(problem.at("W1"), {hidden, in}, dtype), b1 = param_from(problem.at("b1"), {hidden}, dtype);
  Tensor W2 = param_from(problem.at("W2"), {out, hidden}, dtype), b2 = param_from(problem.at("b2"), {out}, dtype);
  std::unique_ptr<optim::Optimizer> opt;
  if (config.contains("groups")) {  // named g0, g1, ... as in spec_of
    const std::map<std::string, Tensor> named{{"W1", W1}, {"b1", b1}, {"W2", W2}, {"b2", b2}};
    std::vector<optim::ParamGroup> groups;
    for (const auto& group : config.at("groups")) {
      groups.push_back({"g" + std::to_string(groups.size()), {}});
      for (const auto& n : group.at("params")) groups.back().params.push_back(named.at(n.get<std::string>()));
    }
    opt = optim::make(spec_of(config), groups);
  } else {
    opt = optimizer_of(config, {W1, b1, W2, b2});
  }
  const std::vector<double> ref_loss = flat(c.at("loss"));
  for (int64_t t = 1; t <= steps; ++t) {
    Tensor loss = cross_entropy(linear(tanh(linear(x, W1, b1)), W2, b2), y);
    const double l = loss.item();
    if (!close(l, ref_loss[t - 1], 0.0, loss_rtol)) {
      err.precision(17);
      err << "loss before step " << t << " = " << l << ", reference " << ref_loss[t - 1];
      return err.str();
    }
    opt->zero_grad();
    loss.backward();
    if (schedule.count(t)) set_lrs(*opt, schedule[t]);
    opt->step();
  }
  const char* names[] = {"W1", "b1", "W2", "b2"};
  const Tensor params[] = {W1, b1, W2, b2};
  for (int k = 0; k < 4; ++k) {
    const std::vector<double> ref = flat(c.at("final_params")[k]), got = params[k].to_vector<double>();
    if (ref.size() != got.size()) return std::string("final ") + names[k] + " has the wrong size";
    for (size_t i = 0; i < ref.size(); ++i)
      if (!close(got[i], ref[i], atol, rtol)) {
        err.precision(17);
        err << "final " << names[k] << "[" << i << "] = " << got[i] << ", reference " << ref[i];
        return err.str();
      }
  }
  return "";
}

void run_golden(const std::string& problem) {
  int ran = 0;
  for (const auto& c : golden().at("cases")) {
    if (c.at("problem") != problem) continue;
    if (c.at("config").at("optimizer") == "rmsprop") continue;  // user-side: the custom optimizer's test
    if (c.at("config").contains("groups")) continue;             // their own test case
    const std::string label = problem + "/" + c.at("dtype").get<std::string>() + "/" +
                              c.at("config").at("name").get<std::string>() + " (" + spec_of(c.at("config")) + ")";
    std::string err;
    try {
      err = run_case(c);
    } catch (const std::exception& e) {
      err = std::string("threw: ") + e.what();
    }
    CHECK_MESSAGE(err.empty(), label, ": ", err);
    ++ran;
  }
  CHECK(ran >= 30);
}

}  // namespace

TEST_CASE("golden trajectories: scripted gradients") { run_golden("scripted"); }
TEST_CASE("golden trajectories: quadratic") { run_golden("quadratic"); }
TEST_CASE("golden trajectories: mlp (linear, tanh, cross_entropy)") { run_golden("mlp"); }

TEST_CASE("golden trajectories: parameter groups (mlp, weights and biases with different hyperparameters)") {
  int ran = 0;
  for (const auto& c : golden().at("cases")) {
    if (!c.at("config").contains("groups")) continue;
    const std::string label = c.at("dtype").get<std::string>() + "/" + c.at("config").at("name").get<std::string>() +
                              " (" + spec_of(c.at("config")) + ")";
    std::string err;
    try {
      err = run_case(c);
    } catch (const std::exception& e) {
      err = std::string("threw: ") + e.what();
    }
    CHECK_MESSAGE(err.empty(), label, ": ", err);
    ++ran;
  }
  CHECK(ran == 16);  // 8 optimizers (AdamW and AdaBoundW included), f64 and f32
}

namespace {

// The Error message of f(), or "" when it does not throw.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

std::vector<Tensor> some_params(DType d = DType::F32) {
  Generator gen(7);
  Tensor w = randn({4, 3}, gen, d), b = randn({3}, gen, d);
  w.requires_grad_(true);
  b.requires_grad_(true);
  return {w, b};
}

}  // namespace

TEST_CASE("constructors reject invalid hyperparameters, naming optimizer, key and range") {
  auto ps = some_params();
  struct Bad {
    std::function<void()> build;
    const char* optimizer;
    const char* key;
  };
  const std::vector<Bad> bad = {
      {[&] { optim::SGD(ps, -0.1); }, "sgd", "lr"},
      {[&] { optim::SGD(ps, 0.1, {.momentum = -0.9}); }, "sgd", "momentum"},
      {[&] { optim::SGD(ps, 0.1, {.dampening = -1}); }, "sgd", "dampening"},
      {[&] { optim::SGD(ps, 0.1, {.weight_decay = -1e-4}); }, "sgd", "weight_decay"},
      {[&] { optim::SGD(ps, 0.1, {.nesterov = true}); }, "sgd", "nesterov"},
      {[&] { optim::SGD(ps, 0.1, {.momentum = 0.9, .dampening = 0.1, .nesterov = true}); }, "sgd", "dampening"},
      {[&] { optim::SGD(ps, NAN); }, "sgd", "lr"},
      {[&] { optim::Adagrad(ps, -1); }, "adagrad", "lr"},
      {[&] { optim::Adagrad(ps, 0.1, {.lr_decay = -1}); }, "adagrad", "lr_decay"},
      {[&] { optim::Adagrad(ps, 0.1, {.initial_accumulator_value = -1}); }, "adagrad", "initial_accumulator_value"},
      {[&] { optim::Adagrad(ps, 0.1, {.eps = -1}); }, "adagrad", "eps"},
      {[&] { optim::Adam(ps, -1e-3); }, "adam", "lr"},
      {[&] { optim::Adam(ps, 1e-3, {.betas = {1.0, 0.999}}); }, "adam", "betas[0]"},
      {[&] { optim::Adam(ps, 1e-3, {.betas = {0.9, -0.1}}); }, "adam", "betas[1]"},
      {[&] { optim::Adam(ps, 1e-3, {.eps = -1e-8}); }, "adam", "eps"},
      {[&] { optim::AMSGrad(ps, 1e-3, {.weight_decay = -1}); }, "amsgrad", "weight_decay"},
      {[&] { optim::AdamW(ps, 1e-3, {.weight_decay = -1}); }, "adamw", "weight_decay"},
      {[&] { optim::AdaBound(ps, -1e-3); }, "adabound", "lr"},
      {[&] { optim::AdaBound(ps, 0.0); }, "adabound", "lr"},
      {[&] { optim::AdaBound(ps, 1e-3, {.final_lr = -0.1}); }, "adabound", "final_lr"},
      {[&] { optim::AdaBound(ps, 1e-3, {.gamma = 1.0}); }, "adabound", "gamma"},
      {[&] { optim::AMSBound(ps, 1e-3, {.gamma = -1e-3}); }, "amsbound", "gamma"},
      {[&] { optim::AMSBound(ps, 1e-3, {.betas = {0.9, 1.5}}); }, "amsbound", "betas[1]"},
      {[&] { optim::AdaBoundW(ps, 1e-3, {.eps = -1}); }, "adaboundw", "eps"},
      {[&] { optim::AdaBoundW(ps, 1e-3, {.weight_decay = -1}); }, "adaboundw", "weight_decay"},
  };
  for (const Bad& b : bad) {
    const std::string msg = error_of(b.build);
    CHECK_MESSAGE(contains(msg, b.optimizer), b.optimizer, " ", b.key, ": '", msg, "'");
    CHECK_MESSAGE(contains(msg, b.key), b.optimizer, " ", b.key, ": '", msg, "'");
    CHECK_MESSAGE((contains(msg, "accepted") || contains(msg, "requires")), b.optimizer, " ", b.key, ": '", msg, "'");
  }
  // Boundary values the references accept.
  CHECK_NOTHROW(optim::Adam(ps, 0.0, {.betas = {0.0, 0.0}, .eps = 0.0}));
  CHECK_NOTHROW(optim::AdaBound(ps, 1e-3, {.final_lr = 0.0, .gamma = 0.0}));
  CHECK_NOTHROW(optim::SGD(ps, 0.1, {.momentum = 0.9, .nesterov = true}));
  CHECK(contains(error_of([&] { optim::SGD(ps, -1); }), "accepted: 0 <= lr"));

  // Parameter lists.
  Tensor idx = zeros({3}, DType::I64);
  CHECK(contains(error_of([&] { optim::Adam({idx}); }), "dtype"));
  CHECK(contains(error_of([&] { optim::Adam({ps[0], ps[0]}); }), "twice"));
  Tensor nonleaf = mul(ps[0], 2.0);
  CHECK(contains(error_of([&] { optim::Adam({nonleaf}); }), "leaf"));
  optim::Adam adam(ps);
  CHECK(contains(error_of([&] { adam.set_lr(-1); }), "set_lr"));
}

TEST_CASE("make: names, keys, defaults, describe round trip") {
  auto ps = some_params();
  struct Good {
    const char* spec;
    const char* name;
    const char* described;
  };
  const std::vector<Good> good = {
      {"sgd:lr=0.1", "sgd", "sgd:lr=0.1,momentum=0,dampening=0,nesterov=false,weight_decay=0"},
      {"sgdm:lr=0.1", "sgd", "sgd:lr=0.1,momentum=0.9,dampening=0,nesterov=false,weight_decay=0"},
      {" sgdm : lr = 0.05 , nesterov = true , weight_decay=5e-4", "sgd",
       "sgd:lr=0.05,momentum=0.9,dampening=0,nesterov=true,weight_decay=0.0005"},
      {"adagrad", "adagrad", "adagrad:lr=0.01,lr_decay=0,weight_decay=0,initial_accumulator_value=0,eps=1e-10"},
      {"adam", "adam", "adam:lr=0.001,betas=0.9/0.999,eps=1e-08,weight_decay=0,amsgrad=false"},
      {"adam:betas=0.99/0.999,amsgrad=true", "amsgrad",
       "amsgrad:lr=0.001,betas=0.99/0.999,eps=1e-08,weight_decay=0,amsgrad=true"},
      {"amsgrad:lr=1e-2", "amsgrad", "amsgrad:lr=0.01,betas=0.9/0.999,eps=1e-08,weight_decay=0,amsgrad=true"},
      {"adamw", "adamw", "adamw:lr=0.001,betas=0.9/0.999,eps=1e-08,weight_decay=0.01,amsgrad=false"},
      {"adabound:lr=1e-3,final_lr=0.1,gamma=1e-3", "adabound",
       "adabound:lr=0.001,betas=0.9/0.999,final_lr=0.1,gamma=0.001,eps=1e-08,weight_decay=0,amsbound=false"},
      {"amsbound", "amsbound",
       "amsbound:lr=0.001,betas=0.9/0.999,final_lr=0.1,gamma=0.001,eps=1e-08,weight_decay=0,amsbound=true"},
      {"adaboundw:weight_decay=5e-4", "adaboundw",
       "adaboundw:lr=0.001,betas=0.9/0.999,final_lr=0.1,gamma=0.001,eps=1e-08,weight_decay=0.0005,amsbound=false"},
  };
  for (const Good& g : good) {
    auto opt = optim::make(g.spec, ps);
    CHECK_MESSAGE(opt->name() == g.name, g.spec);
    CHECK_MESSAGE(opt->describe() == g.described, g.spec);
    // describe() is itself a spec that rebuilds the same optimizer.
    CHECK_MESSAGE(optim::make(opt->describe(), ps)->describe() == opt->describe(), g.spec);
  }
  CHECK(optim::optimizer_names().size() == 9);

  struct Bad {
    const char* spec;
    std::vector<const char*> parts;  // the message contains all of them
  };
  const std::vector<Bad> bad = {
      {"adamax:lr=1", {"unknown optimizer 'adamax'", "sgd, sgdm, adagrad, adam, amsgrad, adamw, adabound"}},
      {"", {"unknown optimizer ''"}},
      {"adam:momentum=0.9", {"'adam' does not take the key 'momentum'", "accepted keys: lr, betas, eps"}},
      {"sgd:lr=0.1,final_lr=0.1", {"does not take the key 'final_lr'", "nesterov"}},
      {"adam:lr=abc", {"malformed value 'abc'", "'lr'", "expected a finite decimal number"}},
      {"adam:lr=1e-3x", {"malformed value '1e-3x'"}},
      {"adam:lr=", {"malformed value ''"}},
      {"adam:lr=inf", {"malformed value 'inf'"}},
      {"adam:lr=1e-3,lr=1e-2", {"key 'lr' given twice"}},
      {"adam:betas=0.9", {"malformed value '0.9'", "BETA1/BETA2"}},
      {"adam:betas=0.9/0.99/0.999", {"BETA1/BETA2"}},
      {"adam:amsgrad=1", {"malformed value '1'", "true or false"}},
      {"adam:lr", {"malformed item 'lr'", "KEY=VALUE"}},
      {"adam:lr=1e-3,,eps=1e-8", {"malformed item ''"}},
      {"sgd", {"sgd needs lr"}},
      {"sgdm:momentum=0.5", {"sgdm needs lr"}},
      {"adam:lr=-1", {"adam: invalid lr = -1", "accepted"}},
      {"adabound:gamma=1", {"adabound: invalid gamma = 1", "gamma < 1"}},
      {"sgd:lr=0.1,nesterov=true", {"nesterov = true requires momentum > 0"}},
  };
  for (const Bad& b : bad) {
    const std::string msg = error_of([&] { optim::make(b.spec, ps); });
    CHECK_MESSAGE(!msg.empty(), "'", b.spec, "' was accepted");
    for (const char* part : b.parts) CHECK_MESSAGE(contains(msg, part), "'", b.spec, "' -> '", msg, "'");
  }
}

namespace {

// A scheduler of the golden file's kind over opt.
std::unique_ptr<optim::Scheduler> scheduler_of(const json& c, optim::Optimizer& opt) {
  const std::string kind = c.at("scheduler");
  const json& a = c.at("args");
  if (kind == "StepLR") return std::make_unique<optim::StepLR>(opt, a.at("step_size").get<int64_t>(), a.at("gamma").get<double>());
  if (kind == "MultiStepLR")
    return std::make_unique<optim::MultiStepLR>(opt, a.at("milestones").get<std::vector<int64_t>>(), a.at("gamma").get<double>());
  if (kind == "CosineAnnealingLR")
    return std::make_unique<optim::CosineAnnealingLR>(opt, a.at("T_max").get<int64_t>(), a.value("eta_min", 0.0));
  if (kind == "LinearLR")
    return std::make_unique<optim::LinearLR>(opt, a.at("start_factor").get<double>(), a.at("end_factor").get<double>(),
                                             a.at("total_iters").get<int64_t>());
  REQUIRE(kind == "ReduceLROnPlateau");
  optim::PlateauOptions o;
  o.maximize = a.at("mode") == "max";
  o.factor = a.at("factor");
  o.patience = a.at("patience");
  o.threshold = a.at("threshold");
  o.relative = a.value("threshold_mode", std::string("rel")) == "rel";
  o.cooldown = a.value("cooldown", int64_t{0});
  if (a.contains("min_lr")) o.min_lr = a.at("min_lr").get<std::vector<double>>();
  return std::make_unique<optim::ReduceLROnPlateau>(opt, o);
}

void step_scheduler(optim::Scheduler& s, const json& c, size_t epoch) {
  if (auto* p = dynamic_cast<optim::ReduceLROnPlateau*>(&s)) return p->step(c.at("metrics")[epoch].get<double>());
  dynamic_cast<optim::EpochScheduler&>(s).step();
}

}  // namespace

TEST_CASE("schedulers give torch's lrs for two parameter groups, bit for bit, and resume from state_dict") {
  int ran = 0;
  for (const json& c : golden().at("schedulers")) {
    const std::string label = c.at("name");
    CAPTURE(label);
    auto ps = some_params();
    optim::SGD sgd({ps[0]}, c.at("initial_lrs")[0].get<double>());
    sgd.add_param_group({ps[1]}, c.at("initial_lrs")[1].get<double>(), {});
    auto sched = scheduler_of(c, sgd);
    const json& lrs = c.at("lrs");
    const size_t half = lrs.size() / 2;
    TensorDict saved_sched, saved_opt;
    for (size_t e = 0; e < lrs.size(); ++e) {
      for (size_t g = 0; g < 2; ++g)
        CHECK_MESSAGE(sgd.lr(g) == lrs[e][g].get<double>(), label, " epoch ", e, " group ", g, ": ", sgd.lr(g),
                      ", torch ", lrs[e][g].get<double>());
      CHECK(sched->last_epoch() == static_cast<int64_t>(e));
      if (e == half) {
        saved_sched = sched->state_dict();
        saved_opt = sgd.state_dict();
      }
      step_scheduler(*sched, c, e);
    }
    // Resume at epoch `half`: a new optimizer and scheduler, loaded, give the rest of the sequence.
    auto qs = some_params();
    optim::SGD sgd2({qs[0]}, c.at("initial_lrs")[0].get<double>());
    sgd2.add_param_group({qs[1]}, c.at("initial_lrs")[1].get<double>(), {});
    auto sched2 = scheduler_of(c, sgd2);
    sgd2.load_state_dict(saved_opt);
    sched2->load_state_dict(saved_sched);
    for (size_t e = half; e < lrs.size(); ++e) {
      for (size_t g = 0; g < 2; ++g)
        CHECK_MESSAGE(sgd2.lr(g) == lrs[e][g].get<double>(), label, " resumed, epoch ", e, " group ", g);
      step_scheduler(*sched2, c, e);
    }
    ++ran;
  }
  CHECK(ran == 8);

  auto ps = some_params();
  optim::SGD sgd(ps, 0.1);
  CHECK(contains(error_of([&] { optim::StepLR(sgd, 0); }), "step_size"));
  CHECK(contains(error_of([&] { optim::MultiStepLR(sgd, {3, -1}); }), "milestone"));
  CHECK(contains(error_of([&] { optim::CosineAnnealingLR(sgd, 0); }), "T_max"));
  CHECK(contains(error_of([&] { optim::LinearLR(sgd, 0.0); }), "start_factor"));
  CHECK(contains(error_of([&] { optim::ReduceLROnPlateau(sgd, {.min_lr = {0.1, 0.2}}); }), "one per group"));
  optim::StepLR step(sgd, 3);
  TensorDict bad = step.state_dict();
  bad["best"] = scalar(1.0, DType::F64);
  CHECK(contains(error_of([&] { step.load_state_dict(bad); }), "unexpected key 'best'"));
  CHECK(contains(error_of([&] { step.load_state_dict({}); }), "missing key 'last_epoch'"));
  CHECK(contains(error_of([&] { step.set_last_epoch(-1); }), "set_last_epoch"));
}

namespace {

// Gradients of a fixed quadratic for the two tensors of some_params(), as functions of the current
// values and the step; parameter 1 gets no gradient on steps 2 and 9 (its step count then lags).
void set_grads(std::vector<Tensor>& ps, int t) {
  for (size_t k = 0; k < ps.size(); ++k) {
    if (k == 1 && (t == 2 || t == 9)) {
      ps[k].zero_grad();
      continue;
    }
    Tensor g = zeros_like(ps[k]);
    const auto v = ps[k].to_vector<double>();
    std::vector<double> gv(v.size());
    for (size_t i = 0; i < v.size(); ++i) gv[i] = (1.0 + 0.5 * double(i)) * (v[i] - 0.1 * double(t % 5)) + 0.01 * double(i);
    ps[k].set_grad(from_vector(gv, ps[k].shape()).to(ps[k].dtype()));
  }
}

std::vector<Tensor> fresh_copy(const std::vector<Tensor>& ps) {
  std::vector<Tensor> out;
  for (const Tensor& p : ps) {
    Tensor c = p.detach().clone();
    c.requires_grad_(true);
    out.push_back(c);
  }
  return out;
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && a.to_vector<double>() == b.to_vector<double>();
}

}  // namespace

TEST_CASE("state_dict / load_state_dict resume the same trajectory bit for bit") {
  const char* specs[] = {"sgd:lr=0.05",
                         "sgdm:lr=0.05,nesterov=true,weight_decay=0.01",
                         "sgdm:lr=0.05,dampening=0.3",
                         "adagrad:lr=0.1,lr_decay=0.01,initial_accumulator_value=0.1,weight_decay=0.001",
                         "adam:lr=0.01,weight_decay=0.001",
                         "amsgrad:lr=0.01",
                         "adamw:lr=0.01",
                         "adabound:lr=0.01,final_lr=0.1,gamma=0.01,weight_decay=5e-4",
                         "amsbound:lr=0.01,final_lr=0.05,gamma=0.1",
                         "adaboundw:lr=0.01,weight_decay=1e-3,amsbound=true"};
  const int total = 14, split = 7;
  for (DType d : {DType::F64, DType::F32}) {
    for (const char* spec : specs) {
      CAPTURE(spec);
      CAPTURE(name(d));
      // Straight through, with the lr halved before step 5 (what a scheduler does).
      auto straight = some_params(d);
      auto opt = optim::make(spec, straight);
      for (int t = 1; t <= total; ++t) {
        if (t == 5) opt->set_lr(opt->lr() * 0.5);
        set_grads(straight, t);
        opt->step();
      }
      // The same in two halves: state_dict after `split` steps, a new optimizer over copies, load, go on.
      auto first = some_params(d);
      auto opt1 = optim::make(spec, first);
      for (int t = 1; t <= split; ++t) {
        if (t == 5) opt1->set_lr(opt1->lr() * 0.5);
        set_grads(first, t);
        opt1->step();
      }
      const TensorDict saved = opt1->state_dict();
      CHECK(saved.at("0.step").item() == split);
      CHECK(saved.at("1.step").item() == split - 1);  // no gradient at step 2
      auto second = fresh_copy(first);
      auto opt2 = optim::make(spec, second);
      opt2->load_state_dict(saved);
      CHECK(opt2->lr() == opt1->lr());
      CHECK(opt2->steps(1) == split - 1);
      for (int t = split + 1; t <= total; ++t) {
        set_grads(first, t);  // keeps the first run going too: the loaded dict must be a copy
        opt1->step();
        set_grads(second, t);
        opt2->step();
      }
      for (size_t k = 0; k < straight.size(); ++k) {
        CHECK_MESSAGE(bitwise_equal(second[k], straight[k]), "resumed parameter ", k, " differs");
        CHECK_MESSAGE(bitwise_equal(first[k], straight[k]), "continued parameter ", k, " differs");
      }
      const TensorDict a = opt->state_dict(), b = opt2->state_dict();
      CHECK(a.size() == b.size());
      for (const auto& [key, t] : a) {
        REQUIRE_MESSAGE(b.count(key), key);
        CHECK_MESSAGE(bitwise_equal(t, b.at(key)), "state ", key, " differs");
      }
    }
  }
}

TEST_CASE("resume through a safetensors checkpoint file") {
  auto ps = some_params(DType::F32);
  optim::AdaBound opt(ps, 0.01, {.amsbound = true});
  for (int t = 1; t <= 3; ++t) {
    set_grads(ps, t);
    opt.step();
  }
  opt.set_lr(0.002);
  const std::string path = "test_optim_state.safetensors";
  save_safetensors(path, opt.state_dict());
  const TensorDict loaded = load_safetensors(path);
  std::remove(path.c_str());
  auto copy = fresh_copy(ps);
  optim::AdaBound opt2(copy, 0.01, {.amsbound = true});
  opt2.load_state_dict(loaded);
  CHECK(opt2.lr() == 0.002);
  CHECK(opt2.initial_lr() == 0.01);
  for (int t = 4; t <= 6; ++t) {
    set_grads(ps, t);
    opt.step();
    set_grads(copy, t);
    opt2.step();
  }
  for (size_t k = 0; k < ps.size(); ++k) CHECK(bitwise_equal(ps[k], copy[k]));
}

TEST_CASE("load_state_dict and step reject bad input with clear errors, changing nothing") {
  auto ps = some_params();
  optim::Adam opt(ps, 0.01, {.amsgrad = true});
  set_grads(ps, 1);
  opt.step();
  const TensorDict good = opt.state_dict();
  CHECK(good.size() == 2 + 2 * 4);  // lr, initial_lr; per parameter step, exp_avg, exp_avg_sq, max_exp_avg_sq

  auto without = [&](const std::string& key) {
    TensorDict d = good;
    d.erase(key);
    return d;
  };
  TensorDict wrong_shape = good;
  wrong_shape["0.exp_avg"] = zeros({3, 4});
  TensorDict extra = good;
  extra["0.momentum_buffer"] = zeros({4, 3});
  TensorDict out_of_range = good;
  out_of_range["5.step"] = scalar(1.0, DType::F64);
  TensorDict bad_step = good;
  bad_step["0.step"] = scalar(1.5, DType::F64);

  optim::Adam other(fresh_copy(ps), 0.01, {.amsgrad = true});
  CHECK(contains(error_of([&] { other.load_state_dict(without("lr")); }), "missing key 'lr'"));
  CHECK(contains(error_of([&] { other.load_state_dict(without("1.max_exp_avg_sq")); }),
                 "missing key '1.max_exp_avg_sq'"));
  const std::string shape_msg = error_of([&] { other.load_state_dict(wrong_shape); });
  CHECK(contains(shape_msg, "'0.exp_avg' has shape [3, 4] but parameter 0 is [4, 3]"));
  CHECK(contains(error_of([&] { other.load_state_dict(extra); }), "unexpected key '0.momentum_buffer'"));
  CHECK(contains(error_of([&] { other.load_state_dict(out_of_range); }), "has 2 parameters"));
  CHECK(contains(error_of([&] { other.load_state_dict(bad_step); }), "whole number"));
  CHECK(contains(error_of([&] { optim::Adam(fresh_copy(ps)).load_state_dict(good); }),
                 "unexpected key '0.max_exp_avg_sq'"));  // Adam without amsgrad keeps no maximum
  CHECK(other.steps() == 0);  // nothing was loaded
  CHECK(other.lr() == 0.01);

  // Parameters without a gradient are skipped (set_grad already refuses a gradient of another shape;
  // step() checks again because .grad() can be replaced by other code paths).
  const auto before0 = ps[0].to_vector<double>();
  ps[0].zero_grad();
  ps[1].set_grad(ones({3}));
  opt.step();
  CHECK(ps[0].to_vector<double>() == before0);
  CHECK(opt.steps(0) == 1);
  CHECK(opt.steps(1) == 2);
  opt.zero_grad();
  CHECK(!ps[0].grad().defined());
  CHECK(!ps[1].grad().defined());
}

TEST_CASE("large tensors take the parallel path and agree with the serial one") {
  // 100k elements (above the 32k threshold) vs the same values stepped as 1k-element slices.
  Generator gen(3);
  Tensor big = randn({100000}, gen);
  big.requires_grad_(true);
  Tensor g = randn({100000}, gen);
  std::vector<Tensor> pieces;
  for (int k = 0; k < 100; ++k) {
    Tensor piece = big.detach().slice(0, k * 1000, (k + 1) * 1000).clone();
    piece.requires_grad_(true);
    pieces.push_back(piece);
  }
  for (const char* spec : {"sgdm:lr=0.1", "adagrad", "adam", "amsgrad", "adamw", "adabound", "amsbound", "adaboundw"}) {
    CAPTURE(spec);
    Tensor a = big.detach().clone();
    a.requires_grad_(true);
    auto pa = fresh_copy(pieces);
    auto opt_a = optim::make(spec, {a});
    auto opt_b = optim::make(spec, pa);
    for (int t = 0; t < 3; ++t) {
      a.set_grad(g);
      for (int k = 0; k < 100; ++k) pa[k].set_grad(g.slice(0, k * 1000, (k + 1) * 1000));
      opt_a->step();
      opt_b->step();
    }
    Tensor joined = concat(pa, 0);
    CHECK(bitwise_equal(a.detach(), joined.detach()));
  }
}

TEST_CASE("lr_telemetry: hand-computed quantiles, bounds and clamped fractions") {
  using optim::LrQuantiles;
  auto check = [](const LrQuantiles& q, std::vector<double> want) {  // min p5 p25 median p75 p95 max
    const double got[] = {q.min, q.p5, q.p25, q.median, q.p75, q.p95, q.max};
    for (size_t k = 0; k < 7; ++k) CHECK(got[k] == doctest::Approx(want[k]).epsilon(1e-6));
  };
  // numpy.quantile([4, 1, 3, 2], [0, .05, .25, .5, .75, .95, 1]) = 1, 1.15, 1.75, 2.5, 3.25, 3.85, 4
  check(optim::lr_quantiles({4, 1, 3, 2}), {1, 1.15, 1.75, 2.5, 3.25, 3.85, 4});
  check(optim::lr_quantiles({7}), {7, 7, 7, 7, 7, 7, 7});

  auto one_step = [](const std::string& spec, std::vector<double> g) {
    Tensor p = zeros({static_cast<int64_t>(g.size())}, DType::F64);
    p.requires_grad_(true);
    auto opt = optim::make(spec, {p});
    CHECK(opt->lr_telemetry().empty());  // no step yet
    p.set_grad(from_vector(g, {static_cast<int64_t>(g.size())}));
    opt->step();
    auto stats = opt->lr_telemetry();
    REQUIRE(stats.size() == 1);
    CHECK(stats[0].param == 0);
    CHECK(stats[0].step == 1);
    return stats[0];
  };
  // Adam, t = 1: v = (1 - b2) g^2, so lr / (1 - b1) / (|g| + eps) = 1 / |g| for lr 0.1, b1 0.9.
  auto adam = one_step("adam:lr=0.1,eps=0", {1, -2});
  CHECK_FALSE(adam.bounded);
  check(adam.lr, {0.5, 0.525, 0.625, 0.75, 0.875, 0.975, 1});
  // AdaGrad: lr / sqrt(g^2).
  check(one_step("adagrad:lr=0.1,eps=0", {1, 2}).lr, {0.05, 0.0525, 0.0625, 0.075, 0.0875, 0.0975, 0.1});
  // AdaBound, t = 1: unclamped 1 / |g| = 1, 0.5, 0.0625; bounds 0.3 (1 - 1/1.5) = 0.1 and 0.3 (1 + 2) = 0.9.
  auto ab = one_step("adabound:lr=0.1,final_lr=0.3,gamma=0.5,eps=0", {1, 2, 16});
  CHECK(ab.bounded);
  CHECK(ab.lower_bound == doctest::Approx(0.1));
  CHECK(ab.upper_bound == doctest::Approx(0.9));
  CHECK(ab.frac_at_lower == doctest::Approx(1.0 / 3));
  CHECK(ab.frac_at_upper == doctest::Approx(1.0 / 3));
  check(ab.lr_unclamped, {0.0625, 0.10625, 0.28125, 0.5, 0.75, 0.95, 1});
  check(ab.lr, {0.1, 0.14, 0.3, 0.5, 0.7, 0.86, 0.9});
  {
    Tensor p = zeros({2}, DType::F64);
    p.requires_grad_(true);
    auto sgd = optim::make("sgd:lr=0.1", {p});
    p.set_grad(ones({2}, DType::F64));
    sgd->step();
    CHECK(sgd->lr_telemetry().empty());  // not adaptive: the default
  }

  // With beta1 = 0 the step is rate * g: the reported rate is the one the update applied (step 3).
  for (const char* spec : {"adam:lr=0.01,betas=0/0.99", "amsgrad:lr=0.01,betas=0/0.99", "adagrad:lr=0.1",
                           "adabound:lr=0.01,betas=0/0.99,final_lr=0.1,gamma=0.1",
                           "amsbound:lr=0.01,betas=0/0.99,final_lr=0.1,gamma=0.1"}) {
    CAPTURE(spec);
    Tensor p = full({1}, 0.5, DType::F64);
    p.requires_grad_(true);
    auto opt = optim::make(spec, {p});
    const double grads[] = {3.0, -0.5, 0.25};
    double before = 0;
    for (double g : grads) {
      before = p.item();
      p.set_grad(full({1}, g, DType::F64));
      opt->step();
    }
    const auto s = opt->lr_telemetry().at(0);
    CHECK(s.step == 3);
    CHECK(s.lr.min == s.lr.max);
    CHECK((before - p.item()) / grads[2] == doctest::Approx(s.lr.median).epsilon(1e-10));
  }
}

TEST_CASE("effective_lr: the per-element rate of every adaptive optimizer is the one the update applied") {
  // Step 3 with beta1 = 0 (AdaGrad has no momentum): p_2 - p_3 = rate * g_3 element by element; the rate's
  // shape is the parameter's. The AdaBound family's gamma = 0.1 and final_lr = 0.1 put the bounds at step 3
  // at [0.023, 0.43], so the large gradients' rates are clipped at the lower bound and the 1e-3 one's at the
  // upper: the rate is the clipped one.
  for (const char* spec :
       {"adagrad:lr=0.1", "adagrad:lr=0.1,lr_decay=0.5,initial_accumulator_value=0.1", "adam:lr=0.01,betas=0/0.99",
        "amsgrad:lr=0.01,betas=0/0.99", "adamw:lr=0.01,betas=0/0.99,weight_decay=0",
        "adabound:lr=0.01,betas=0/0.99,final_lr=0.1,gamma=0.1", "amsbound:lr=0.01,betas=0/0.99,final_lr=0.1,gamma=0.1",
        "adaboundw:lr=0.01,betas=0/0.99,final_lr=0.1,gamma=0.1,weight_decay=0"}) {
    CAPTURE(spec);
    Tensor p = from_vector(std::vector<double>{0.5, -1.0, 2.0, 0.25, 0.0, 1.5}, {2, 3});
    p.requires_grad_(true);
    auto opt = optim::make(spec, {p});
    CHECK_FALSE(opt->effective_lr(0).defined());  // no step yet
    const std::vector<std::vector<double>> grads = {
        {3, -1, 0.5, 2, 1e-3, -4}, {-0.5, 2, 1, 0.1, 1e-3, 1}, {0.25, 1, -2, 3, 1e-3, 0.5}};
    std::vector<double> before;
    for (const auto& g : grads) {
      before = p.to_vector<double>();
      p.set_grad(from_vector(g, {2, 3}));
      opt->step();
    }
    const Tensor rate = opt->effective_lr(0);
    REQUIRE(rate.defined());
    CHECK(rate.shape() == Shape{2, 3});
    CHECK(rate.dtype() == DType::F64);
    const auto r = rate.to_vector<double>(), after = p.to_vector<double>();
    for (size_t k = 0; k < r.size(); ++k)
      CHECK((before[k] - after[k]) / grads[2][k] == doctest::Approx(r[k]).epsilon(1e-10));
    // lr_telemetry summarises the same numbers.
    const auto s = opt->lr_telemetry().at(0);
    CHECK(s.lr.min == doctest::Approx(*std::min_element(r.begin(), r.end())));
    CHECK(s.lr.max == doctest::Approx(*std::max_element(r.begin(), r.end())));
    if (s.bounded) {
      CHECK(s.frac_at_lower > 0);
      CHECK(s.frac_at_upper > 0);
      CHECK(s.lr.min == doctest::Approx(s.lower_bound));
      CHECK(s.lr.max == doctest::Approx(s.upper_bound));
    }
    const std::string msg = [&] {
      try {
        opt->effective_lr(1);
      } catch (const Error& e) {
        return std::string(e.what());
      }
      return std::string();
    }();
    CHECK(msg.find("out of range") != std::string::npos);
  }
  Tensor p = zeros({2}, DType::F64);
  p.requires_grad_(true);
  auto sgd = optim::make("sgd:lr=0.1,momentum=0.9", {p});
  p.set_grad(ones({2}, DType::F64));
  sgd->step();
  CHECK_FALSE(sgd->effective_lr(0).defined());  // no adaptive rate
}

TEST_CASE("parameter groups: add_param_group, spec sections, describe, state_dict, telemetry") {
  // The typed API and the spec string build the same optimizer: the same trajectory bit for bit.
  auto a = some_params(DType::F64), b = fresh_copy(a);
  optim::AdaBound typed({a[0]}, 0.01, {.final_lr = 0.1, .weight_decay = 5e-4});
  typed.add_param_group({a[1]}, 0.02, {.final_lr = 0.05, .gamma = 0.1, .amsbound = true}, "bias");
  auto spec = optim::make("adabound:lr=0.01,final_lr=0.1,weight_decay=5e-4; bias: lr=0.02,final_lr=0.05,gamma=0.1,"
                          "weight_decay=0,amsbound=true",
                          {{"weight", {b[0]}}, {"bias", {b[1]}}});
  CHECK(typed.describe() == "adabound:lr=0.01,betas=0.9/0.999,final_lr=0.1,gamma=0.001,eps=1e-08,weight_decay=0.0005,"
                            "amsbound=false;bias:lr=0.02,betas=0.9/0.999,final_lr=0.05,gamma=0.1,eps=1e-08,"
                            "weight_decay=0,amsbound=true");
  CHECK(spec->group_name(0) == "weight");
  CHECK(spec->describe().substr(spec->describe().find(';')) == typed.describe().substr(typed.describe().find(';')));
  CHECK(optim::make(spec->describe(), {{"weight", {b[0]}}, {"bias", {b[1]}}})->describe() == spec->describe());
  for (int t = 1; t <= 5; ++t) {
    if (t == 3) {
      typed.set_lr(1, 0.01);  // a scheduled lr scales that group's final_lr only
      spec->set_lr(1, 0.01);
    }
    set_grads(a, t);
    set_grads(b, t);
    typed.step();
    spec->step();
  }
  for (size_t k = 0; k < a.size(); ++k) CHECK(bitwise_equal(a[k], b[k]));
  CHECK(typed.num_groups() == 2);
  CHECK(typed.lr(0) == 0.01);
  CHECK(typed.initial_lr(1) == 0.02);
  CHECK(typed.group_of(1) == 1);

  // state_dict: group 0's lr as before, the other groups' under group<g>.*; per-group state names.
  const TensorDict d = typed.state_dict();
  CHECK(d.at("group1.lr").item() == 0.01);
  CHECK(d.at("group1.initial_lr").item() == 0.02);
  CHECK(d.count("1.max_exp_avg_sq") == 1);
  CHECK(d.count("0.max_exp_avg_sq") == 0);
  auto c = fresh_copy(a);
  optim::AdaBound other({c[0]}, 0.01, {.final_lr = 0.1, .weight_decay = 5e-4});
  other.add_param_group({c[1]}, 0.02, {.final_lr = 0.05, .gamma = 0.1, .amsbound = true});
  other.load_state_dict(d);
  CHECK(other.lr(1) == 0.01);
  optim::AdaBound one_group(fresh_copy(a), 0.01);
  CHECK(contains(error_of([&] { one_group.load_state_dict(d); }), "names parameter group 1"));

  // Telemetry and effective_lr use each parameter's group.
  const auto stats = typed.lr_telemetry();
  REQUIRE(stats.size() == 2);
  CHECK(stats[1].group == 1);
  CHECK(typed.steps(1) == 4);  // no gradient at step 2
  CHECK(stats[1].upper_bound == doctest::Approx(0.05 * 0.01 / 0.02 * (1 + 1 / (0.1 * 4))));

  // Misuse.
  CHECK(contains(error_of([&] { typed.lr(2); }), "parameter group 2 out of range (2 groups)"));
  CHECK(contains(error_of([&] { typed.options(7); }), "out of range"));
  CHECK(contains(error_of([&] { typed.steps(9); }), "parameter 9 out of range"));
  CHECK(contains(error_of([&] { typed.add_param_group({a[0]}, 0.01, {}); }), "appears twice"));
  CHECK(contains(error_of([&] { typed.add_param_group(some_params(), 0.01, {}, "bias"); }), "named 'bias'"));
  CHECK(contains(error_of([&] { optim::make("adam; nosuch: lr=1", {{"a", {c[0]}}}); }), "names the parameter group 'nosuch'"));
  CHECK(contains(error_of([&] { optim::make("adam; b: lr=1; b: eps=0", {{"a", {c[0]}}, {"b", {c[1]}}}); }),
                 "two sections"));
  CHECK(contains(error_of([&] { optim::make("adam:betas=0.9,0.999", c); }), "did you mean betas=0.9/0.999?"));
}

TEST_CASE("checkpoints hold several optimizers and schedulers, and resume them exactly") {
  auto run = [](nn::Linear& model, optim::Adam& adam, optim::SGD& sgd, optim::LinearLR& warm, optim::StepLR& decay,
                int from, int to) {
    for (int t = from; t <= to; ++t) {
      Tensor x = full({4, 3}, 0.1 * t, DType::F64);
      adam.zero_grad();
      sgd.zero_grad();
      sum(mul(model(x), model(x))).backward();
      adam.step();
      sgd.step();
      warm.step();
      decay.step();
    }
  };
  Generator gen(5);
  nn::Linear model(3, 2, true, gen, DType::F64);
  optim::Adam adam({model.weight}, 0.01);
  optim::SGD sgd({model.bias}, 0.1, {.momentum = 0.9});
  optim::LinearLR warm(adam, 0.5, 1.0, 4);
  optim::StepLR decay(sgd, 2, 0.5);
  run(model, adam, sgd, warm, decay, 1, 3);
  const std::string path = "test_optim_checkpoint.safetensors";
  save_checkpoint(path, model, {{&adam, &sgd}, {&warm, &decay}}, {{"epoch", "3"}});
  run(model, adam, sgd, warm, decay, 4, 6);

  Generator gen2(9);
  nn::Linear model2(3, 2, true, gen2, DType::F64);
  optim::Adam adam2({model2.weight}, 0.01);
  optim::SGD sgd2({model2.bias}, 0.1, {.momentum = 0.9});
  optim::LinearLR warm2(adam2, 0.5, 1.0, 4);
  optim::StepLR decay2(sgd2, 2, 0.5);
  // Too few schedulers: refused, and nothing changes.
  const auto before = model2.weight.to_vector<double>();
  CHECK(contains(error_of([&] { load_checkpoint(path, model2, {{&adam2, &sgd2}, {&warm2}}); }), "belongs to scheduler 1"));
  CHECK(contains(error_of([&] { load_checkpoint(path, model2, {{&sgd2, &adam2}, {&warm2, &decay2}}); }),
                 "nothing was loaded"));
  CHECK(model2.weight.to_vector<double>() == before);
  CHECK(adam2.steps() == 0);
  CHECK(warm2.last_epoch() == 0);
  const Metadata meta = load_checkpoint(path, model2, {{&adam2, &sgd2}, {&warm2, &decay2}});
  std::remove(path.c_str());
  CHECK(meta.at("epoch") == "3");
  CHECK(warm2.last_epoch() == 3);
  run(model2, adam2, sgd2, warm2, decay2, 4, 6);
  CHECK(bitwise_equal(model2.weight, model.weight));
  CHECK(bitwise_equal(model2.bias, model.bias));
  CHECK(adam2.lr() == adam.lr());
  CHECK(sgd2.lr() == sgd.lr());
}

TEST_CASE("a user-side optimizer (examples/custom_optimizer.hpp: RMSprop) against torch.optim.RMSprop") {
  int ran = 0;
  for (const auto& c : golden().at("cases")) {
    if (c.at("config").at("optimizer") != "rmsprop") continue;
    const std::string label = c.at("problem").get<std::string>() + "/" + c.at("dtype").get<std::string>() + "/" +
                              c.at("config").at("name").get<std::string>();
    std::string err;
    try {
      err = run_case(c);
    } catch (const std::exception& e) {
      err = std::string("threw: ") + e.what();
    }
    CHECK_MESSAGE(err.empty(), label, ": ", err);
    ++ran;
  }
  CHECK(ran == 14);  // rmsprop and rmsprop_wd on three problems, rmsprop_alpha_wd on the scripted one; f64 and f32
  // The base class gives it state_dict, resume and describe.
  auto ps = some_params(DType::F64);
  RMSprop opt(ps, 0.01, {.alpha = 0.9});
  set_grads(ps, 1);
  opt.step();
  CHECK(opt.describe() == "rmsprop:lr=0.01,alpha=0.9,eps=1e-08,weight_decay=0");
  CHECK(opt.state_dict().count("1.square_avg") == 1);
  CHECK(contains(error_of([&] { RMSprop(ps, 0.01, {.alpha = 1.5}); }), "alpha"));
}
