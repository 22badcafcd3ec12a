// The training driver of the replication programs: see experiment.hpp.
#include "experiment.hpp"

#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>
#include <sstream>

#include "tapegrad/datasets/idx.hpp"
#include "tapegrad/ops.hpp"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace tapegrad::tools {

// ---------------------------------------------------------------------------------------------- strings

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\n") - b + 1);
}

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? sep : "") + v[i];
  return s;
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string hms(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const long s = std::lround(seconds);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
  return buf;
}

void write_atomically(const std::string& path, const std::string& text) {
  remove_stale_temporaries(path);
  const std::string tmp = path + ".tmp." + std::to_string(getpid());
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    out.flush();
    TG_CHECK(out.good(), "cannot write ", tmp);
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  TG_CHECK(!ec, "cannot rename ", tmp, " to ", path, ": ", ec.message());
}

void banner(const std::string& note) {
  const std::string bar(78, '!');
  std::cerr << bar << "\n!! " << note << '\n' << bar << '\n';
}

DataChoice choose_image_data(const std::string& dataset, const std::string& data, const PaperDataset& paper) {
  const std::string debian = "/usr/share/datasets/fashion-mnist";
  const std::string ds = lower(dataset);
  TG_CHECK(ds == "auto" || ds == paper.name || ds == "fashion-mnist", "--dataset '", dataset, "': expected ",
           paper.name, ", fashion-mnist or auto");
  const std::string not_comparable =
      ". Accuracies are NOT comparable to the paper's " + paper.title + " " + paper.results + ".";
  if (ds == paper.name || (ds == "auto" && !data.empty())) {
    const std::string found = data.empty() ? "" : paper.find(data);
    if (!found.empty()) return {paper.name, paper.title, found, ""};
    const std::string why = data.empty() ? std::string("no --data DIR given")
                                         : "--data " + data + " lacks " + join(paper.missing(data), ", ");
    TG_CHECK(ds == "auto", "--dataset ", paper.name, ": ", why, "; ", paper.expected);
    const std::vector<std::string> lacking = datasets::missing_mnist_files(debian);
    TG_CHECK(lacking.empty(), paper.title, " not found (", why, "); and Fashion-MNIST is not in ", debian,
             " either (missing ", join(lacking, ", "), "): run datasets/fetch fashion-mnist");
    return {"fashion-mnist", paper.stand_in_title, debian,
            paper.title + " not found (" + why + "): running on Fashion-MNIST from " + debian + " instead" +
                paper.stand_in + not_comparable};
  }
  const std::string dir = data.empty() ? debian : data;
  const std::vector<std::string> lacking = datasets::missing_mnist_files(dir);
  TG_CHECK(lacking.empty(), "--dataset fashion-mnist: ", dir, " lacks ", join(lacking, ", "),
           data.empty() ? " (install Debian's dataset-fashion-mnist: datasets/fetch fashion-mnist)" : "");
  return {"fashion-mnist", paper.stand_in_title, dir,
          (ds == "auto" ? "no --data DIR with " + paper.title + " given: running on Fashion-MNIST from " + dir
                        : "running on Fashion-MNIST (--dataset fashion-mnist) from " + dir) +
              paper.stand_in + not_comparable};
}

// ------------------------------------------------------------------------------------------- run specs

namespace {

// The value of key in "name:k=v,k=v" ("" when absent).
std::string spec_value(const std::string& spec, const std::string& key) {
  const auto colon = spec.find(':');
  if (colon == std::string::npos) return "";
  std::stringstream ss(spec.substr(colon + 1));
  std::string kv;
  while (std::getline(ss, kv, ','))
    if (kv.find('=') != std::string::npos && kv.substr(0, kv.find('=')) == key) return kv.substr(kv.find('=') + 1);
  return "";
}

std::string spec_name(const std::string& spec) { return lower(spec.substr(0, spec.find(':'))); }

}  // namespace

std::vector<RunSpec> paper_runs(const std::string& extra) {
  return {{"SGDM", "sgd:lr=0.1,momentum=0.9" + extra},
          {"AdaGrad", "adagrad:lr=0.01" + extra},
          {"Adam", "adam:lr=1e-3" + extra},
          {"AMSGrad", "amsgrad:lr=1e-3" + extra},
          {"AdaBound", "adabound:lr=1e-3,final_lr=0.1,gamma=1e-3" + extra},
          {"AMSBound", "amsbound:lr=1e-3,final_lr=0.1,gamma=1e-3" + extra}};
}

std::vector<RunSpec> parse_runs(const std::vector<std::string>& values, const std::vector<RunSpec>& defaults) {
  std::vector<std::string> specs;
  for (const std::string& v : values) {
    std::string item;
    for (char c : v + ";") {
      if (c == ';' || c == ' ' || c == '\t' || c == '\n') {
        if (!trim(item).empty()) specs.push_back(trim(item));
        item.clear();
      } else {
        item += c;
      }
    }
  }
  if (specs.empty()) return defaults;

  std::vector<RunSpec> runs;
  std::map<std::string, int> seen;
  for (std::string s : specs) {
    RunSpec r;
    const auto eq = s.find('='), colon = s.find(':'), comma = s.find(',');
    if (eq != std::string::npos && eq < colon && eq < comma) {  // "label=spec"
      r.label = s.substr(0, eq);
      s = s.substr(eq + 1);
    }
    if (s.find(':') == std::string::npos) {  // a bare name: the default spec of that optimizer
      for (const RunSpec& d : defaults)
        if (lower(d.label) == lower(s) || spec_name(d.spec) == lower(s)) {
          if (r.label.empty()) r.label = d.label;
          s = d.spec;
          break;
        }
    }
    r.spec = s;
    if (r.label.empty()) {
      const std::string name = spec_name(s);
      r.label = name;
      for (const RunSpec& d : defaults)
        if (spec_name(d.spec) == name || lower(d.label) == name) r.label = d.label;
      if (name == "sgd" && std::atof(spec_value(s, "momentum").c_str()) == 0.0) r.label = "SGD";
    }
    for (char c : r.label)
      TG_CHECK(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.',
               "--optim: label '", r.label, "' may hold only letters, digits, '-', '_' and '.'");
    const int n = ++seen[lower(r.label)];
    if (n > 1) r.label += "-" + std::to_string(n);
    runs.push_back(r);
  }
  return runs;
}

// ---------------------------------------------------------------------------------------------- progress

Progress::Progress(int64_t total_steps, std::string unit)
    : tty_(isatty(STDERR_FILENO)), total_(total_steps), unit_(std::move(unit)), start_(Clock::now()),
      last_(start_) {}

void Progress::step(const std::string& head, int64_t step, int64_t steps, double loss, double per_second) {
  ++done_;
  const auto now = Clock::now();
  const double since = std::chrono::duration<double>(now - last_).count();
  if (tty_ ? since < 0.2 && step != steps : since < 5.0) return;
  last_ = now;
  const std::string line = head + " step " + std::to_string(step) + "/" + std::to_string(steps) + "  loss " +
                           fmt("%.4f", loss) + "  " + fmt("%.0f ", per_second) + unit_ + "/s  ETA " + eta();
  if (tty_) {
    std::cerr << '\r' << line << "\033[K" << std::flush;
    open_ = true;
  } else {
    std::cerr << line << '\n' << std::flush;
  }
}

void Progress::skip(int64_t steps) { done_ += steps, done_at_start_ += steps; }

void Progress::say(const std::string& line) {
  if (open_) std::cerr << "\r\033[K";
  open_ = false;
  std::cerr << line << '\n' << std::flush;
}

std::string Progress::eta() const {
  const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
  const int64_t done = done_ - done_at_start_;
  if (done <= 0) return "?";
  return hms(elapsed / done * static_cast<double>(total_ - done_));
}

// ------------------------------------------------------------------------------------------- the driver

void add_common_flags(CLI::App& app, CommonConfig& c) {
  app.add_option("--optim", c.optim,
                 "optimizer spec(s), repeatable or separated by ';' or spaces: NAME:key=value,... "
                 "(\"adam:lr=1e-3\"), a bare name for its default (\"sgdm\", \"adabound\"), or "
                 "LABEL=SPEC. Default: the paper's six, SGDM AdaGrad Adam AMSGrad AdaBound AMSBound");
  app.add_option("--epochs", c.epochs, "epochs per optimizer")->capture_default_str();
  app.add_option("--seed", c.seed, "seed of the initial weights and the data order")->capture_default_str();
  app.add_option("--out", c.out, "output directory")->capture_default_str();
  app.add_option("--threads", c.threads, "CPU threads (0: OpenMP's default); results depend on it")
      ->capture_default_str();
  app.add_flag("--resume", c.resume, "continue each optimizer from its last complete epoch in --out");
  app.add_option("--milestones", c.milestones, "epochs after which the lr is multiplied by --lr-decay");
  app.add_option("--lr-decay", c.lr_decay, "the factor at each milestone")->capture_default_str();
  app.add_option("--telemetry", c.telemetry,
                 "every N steps, write each parameter's effective learning-rate distribution to telemetry.jsonl "
                 "(0: off)")
      ->capture_default_str();
  app.add_flag("--skip-nonfinite", c.skip_nonfinite,
               "skip a step whose loss or gradient is NaN/Inf (counted per epoch) instead of stopping that "
               "optimizer (exit code 3)");
  app.add_option("--debug-nan-at", c.debug_nan_at,
                 "testing the guard: put a NaN into the first parameter's gradient at step N (counted from 1 over "
                 "all epochs)");
}

void check_common_flags(const CommonConfig& c) {
  TG_CHECK(c.epochs >= 1, "--epochs ", c.epochs, ": must be at least 1");
  TG_CHECK(c.threads >= 0, "--threads ", c.threads, ": must be >= 0 (0: OpenMP's default)");
  TG_CHECK(c.lr_decay > 0 && c.lr_decay <= 1, "--lr-decay ", c.lr_decay, ": must be in (0, 1]");
  TG_CHECK(c.telemetry >= 0, "--telemetry ", c.telemetry, ": must be >= 0 (0: off)");
  TG_CHECK(c.debug_nan_at >= 0, "--debug-nan-at ", c.debug_nan_at, ": must be >= 0 (0: off)");
  for (int64_t m : c.milestones) TG_CHECK(m >= 1, "--milestones ", m, ": epochs count from 1");
  TG_CHECK(!c.out.empty(), "--out: an output directory is needed");
  if (c.threads > 0) set_num_threads(c.threads);
}

int64_t count_correct(const Tensor& logits, const Tensor& labels) {
  const auto pred = argmax(logits.detach(), 1).to_vector<int64_t>();
  const int64_t* y = labels.data<int64_t>();
  int64_t correct = 0;
  for (size_t i = 0; i < pred.size(); ++i) correct += pred[i] == y[i];
  return correct;
}

namespace {

// The name of the first parameter whose gradient holds a NaN or Inf, or "" when all are finite.
std::string first_nonfinite_grad(const std::vector<std::pair<std::string, Tensor>>& named) {
  for (const auto& [name, p] : named) {
    const Tensor g = p.grad();
    if (!g.defined()) continue;
    // An element is NaN or Inf when its exponent bits are all ones: an integer test the compiler vectorises
    // (this runs every step over every gradient, 4.3M elements for the small language model).
    bool finite = true;
    const int64_t n = g.numel();
    if (g.dtype() == DType::F32) {
      const float* x = g.data<float>();
      uint32_t any = 0;
      for (int64_t i = 0; i < n; ++i) any |= (~std::bit_cast<uint32_t>(x[i]) & 0x7f800000u) == 0;
      finite = any == 0;
    } else {
      for (double v : g.to_vector<double>()) finite &= std::isfinite(v);
    }
    if (!finite) return name;
  }
  return "";
}

// JSON-lines results of one optimizer: the lines of epochs <= keep_epochs are kept, the rest dropped
// (a crash between the results line and the checkpoint leaves one line too many).
std::vector<json> read_results(const std::string& path, int64_t keep_epochs) {
  std::vector<json> lines;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (trim(line).empty()) continue;
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.contains("epoch")) continue;  // a line cut short by a crash
    if (j["epoch"].get<int64_t>() <= keep_epochs) lines.push_back(j);
  }
  return lines;
}

struct RunSummary {
  RunSpec run;
  std::string resolved;  // Optimizer::describe()
  std::vector<json> epochs;
  double seconds = 0.0;
  bool diverged = false;
  std::string stopped;  // the step, parameter and optimizer that stopped it, when one did
};

json summary_of(const RunSummary& r, const Experiment& ex, const std::string& out_dir) {
  json s = {{"optimizer", r.run.label}, {"spec", r.run.spec}, {"resolved", r.resolved},
            {"epochs_done", r.epochs.size()}, {"seconds", r.seconds}, {"diverged", r.diverged},
            {"stopped", r.stopped.empty() ? json(nullptr) : json(r.stopped)},
            {"results", (fs::path(out_dir) / (lower(r.run.label) + ".jsonl")).string()}};
  std::optional<double> best;
  int64_t best_epoch = 0;
  for (const json& e : r.epochs) {
    if (!e.contains(ex.best_key) || !e[ex.best_key].is_number()) continue;
    const double v = e[ex.best_key].get<double>();
    if (!best || (ex.higher_is_better ? v > *best : v < *best)) best = v, best_epoch = e["epoch"].get<int64_t>();
  }
  s["best_" + ex.best_key] = best ? json(*best) : json(nullptr);
  s["best_epoch"] = best_epoch;
  if (!r.epochs.empty())
    for (const auto& [k, v] : r.epochs.back().items())
      if (k.rfind("train_", 0) == 0 || k.rfind("test_", 0) == 0 || k.rfind("valid_", 0) == 0) s["final_" + k] = v;
  const auto paper = ex.paper.find(r.run.label);
  if (paper != ex.paper.end()) s["paper_" + ex.best_key] = paper->second;
  return s;
}

std::string summary_table(const json& summary, const Experiment& ex) {
  const auto metric = [&](const json& v) {
    if (!v.is_number()) return std::string("-");
    return ex.percent ? fmt("%.2f", 100.0 * v.get<double>()) : fmt("%.2f", v.get<double>());
  };
  const std::string name = ex.best_key + (ex.percent ? " %" : "");
  const bool paper = !ex.paper.empty();
  std::ostringstream os;
  os << "| optimizer | best " << name << " (epoch) | final " << name << " | final train loss | time (s) |"
     << (paper ? " paper: best " + name + " |" : "") << "\n|---|---|---|---|---|" << (paper ? "---|" : "") << "\n";
  for (const json& r : summary["runs"]) {
    const json& final_loss = r.contains("final_train_loss") ? r["final_train_loss"] : json();
    os << "| " << r["optimizer"].get<std::string>() << (r["diverged"].get<bool>() ? " (diverged)" : "") << " | "
       << metric(r["best_" + ex.best_key]) << " (" << r["best_epoch"].get<int64_t>() << ") | "
       << metric(r.value("final_" + ex.best_key, json())) << " | "
       << (final_loss.is_number() ? fmt("%.4f", final_loss.get<double>()) : "-") << " | "
       << fmt("%.1f", r["seconds"].get<double>()) << " |";
    if (paper) {
      const auto it = ex.paper.find(r["optimizer"].get<std::string>());
      os << " " << (it == ex.paper.end() ? std::string("-") : metric(json(it->second))) << " |";
    }
    os << "\n";
  }
  if (paper && !ex.paper_caption.empty()) os << "\nPaper column: " << ex.paper_caption << ".\n";
  return os.str();
}

json quantiles_json(const optim::LrQuantiles& q) {
  return {{"min", q.min}, {"p5", q.p5}, {"p25", q.p25}, {"median", q.median}, {"p75", q.p75}, {"p95", q.p95},
          {"max", q.max}};
}

// The telemetry lines of one optimizer step: one per parameter tensor that has state.
std::string telemetry_lines(const std::string& label, int64_t epoch, const optim::Optimizer& opt,
                            const std::vector<std::pair<std::string, Tensor>>& named) {
  std::string text;
  for (const optim::LrStats& s : opt.lr_telemetry()) {
    json j = {{"optimizer", label}, {"epoch", epoch}, {"step", s.step}, {"param", named.at(s.param).first},
              {"numel", named.at(s.param).second.numel()}, {"lr", quantiles_json(s.lr)}};
    if (s.bounded) {
      j["lr_unclamped"] = quantiles_json(s.lr_unclamped);
      j["lower_bound"] = s.lower_bound;
      j["upper_bound"] = s.upper_bound;
      j["frac_at_lower"] = s.frac_at_lower;
      j["frac_at_upper"] = s.frac_at_upper;
    }
    text += j.dump() + "\n";
  }
  return text;
}

// Drops the telemetry lines of `label` after step `keep_steps` (what a resumed optimizer will write again).
void trim_telemetry(const std::string& path, const std::string& label, int64_t keep_steps) {
  std::ifstream in(path);
  std::string line, kept;
  while (std::getline(in, line)) {
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded()) continue;
    if (j.value("optimizer", "") != label || j.value("step", int64_t{0}) <= keep_steps) kept += line + "\n";
  }
  in.close();
  write_atomically(path, kept);
}

}  // namespace

int run_experiment(const CommonConfig& c, const std::vector<RunSpec>& runs, Experiment& ex) {
  TG_CHECK(ex.steps_per_epoch >= 1, ex.name, ": an epoch has no step (", ex.steps_per_epoch,
           "): the training set is smaller than one batch?");
  TG_CHECK(!runs.empty(), "--optim: no optimizer to run");
  {
    std::error_code ec;
    fs::create_directories(c.out, ec);
    TG_CHECK(!ec && fs::is_directory(c.out), "--out ", c.out, ": cannot create the directory (",
             ec ? ec.message() : std::string("a file is in the way"), ")");
  }
  const std::string telemetry_path = (fs::path(c.out) / "telemetry.jsonl").string();
  if (c.telemetry > 0 && !c.resume) write_atomically(telemetry_path, "");
  const int64_t steps = ex.steps_per_epoch;
  Progress progress(static_cast<int64_t>(runs.size()) * c.epochs * steps, ex.unit);
  progress.say(ex.name + ": " + std::to_string(num_threads()) + " threads, CPU kernels " + cpu_isa());
  std::vector<RunSummary> summaries;
  bool any_stopped = false;  // an optimizer stopped on a NaN/Inf: exit code 3

  for (size_t k = 0; k < runs.size(); ++k) {
    const RunSpec& r = runs[k];
    const std::string base = (fs::path(c.out) / lower(r.label)).string();
    const std::string results_path = base + ".jsonl", ckpt_path = base + ".ckpt";

    Generator init_gen(c.seed);  // the same initial weights for every optimizer
    nn::Module& model = ex.make_model(init_gen);
    model.train();
    const auto named = model.named_parameters();
    std::unique_ptr<optim::Optimizer> opt = optim::make(r.spec, model.parameters());
    std::optional<optim::MultiStepLR> scheduler;
    if (!c.milestones.empty()) scheduler.emplace(*opt, c.milestones, c.lr_decay);

    Metadata identity = ex.identity;
    identity["spec"] = r.spec;
    identity["seed"] = std::to_string(c.seed);
    identity["dataset"] = ex.dataset;
    RunSummary summary{r, "", {}, 0.0, false, ""};
    int64_t start_epoch = 0;
    if (c.resume && fs::exists(ckpt_path)) {
      Metadata saved;
      load_safetensors(ckpt_path, &saved);
      for (const auto& [key, value] : identity) {
        const auto it = saved.find(key);
        TG_CHECK(it != saved.end() && it->second == value, "--resume: checkpoint ", ckpt_path, " was made with ",
                 key, " = '", (it == saved.end() ? std::string("?") : it->second), "', this run has '", value,
                 "': use the same flags, or another --out, or drop --resume to start afresh");
      }
      start_epoch = std::stoll(saved.at("epoch"));
      load_checkpoint(ckpt_path, model, opt.get());  // restores the lr too
      if (scheduler) scheduler->set_last_epoch(start_epoch);
      summary.seconds = std::stod(saved.at("seconds"));
      summary.diverged = saved.count("diverged") && saved.at("diverged") == "true";
      summary.epochs = read_results(results_path, start_epoch);
      TG_CHECK(static_cast<int64_t>(summary.epochs.size()) == start_epoch, "--resume: ", results_path, " holds ",
               summary.epochs.size(), " epochs, its checkpoint ", ckpt_path, " ", start_epoch,
               ": remove both to start this optimizer afresh");
    }
    summary.resolved = opt->describe();
    {  // rewrite the results file with the kept lines only (all of them are epochs <= start_epoch)
      std::string text;
      for (const json& j : summary.epochs) text += j.dump() + "\n";
      write_atomically(results_path, text);
    }
    std::ofstream results(results_path, std::ios::app);
    TG_CHECK(results.good(), "cannot write ", results_path);
    std::ofstream telemetry;
    if (c.telemetry > 0) {
      if (c.resume && fs::exists(telemetry_path)) trim_telemetry(telemetry_path, r.label, opt->steps());
      telemetry.open(telemetry_path, std::ios::app);
      TG_CHECK(telemetry.good(), "cannot write ", telemetry_path);
    }

    const std::string tag = "[" + r.label + " " + std::to_string(k + 1) + "/" + std::to_string(runs.size()) + "]";
    if (start_epoch > 0)
      progress.say(tag + " resumed from " + ckpt_path + " after epoch " + std::to_string(start_epoch));
    progress.say(tag + " " + summary.resolved);
    const int64_t last_epoch = summary.diverged ? start_epoch : c.epochs;
    progress.skip((c.epochs - std::max<int64_t>(0, last_epoch - start_epoch)) * steps);

    for (int64_t epoch = start_epoch + 1; epoch <= last_epoch; ++epoch) {
      const auto t0 = Clock::now();
      ex.begin_epoch(epoch - 1);
      model.train();
      double loss_sum = 0.0;
      int64_t correct = 0, seen = 0, skipped = 0;
      bool counts_correct = false;
      std::string stopped;  // why this optimizer stops, when a step is not finite
      const std::string head = tag + " epoch " + std::to_string(epoch) + "/" + std::to_string(c.epochs);
      for (int64_t b = 0; b < steps; ++b) {
        const StepResult out = ex.step(epoch - 1, b);
        opt->zero_grad();
        out.loss.backward();
        const int64_t step = (epoch - 1) * steps + b + 1;
        if (step == c.debug_nan_at) {
          Tensor g = named.front().second.grad();
          if (g.dtype() == DType::F32) g.data<float>()[0] = std::numeric_limits<float>::quiet_NaN();
          else g.data<double>()[0] = std::numeric_limits<double>::quiet_NaN();
        }
        const double l = out.loss.item();
        const std::string bad_grad = first_nonfinite_grad(named);
        if (!std::isfinite(l) || !bad_grad.empty()) {
          const std::string what =
              "step " + std::to_string(step) + " (epoch " + std::to_string(epoch) + ", batch " +
              std::to_string(b + 1) + "/" + std::to_string(steps) + ") of optimizer " + r.label + " (" + r.spec +
              "): loss " + optim::format_number(l) +
              (bad_grad.empty() ? std::string(", all gradients finite")
                                : ", the gradient of parameter '" + bad_grad + "' holds NaN or Inf");
          if (c.skip_nonfinite) {
            ++skipped;
            progress.say(tag + " skipped " + what);
            continue;
          }
          stopped = what;
          break;
        }
        if (ex.before_update) ex.before_update();
        opt->step();
        if (c.telemetry > 0 && opt->steps() % c.telemetry == 0)
          telemetry << telemetry_lines(r.label, epoch, *opt, named) << std::flush;
        loss_sum += l * static_cast<double>(out.count);
        if (out.correct >= 0) correct += out.correct, counts_correct = true;
        seen += out.count;
        const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
        progress.step(head, b + 1, steps, loss_sum / std::max<int64_t>(seen, 1), seen / std::max(elapsed, 1e-9));
      }
      if (!stopped.empty()) {
        progress.say(tag + " not finite at " + stopped + ": stopping this optimizer; its checkpoint " +
                     (fs::exists(ckpt_path) ? ckpt_path + " (the last complete epoch) is left as it was"
                                            : std::string("was never written (no epoch completed)")) +
                     " (--skip-nonfinite skips such steps instead)");
        summary.diverged = true;
        summary.stopped = stopped;
        any_stopped = true;
        progress.skip((c.epochs - epoch + 1) * steps);
        break;
      }
      const double train_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
      json eval;
      {
        NoGradGuard no_grad;
        model.eval();
        eval = ex.evaluate();
        model.train();
      }
      const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
      summary.seconds += seconds;
      // Skipped steps count in neither the loss nor the accuracy; an epoch of skipped steps has neither.
      const auto or_null = [&](double v) { return seen ? json(v) : json(nullptr); };
      const double train_loss = loss_sum / std::max<int64_t>(seen, 1);
      json line = {{"optimizer", r.label}, {"spec", r.spec}, {"dataset", ex.dataset},
                   {"epoch", epoch}, {"epochs", c.epochs}, {"train_loss", or_null(train_loss)}};
      if (counts_correct) line["train_acc"] = or_null(static_cast<double>(correct) / std::max<int64_t>(seen, 1));
      if (ex.decorate && seen) ex.decorate(line);
      std::string shown;
      for (const auto& [key, value] : eval.items()) {
        line[key] = value;
        if (value.is_number())
          shown += "  " + key + " " +
                   (key.find("acc") != std::string::npos ? fmt("%.2f%%", 100 * value.get<double>())
                                                         : fmt("%.4f", value.get<double>()));
      }
      line["seconds"] = seconds;
      line["lr"] = opt->lr();
      line[ex.unit + "_per_s"] = static_cast<double>(seen) / train_seconds;
      line["steps"] = opt->steps();
      if (c.skip_nonfinite) line["skipped_steps"] = skipped;
      results << line.dump() << '\n' << std::flush;
      summary.epochs.push_back(line);
      progress.say(head + "  train loss " + fmt("%.4f", train_loss) +
                   (counts_correct ? " acc " + fmt("%.2f%%", 100.0 * correct / std::max<int64_t>(seen, 1)) : "") +
                   shown + "  " + fmt("%.1f s", seconds) + "  lr " + fmt("%.6g", opt->lr()) + "  " +
                   fmt("%.0f ", seen / train_seconds) + ex.unit + "/s");
      if (scheduler) scheduler->step();

      if (skipped > 0) progress.say(head + "  skipped " + std::to_string(skipped) + " of " + std::to_string(steps) +
                                    " steps (loss or gradient not finite)");
      Metadata meta = identity;
      meta["epoch"] = std::to_string(epoch);
      meta["seconds"] = optim::format_number(summary.seconds);
      meta["diverged"] = "false";
      meta["optimizer"] = r.label;
      save_checkpoint(ckpt_path, model, opt.get(), meta);
    }
    summaries.push_back(std::move(summary));
  }

  json summary = {{"experiment", ex.name}, {"title", ex.title}, {"dataset", ex.dataset}, {"note", ex.note}};
  for (const auto& [k, v] : ex.summary_fields.items()) summary[k] = v;
  summary["epochs"] = c.epochs;
  summary["seed"] = c.seed;
  summary["threads"] = num_threads();
  summary["cpu_isa"] = cpu_isa();
  summary["milestones"] = c.milestones;
  summary["lr_decay"] = c.lr_decay;
  summary["best_key"] = ex.best_key;
  summary["runs"] = json::array();
  for (const RunSummary& r : summaries) summary["runs"].push_back(summary_of(r, ex, c.out));
  const std::string table = summary_table(summary, ex);
  const std::string title = "# " + ex.title + "\n\n";
  const std::string note = ex.note.empty() ? "" : "**Note:** " + ex.note + "\n\n";
  write_atomically((fs::path(c.out) / "summary.json").string(), summary.dump(2) + "\n");
  write_atomically((fs::path(c.out) / "summary.md").string(),
                   title + note + "Per-epoch results: `<optimizer>.jsonl` beside this file.\n\n" + table);
  std::cout << '\n' << title << note << table << "\nresults in " << c.out << "/ (summary.json, summary.md, *.jsonl)\n";
  if (!ex.note.empty()) std::cerr << "NOTE: " << ex.note << '\n';
  if (any_stopped) {
    for (const RunSummary& r : summaries)
      if (!r.stopped.empty()) std::cerr << ex.name << ": stopped: not finite at " << r.stopped << '\n';
    return 3;
  }
  return 0;
}

int main_of(const char* name, CLI::App& app, int argc, char** argv, const std::function<int()>& run) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << name << ": " << e.what() << "\n(run with --help for the flags)\n";
    return 2;
  }
  try {
    return run();
  } catch (const Error& e) {
    std::cerr << "\n" << name << ": error: " << e.what() << '\n';
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "\n" << name << ": unexpected error: " << e.what() << '\n';
    return 1;
  }
}

}  // namespace tapegrad::tools
