// paths: the six optimizers of the AdaBound paper on 2-D functions, for the figures of docs/optimizers.md.
//
// Every run is tapegrad's own: one f64 parameter p = (x, y) at the function's start, f(p) computed with the
// library's ops, its gradient by backward(), one step() of the optimizer optim::make builds from the spec.
// Nothing of the update rules is re-implemented here. The functions:
//
//   quadratic    f = (x^2 + 25 y^2) / 2          condition number 25, minimum 0 at (0, 0)
//   rosenbrock   f = (1 - x)^2 + 100 (y - x^2)^2  a curved valley, minimum 0 at (1, 1)
//   saddle       f = x^2 / 2 + y^4 / 4 - y^2 / 2  a saddle at (0, 0), minima -1/4 at (0, +-1); the start
//                                                  lies almost on the ridge y = 0, where the gradient in y
//                                                  is tiny
//
// and "bounds": AdaBound on a noisy quadratic f = (x^2 + 10 y^2) / 2 whose gradient carries Gaussian noise
// (std 0.03 in x, 1 in y, from --seed), long enough (--bound-steps) for its bounds eta_l(t), eta_u(t) to
// close in on final_lr; at log-spaced steps it records the bounds and each coordinate's rate
// alpha_t / (sqrt(v_t) + eps) before and after clipping (Optimizer::lr_telemetry()).
//
// Output (JSON lines, to --out or stdout): per function one {"kind": "function", ...} line with its formula,
// start, minimum and a grid of f for contours; per (function, optimizer) one {"kind": "path", ...} line with
// x, y and f of every step; one {"kind": "bounds", ...} line. tools/plot paths draws them.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "tapegrad/error.hpp"
#include "tapegrad/ops.hpp"
#include "tapegrad/optim.hpp"
#include "tapegrad/tensor.hpp"

using json = nlohmann::ordered_json;
using namespace tapegrad;

namespace {

struct Function {
  std::string name, formula;
  std::function<Tensor(const Tensor& x, const Tensor& y)> f;  // scalars in, scalar out (the library's ops)
  double x0, y0, xmin, ymin, fmin;                             // start, a minimum and its value
  double left, right, bottom, top;                             // the plotted window
  int64_t steps;
  std::vector<std::pair<std::string, std::string>> runs;       // label, optim::make spec
};

// The six optimizers with two step sizes of one function: `sgd` for SGDM, scaled to the curvature, and `ada`
// for the Adam family, a distance per step (their first step moves each coordinate by about ada); AdaGrad
// gets 10 ada (its rate decays as 1 / sqrt(t) from the start), the ratio of the paper's settings (1e-2, 1e-3).
// AdaBound's final_lr is sgd / (1 - beta1) = 10 sgd: its late steps final_lr * m_t then equal SGDM's
// steady-state steps sgd * g / (1 - momentum) (m_t is an average of gradients, SGDM's buffer a sum).
std::vector<std::pair<std::string, std::string>> six(double sgd, double ada, double gamma) {
  const std::string a = optim::format_number(ada);
  const std::string bound = ",final_lr=" + optim::format_number(10 * sgd) + ",gamma=" + optim::format_number(gamma);
  return {{"SGDM", "sgdm:lr=" + optim::format_number(sgd) + ",momentum=0.9"},
          {"AdaGrad", "adagrad:lr=" + optim::format_number(10 * ada)},
          {"Adam", "adam:lr=" + a},
          {"AMSGrad", "amsgrad:lr=" + a},
          {"AdaBound", "adabound:lr=" + a + bound},
          {"AMSBound", "amsbound:lr=" + a + bound}};
}

std::vector<Function> functions() {
  return {
      {"quadratic", "f = (x^2 + 25 y^2) / 2",
       [](const Tensor& x, const Tensor& y) { return (x * x + 25.0 * (y * y)) * 0.5; }, -4.5, 1.5, 0, 0, 0,
       -5, 2, -2, 2, 200, six(0.02, 0.2, 0.05)},
      {"rosenbrock", "f = (1 - x)^2 + 100 (y - x^2)^2",
       [](const Tensor& x, const Tensor& y) {
         const Tensor a = 1.0 - x, b = y - x * x;
         return a * a + 100.0 * (b * b);
       },
       -1.2, 1.0, 1, 1, 0, -1.6, 1.6, -0.6, 1.6, 2000, six(5e-4, 0.02, 0.01)},
      {"saddle", "f = x^2 / 2 + y^4 / 4 - y^2 / 2",
       [](const Tensor& x, const Tensor& y) {
         const Tensor y2 = y * y;
         return x * x * 0.5 + y2 * y2 * 0.25 - y2 * 0.5;
       },
       1.5, 1e-4, 0, 1, -0.25, -1, 2, -1.5, 1.5, 150, six(0.05, 0.05, 0.05)},
  };
}

double value(const Function& fn, double x, double y) {
  NoGradGuard no_grad;
  return fn.f(scalar(x, DType::F64), scalar(y, DType::F64)).item();
}

// One run: x, y and f at the start and after every step.
json trajectory(const Function& fn, const std::string& label, const std::string& spec) {
  Tensor p = from_vector(std::vector<double>{fn.x0, fn.y0}, {2}).requires_grad_();
  auto opt = optim::make(spec, {p});
  std::vector<double> xs, ys, fs;
  for (int64_t t = 0; t <= fn.steps; ++t) {
    const Tensor f = fn.f(p.slice(0, 0, 1), p.slice(0, 1, 2)).reshape({});
    const auto v = p.to_vector<double>();
    xs.push_back(v[0]);
    ys.push_back(v[1]);
    fs.push_back(f.item());
    TG_CHECK(std::isfinite(fs.back()), "paths: ", label, " (", spec, ") diverged on ", fn.name, " at step ", t);
    if (t == fn.steps) break;
    opt->zero_grad();
    f.backward();
    opt->step();
  }
  return {{"kind", "path"}, {"function", fn.name}, {"optimizer", label}, {"spec", opt->describe()},
          {"x", xs},        {"y", ys},             {"f", fs}};
}

json grid(const Function& fn, int64_t n) {
  std::vector<double> xs, ys;
  std::vector<std::vector<double>> f;
  for (int64_t i = 0; i < n; ++i) {
    xs.push_back(fn.left + (fn.right - fn.left) * static_cast<double>(i) / static_cast<double>(n - 1));
    ys.push_back(fn.bottom + (fn.top - fn.bottom) * static_cast<double>(i) / static_cast<double>(n - 1));
  }
  for (const double y : ys) {
    f.emplace_back();
    for (const double x : xs) f.back().push_back(value(fn, x, y));
  }
  return {{"kind", "function"}, {"function", fn.name},  {"formula", fn.formula}, {"start", {fn.x0, fn.y0}},
          {"minimum", {fn.xmin, fn.ymin}}, {"fmin", fn.fmin}, {"steps", fn.steps},
          {"grid", {{"x", xs}, {"y", ys}, {"f", f}}}};
}

// AdaBound on the noisy quadratic: its bounds and the rates of x and y before and after clipping, at
// log-spaced steps. x and y are two one-element parameters, so that lr_telemetry() reports each alone.
json bounds_run(const std::string& spec, int64_t steps, uint64_t seed) {
  Tensor x = full({1}, 2.0, DType::F64).requires_grad_(), y = full({1}, 1.0, DType::F64).requires_grad_();
  auto opt = optim::make(spec, {x, y});
  TG_CHECK(opt->name() == "adabound" || opt->name() == "amsbound", "paths: --bound-optim '", spec,
           "': expected an adabound or amsbound spec");
  Generator gen(seed);
  json rows = json::array();
  int64_t next = 1;
  for (int64_t t = 1; t <= steps; ++t) {
    opt->zero_grad();
    (sum(x * x + 10.0 * (y * y)) * 0.5).backward();
    {
      NoGradGuard no_grad;  // a stochastic gradient: noise of std 0.03 in x, 1 in y
      x.set_grad(x.grad() + randn({1}, gen, DType::F64) * 0.03);
      y.set_grad(y.grad() + randn({1}, gen, DType::F64));
    }
    opt->step();
    if (t == next || t == steps) {
      const std::vector<optim::LrStats> s = opt->lr_telemetry();  // one element each: every quantile is it
      rows.push_back({{"step", t},
                      {"lower", s.at(0).lower_bound},
                      {"upper", s.at(0).upper_bound},
                      {"rate_x", s.at(0).lr_unclamped.median},
                      {"rate_y", s.at(1).lr_unclamped.median},
                      {"clipped_x", s.at(0).lr.median},
                      {"clipped_y", s.at(1).lr.median}});
      next = std::max(t + 1, static_cast<int64_t>(std::ceil(static_cast<double>(t) * 1.05)));
    }
  }
  return {{"kind", "bounds"},
          {"function", "noisy quadratic f = (x^2 + 10 y^2) / 2, gradient noise of std 0.03 in x and 1 in y"},
          {"spec", opt->describe()},
          {"steps", rows}};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"paths: the six optimizers (the library's own) on 2-D functions, and AdaBound's bounds closing in "
               "on its rates; JSON lines for tools/plot paths."};
  std::string out, bound_spec = "adabound:lr=0.01,final_lr=0.1,gamma=0.001";
  std::vector<std::string> names;
  int64_t bound_steps = 50000;
  uint64_t seed = 1;
  app.add_option("--out", out, "output file (default: stdout)");
  app.add_option("--function", names, "quadratic, rosenbrock, saddle (default: all three)");
  app.add_option("--bound-optim", bound_spec, "the AdaBound spec of the bounds run")->capture_default_str();
  app.add_option("--bound-steps", bound_steps, "steps of the bounds run (0: none)")->capture_default_str();
  app.add_option("--seed", seed, "seed of the bounds run's gradient noise")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "paths: " << e.what() << "\n(run with --help for the flags)\n";
    return 2;
  }
  try {
    std::vector<Function> chosen;
    for (const Function& fn : functions())
      if (names.empty() || std::find(names.begin(), names.end(), fn.name) != names.end()) chosen.push_back(fn);
    for (const std::string& n : names) {
      bool known = false;
      for (const Function& fn : chosen) known = known || fn.name == n;
      TG_CHECK(known, "--function '", n, "': expected quadratic, rosenbrock or saddle");
    }
    TG_CHECK(bound_steps >= 0, "--bound-steps ", bound_steps, ": must be >= 0");
    std::ofstream file;
    if (!out.empty()) {
      file.open(out);
      TG_CHECK(file.good(), "--out '", out, "': cannot write");
    }
    std::ostream& os = out.empty() ? std::cout : file;
    for (const Function& fn : chosen) {
      os << grid(fn, 121).dump() << '\n';
      for (const auto& [label, spec] : fn.runs) os << trajectory(fn, label, spec).dump() << '\n';
    }
    if (bound_steps > 0) os << bounds_run(bound_spec, bound_steps, seed).dump() << '\n';
    TG_CHECK(os.good(), "paths: writing ", out.empty() ? "stdout" : out, " failed");
    return 0;
  } catch (const Error& e) {
    std::cerr << "paths: error: " << e.what() << '\n';
    return 2;
  }
}
