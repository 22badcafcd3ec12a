// counterexample: the online convex problems on which Adam fails and AMSGrad / AdaBound / AMSBound do not
// (Luo et al., ICLR 2019, section 3, after Reddi, Kale and Kumar, ICLR 2018, section 3).
//
// Feasible set F = [-1, 1]; linear losses f_t(x) = g_t * x; every optimizer plays x_t, sees g_t, takes one
// step of its real update rule (optim::make on a one-element f64 parameter whose gradient is set to g_t),
// and is projected back onto F. Two problems:
//
//   deterministic (Luo et al., section 3):   g_t = -1 if t mod C = 1,  +2 if t mod C = 2,  0 otherwise.
//       Each period of C steps adds x to the total loss, so x* = -1. With beta1 = 0 and C large enough that
//       beta2^(C-2) is negligible, Adam's v has forgotten the +2 by the time the -1 comes: the -1 gets a
//       step lr / sqrt(1 - beta2) and the +2 only lr * 2 / sqrt(beta2 (1 - beta2) + 4 (1 - beta2)), so Adam
//       drifts up by ~ (1 - 2 / sqrt(4 + beta2)) lr / sqrt(1 - beta2) per period, towards +1. The paper's
//       argument shows Adam stays at x >= 0; with enough periods it reaches the boundary +1.
//       (Reddi et al.'s own deterministic example, f_t = C x at t mod 3 = 1 and -x otherwise, is the same
//       phenomenon with a period of 3; Luo et al. use the sparse -1 / +2 sequence above, which we follow.)
//   stochastic (Reddi et al., theorem 3):     g_t = C with probability p = (1 + delta) / (C + 1), else -1.
//       E[g_t] = delta > 0, so x* = -1 for the expected loss. The rare large gradient is forgotten by Adam.
//       A constant step cannot converge on this problem for any method (one gradient of C moves SGD by
//       lr * C); the theory uses alpha_t = alpha / sqrt(t), so --stoch-schedule defaults to inv-sqrt.
//
// Regret: R_T = sum_t f_t(x_t) - min_{x in F} sum_t f_t(x) = sum_t g_t x_t + |sum_t g_t| (realised losses).
// --schedule inv-sqrt sets lr_t = lr / sqrt(t) with set_lr() before step t; for AdaBound this also scales
// the bounds by 1 / sqrt(t) (final_lr follows lr / initial lr), which is exactly the paper's Algorithm 2,
// eta_t = Clip(alpha / sqrt(V_t), eta_l(t), eta_u(t)) / sqrt(t).
//
// Output in --out (default results/counterexample/): <problem>-<optimizer>.jsonl (x_t and R_t / t every
// --every steps), summary.json, summary.md; the table is printed too. tools/plot counterexample draws the
// PNGs (tools/replicate counterexample does both).
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "tapegrad/error.hpp"
#include "tapegrad/optim.hpp"
#include "tapegrad/tensor.hpp"

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;
using namespace tapegrad;

namespace {

struct Config {
  std::vector<std::string> problems{"deterministic", "stochastic"};
  std::vector<std::string> optim;  // LABEL=SPEC or SPEC; default: the five below, from --lr etc.
  int64_t steps = 100000;
  int64_t period = 1000;  // C of the deterministic problem
  double stoch_c = 100;   // C of the stochastic problem
  double delta = 0.1;
  uint64_t seed = 1;
  double x0 = 0.0;
  double lr = 0.01, beta1 = 0.0, beta2 = 0.99, eps = 1e-8, final_lr = 0.1, gamma = 1e-3;
  std::string schedule = "constant", stoch_schedule = "inv-sqrt";
  int64_t every = 100;
  std::string out = "results/counterexample";
};

struct Run {
  std::string label, spec;
};

std::string num(double v) { return optim::format_number(v); }

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::vector<Run> runs_of(const Config& c) {
  const std::string betas = "betas=" + num(c.beta1) + "/" + num(c.beta2) + ",eps=" + num(c.eps);
  const std::string bounds = ",final_lr=" + num(c.final_lr) + ",gamma=" + num(c.gamma);
  if (c.optim.empty())
    return {{"SGD", "sgd:lr=" + num(c.lr)},
            {"Adam", "adam:lr=" + num(c.lr) + "," + betas},
            {"AMSGrad", "amsgrad:lr=" + num(c.lr) + "," + betas},
            {"AdaBound", "adabound:lr=" + num(c.lr) + "," + betas + bounds},
            {"AMSBound", "amsbound:lr=" + num(c.lr) + "," + betas + bounds}};
  std::vector<Run> runs;
  for (const std::string& s : c.optim) {
    Run r{"", s};
    const auto eq = s.find('='), colon = s.find(':');
    if (eq != std::string::npos && (colon == std::string::npos || eq < colon)) {
      r.label = s.substr(0, eq);
      r.spec = s.substr(eq + 1);
    } else {
      r.label = s.substr(0, colon);
    }
    for (char ch : r.label)
      TG_CHECK(std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_', "--optim: label '", r.label,
               "' may hold only letters, digits, '-' and '_'");
    for (const Run& o : runs) TG_CHECK(o.label != r.label, "--optim: label '", r.label, "' given twice");
    runs.push_back(r);
  }
  return runs;
}

// The gradient sequence of one problem: g(t) for t = 1..steps, the same for every optimizer.
class Problem {
 public:
  Problem(const std::string& name, const Config& c) : name_(name), c_(c), rng_(c.seed) {
    if (name == "deterministic") {
      TG_CHECK(c.period >= 3, "--C ", c.period, ": the deterministic problem needs C >= 3 (steps 1 and 2 of each period)");
    } else if (name == "stochastic") {
      TG_CHECK(c.stoch_c > 0 && std::isfinite(c.stoch_c), "--stoch-C ", c.stoch_c, ": must be > 0");
      TG_CHECK(c.delta > 0 && c.delta <= c.stoch_c, "--delta ", c.delta, ": must be in (0, stoch-C] so that 0 < p <= 1");
    } else {
      TG_FAIL("--problem '", name, "': expected deterministic or stochastic");
    }
  }
  double grad(int64_t t) {
    if (name_ == "deterministic") {
      const int64_t r = t % c_.period;
      return r == 1 ? -1.0 : r == 2 ? 2.0 : 0.0;
    }
    const double p = (1 + c_.delta) / (c_.stoch_c + 1);
    return std::uniform_real_distribution<double>(0.0, 1.0)(rng_) < p ? c_.stoch_c : -1.0;
  }
  std::string description() const {
    if (name_ == "deterministic")
      return "g_t = -1 at t mod " + std::to_string(c_.period) + " = 1, +2 at t mod " + std::to_string(c_.period) +
             " = 2, 0 otherwise";
    return "g_t = " + num(c_.stoch_c) + " with probability (1 + " + num(c_.delta) + ") / (" + num(c_.stoch_c) +
           " + 1), else -1 (seed " + std::to_string(c_.seed) + ")";
  }
  const std::string& schedule() const { return name_ == "deterministic" ? c_.schedule : c_.stoch_schedule; }

 private:
  std::string name_;
  const Config& c_;
  std::mt19937_64 rng_;
};

struct Result {
  Run run;
  std::string resolved;
  double final_x = 0, regret = 0, grad_sum = 0;
};

Result run_one(const std::string& problem_name, const Config& c, const Run& r, std::ostream& lines) {
  Problem problem(problem_name, c);
  Tensor x = full({1}, c.x0, DType::F64);
  x.requires_grad_(true);
  Tensor g = zeros({1}, DType::F64);
  std::unique_ptr<optim::Optimizer> opt = optim::make(r.spec, {x});
  const double lr0 = opt->initial_lr();
  const bool inv_sqrt = problem.schedule() == "inv-sqrt";
  x.set_grad(g);
  double* xv = x.data<double>();
  double* gv = g.data<double>();

  double loss = 0.0, grad_sum = 0.0;
  auto record = [&](int64_t t) {
    const double regret = loss + std::abs(grad_sum);
    json j = {{"problem", problem_name}, {"optimizer", r.label}, {"step", t}, {"x", *xv}, {"regret", regret},
              {"avg_regret", t > 0 ? json(regret / static_cast<double>(t)) : json(nullptr)}};
    lines << j.dump() << '\n';
  };
  record(0);
  for (int64_t t = 1; t <= c.steps; ++t) {
    const double gt = problem.grad(t);
    loss += gt * *xv;  // f_t(x_t): x_t is played before g_t is seen
    grad_sum += gt;
    if (inv_sqrt) opt->set_lr(lr0 / std::sqrt(static_cast<double>(t)));
    *gv = gt;
    opt->step();
    *xv = std::clamp(*xv, -1.0, 1.0);  // projection onto F
    if (t % c.every == 0 || t == c.steps) record(t);
  }
  Result res{r, opt->describe(), *xv, loss + std::abs(grad_sum), grad_sum};
  return res;
}

std::string table(const std::vector<Result>& rs, int64_t steps) {
  std::ostringstream os;
  os << "| optimizer | final x | average regret R_T/T | spec |\n|---|---|---|---|\n";
  for (const Result& r : rs)
    os << "| " << r.run.label << " | " << fmt("%+.4f", r.final_x) << " | " << fmt("%.3e", r.regret / steps) << " | `"
       << r.run.spec << "` |\n";
  return os.str();
}

int run(const Config& c) {
  TG_CHECK(c.steps >= 1, "--steps ", c.steps, ": must be at least 1");
  TG_CHECK(c.every >= 1, "--every ", c.every, ": must be at least 1");
  TG_CHECK(c.x0 >= -1 && c.x0 <= 1, "--x0 ", c.x0, ": must lie in the feasible set [-1, 1]");
  for (const std::string* s : {&c.schedule, &c.stoch_schedule})
    TG_CHECK(*s == "constant" || *s == "inv-sqrt", "--schedule / --stoch-schedule '", *s,
             "': expected constant or inv-sqrt");
  TG_CHECK(!c.problems.empty(), "--problem: give deterministic and/or stochastic");
  const std::vector<Run> runs = runs_of(c);
  {  // every spec and problem checked before the first run
    Tensor probe = zeros({1}, DType::F64);
    probe.requires_grad_(true);
    for (const Run& r : runs) optim::make(r.spec, {probe});
    for (const std::string& p : c.problems) Problem(p, c);
  }
  fs::create_directories(c.out);

  json summary = {{"experiment", "counterexample"},
                  {"steps", c.steps},
                  {"x0", c.x0},
                  {"feasible_set", {-1, 1}},
                  {"every", c.every},
                  {"problems", json::array()}};
  std::string md = "# Counterexample: online linear losses on [-1, 1] (Luo et al. 2019, section 3; Reddi et al. 2018)\n\n";
  std::cout << md;
  for (const std::string& pname : c.problems) {
    Problem problem(pname, c);
    std::vector<Result> results;
    json jp = {{"problem", pname},
               {"gradients", problem.description()},
               {"schedule", problem.schedule()},
               {"runs", json::array()}};
    for (const Run& r : runs) {
      const fs::path path = fs::path(c.out) / (pname + "-" + r.label + ".jsonl");
      std::ofstream lines(path, std::ios::trunc);
      TG_CHECK(lines.good(), "cannot write ", path.string());
      results.push_back(run_one(pname, c, r, lines));
      TG_CHECK(lines.good(), "cannot write ", path.string());
      const Result& res = results.back();
      jp["runs"].push_back({{"optimizer", r.label}, {"spec", r.spec}, {"resolved", res.resolved},
                            {"final_x", res.final_x}, {"regret", res.regret},
                            {"avg_regret", res.regret / static_cast<double>(c.steps)},
                            {"trajectory", path.string()}});
    }
    const double x_star = results.front().grad_sum > 0 ? -1.0 : results.front().grad_sum < 0 ? 1.0 : 0.0;
    jp["grad_sum"] = results.front().grad_sum;
    jp["x_star"] = x_star;
    const std::string head = "## " + pname + ": " + problem.description() + "\n\n" + std::to_string(c.steps) +
                             " steps from x_1 = " + num(c.x0) + ", lr schedule " + problem.schedule() +
                             (problem.schedule() == "inv-sqrt" ? " (lr_t = lr / sqrt(t))" : "") +
                             "; best fixed point in hindsight x* = " + num(x_star) + " (sum of gradients " +
                             num(results.front().grad_sum) + ").\n\n";
    const std::string tab = table(results, c.steps);
    md += head + tab + "\n";
    std::cout << head << tab << '\n' << std::flush;
    summary["problems"].push_back(jp);
  }
  md += "Trajectories (x_t and R_t/t every " + std::to_string(c.every) + " steps): `<problem>-<optimizer>.jsonl` beside this file.\n";
  for (const auto& [name, text] : {std::pair<std::string, std::string>{"summary.json", summary.dump(2) + "\n"},
                                   std::pair<std::string, std::string>{"summary.md", md}}) {
    const fs::path path = fs::path(c.out) / name;
    std::ofstream f(path, std::ios::trunc);
    f << text;
    TG_CHECK(f.good(), "cannot write ", path.string());
  }
  std::cout << "results in " << c.out << "/ (summary.json, summary.md, *.jsonl)\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "counterexample: Luo et al.'s (section 3) and Reddi et al.'s online convex problems on [-1, 1]; runs SGD, "
      "Adam, AMSGrad, AdaBound and AMSBound (the library's update rules) from the same start and records x_t "
      "and the average regret R_t/t."};
  app.get_formatter()->column_width(34);
  Config c;
  app.add_option("--problem", c.problems, "deterministic and/or stochastic")->capture_default_str();
  app.add_option("--steps", c.steps, "steps T")->capture_default_str();
  app.add_option("--C", c.period, "period C of the deterministic problem (-1 at t mod C = 1, +2 at 2)")
      ->capture_default_str();
  app.add_option("--stoch-C", c.stoch_c, "the large gradient C of the stochastic problem")->capture_default_str();
  app.add_option("--delta", c.delta, "stochastic problem: P(g = C) = (1 + delta) / (C + 1), E[g] = delta")
      ->capture_default_str();
  app.add_option("--seed", c.seed, "seed of the stochastic gradients")->capture_default_str();
  app.add_option("--x0", c.x0, "starting point x_1 in [-1, 1]")->capture_default_str();
  app.add_option("--lr", c.lr, "step size of all five optimizers")->capture_default_str();
  app.add_option("--beta1", c.beta1, "beta1 of the Adam family")->capture_default_str();
  app.add_option("--beta2", c.beta2, "beta2 of the Adam family")->capture_default_str();
  app.add_option("--eps", c.eps, "eps of the Adam family")->capture_default_str();
  app.add_option("--final-lr", c.final_lr, "AdaBound / AMSBound final_lr")->capture_default_str();
  app.add_option("--gamma", c.gamma, "AdaBound / AMSBound gamma")->capture_default_str();
  app.add_option("--schedule", c.schedule, "deterministic problem: constant or inv-sqrt (lr / sqrt(t))")
      ->capture_default_str();
  app.add_option("--stoch-schedule", c.stoch_schedule, "stochastic problem: constant or inv-sqrt")
      ->capture_default_str();
  app.add_option("--optim", c.optim,
                 "replace the five defaults: optimizer specs (optim::make), LABEL=SPEC or SPEC, repeatable");
  app.add_option("--every", c.every, "record x_t and R_t/t every N steps")->capture_default_str();
  app.add_option("--out", c.out, "output directory")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "counterexample: " << e.what() << "\n(run with --help for the flags)\n";
    return 2;
  }
  try {
    return run(c);
  } catch (const Error& e) {
    std::cerr << "counterexample: error: " << e.what() << '\n';
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "counterexample: unexpected error: " << e.what() << '\n';
    return 1;
  }
}
