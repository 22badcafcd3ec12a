// mnist: the AdaBound paper's perceptron experiment (Luo et al., ICLR 2019, section 5, figure 2).
//
// A 784 -> hidden -> 10 perceptron with ReLU, trained with cross-entropy, batch 128, by each optimizer
// in turn. Every optimizer starts from the same initial weights (one seed) and sees the same batches in
// the same order (the loader's order is a function of (seed, epoch)). Defaults are those of the paper's
// released code: SGDM lr 0.1 momentum 0.9, AdaGrad 0.01, Adam and AMSGrad 1e-3, AdaBound and AMSBound
// lr 1e-3 final_lr 0.1 gamma 1e-3. The paper trains 100 epochs (--epochs 100); the default is short so
// the whole comparison (6 x 30 epochs) runs in a few minutes on two cores.
//
// Output in --out (default results/mnist/): one JSON-lines file per optimizer (one line per epoch),
// one checkpoint per optimizer rewritten atomically after every epoch, summary.json and summary.md.
// --resume continues each optimizer from its last complete epoch, bit for bit with the same --threads.
// --telemetry N appends to telemetry.jsonl, every N steps of each optimizer, one line per parameter tensor
// with the distribution of the optimizer's effective per-element learning rate (Optimizer::lr_telemetry();
// AdaBound / AMSBound add the rate before clamping, the bounds and the clamped fractions). --resume keeps
// each optimizer's lines up to its checkpoint: the file then holds the same lines as a straight run, in
// another order (the resumed optimizers' later lines come last).
//
// Divergence: after every backward pass the loss and every gradient are checked finite, before the
// optimizer sees them. A NaN or Inf stops that optimizer with a message naming the step, the parameter
// and the optimizer; its checkpoint stays the last good one, the other optimizers still run, and the
// program exits with code 3. --skip-nonfinite skips such steps instead and counts them per epoch
// ("skipped_steps" in the JSON line).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "tapegrad/datasets/idx.hpp"
#include "tapegrad/datasets/loader.hpp"
#include "tapegrad/io.hpp"
#include "tapegrad/models/mlp.hpp"
#include "tapegrad/ops.hpp"
#include "tapegrad/optim.hpp"

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;  // keys in the order written
using namespace tapegrad;
using Clock = std::chrono::steady_clock;

namespace {

const char* kDebianFashionMnist = "/usr/share/datasets/fashion-mnist";

// The paper's six, with the hyperparameters of its released code.
struct RunSpec {
  std::string label;  // "AdaBound"; also names the files (lower case)
  std::string spec;   // what optim::make() takes
};
const std::vector<RunSpec> kDefaultRuns = {
    {"SGDM", "sgd:lr=0.1,momentum=0.9"},
    {"AdaGrad", "adagrad:lr=0.01"},
    {"Adam", "adam:lr=1e-3"},
    {"AMSGrad", "amsgrad:lr=1e-3"},
    {"AdaBound", "adabound:lr=1e-3,final_lr=0.1,gamma=1e-3"},
    {"AMSBound", "amsbound:lr=1e-3,final_lr=0.1,gamma=1e-3"},
};

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\n") - b + 1);
}

// The value of key in "name:k=v,k=v" ("" when absent).
std::string spec_value(const std::string& spec, const std::string& key) {
  const auto colon = spec.find(':');
  if (colon == std::string::npos) return "";
  std::stringstream ss(spec.substr(colon + 1));
  std::string kv;
  while (std::getline(ss, kv, ','))
    if (kv.substr(0, kv.find('=')) == key && kv.find('=') != std::string::npos) return kv.substr(kv.find('=') + 1);
  return "";
}

// "--optim" values: each may hold several specs separated by ';' or spaces. A spec is "name:k=v,...",
// a bare name or label ("adam", "sgdm": the default spec), and may carry its own label ("fast=adam:lr=1e-2").
std::vector<RunSpec> parse_runs(const std::vector<std::string>& values) {
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
  if (specs.empty()) return kDefaultRuns;

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
      for (const RunSpec& d : kDefaultRuns)
        if (lower(d.label) == lower(s) || d.spec.substr(0, d.spec.find(':')) == lower(s)) {
          if (r.label.empty()) r.label = d.label;
          s = d.spec;
          break;
        }
    }
    r.spec = s;
    if (r.label.empty()) {
      const std::string name = lower(s.substr(0, s.find(':')));
      r.label = name;
      for (const RunSpec& d : kDefaultRuns)
        if (d.spec.substr(0, d.spec.find(':')) == name || lower(d.label) == name) r.label = d.label;
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

struct Config {
  std::vector<std::string> optim;
  int64_t epochs = 30;
  int64_t hidden = 256;
  int64_t batch = 128;
  uint64_t seed = 1;
  std::string data;
  std::string dataset = "auto";
  std::string out = "results/mnist";
  int threads = 0;
  bool resume = false;
  std::vector<int64_t> milestones;
  double lr_decay = 0.1;
  int64_t train_limit = 0;
  int64_t test_limit = 0;
  int64_t telemetry = 0;  // every N steps; 0: off
  bool skip_nonfinite = false;
  int64_t debug_nan_at = 0;  // poisons one gradient at this step (1-based, counted over epochs): tests only
};

// Which data runs: MNIST when --data holds it, else Fashion-MNIST from Debian's dataset-fashion-mnist,
// said loudly, since the paper's figure is MNIST.
struct DataChoice {
  std::string dataset;  // "mnist" or "fashion-mnist"
  std::string title;    // "MNIST", "Fashion-MNIST"
  std::string dir;
  std::string note;     // printed loudly and kept in the summary
};

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? sep : "") + v[i];
  return s;
}

DataChoice choose_data(const Config& c) {
  const std::string ds = lower(c.dataset);
  TG_CHECK(ds == "auto" || ds == "mnist" || ds == "fashion-mnist", "--dataset '", c.dataset,
           "': expected mnist, fashion-mnist or auto");
  auto missing_in = [](const std::string& dir) { return datasets::missing_mnist_files(dir); };
  if (ds == "mnist" || (ds == "auto" && !c.data.empty())) {
    if (!c.data.empty() && missing_in(c.data).empty()) return {"mnist", "MNIST", c.data, ""};
    const std::string why = c.data.empty() ? std::string("no --data DIR given")
                                           : "--data " + c.data + " lacks " + join(missing_in(c.data), ", ");
    TG_CHECK(ds == "auto", "--dataset mnist: ", why,
             "; give the directory holding train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
             "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]");
    DataChoice d{"fashion-mnist", "Fashion-MNIST", kDebianFashionMnist, ""};
    d.note = "MNIST not found (" + why + "): running on Fashion-MNIST from " + d.dir +
             " instead. Accuracies are NOT comparable to the paper's MNIST figure.";
    TG_CHECK(missing_in(d.dir).empty(), d.note.substr(0, d.note.find(':')), "; and Fashion-MNIST is not in ", d.dir,
             " either (missing ", join(missing_in(d.dir), ", "), "): run datasets/fetch fashion-mnist");
    return d;
  }
  DataChoice d{"fashion-mnist", "Fashion-MNIST", c.data.empty() ? kDebianFashionMnist : c.data, ""};
  TG_CHECK(missing_in(d.dir).empty(), "--dataset fashion-mnist: ", d.dir, " lacks ", join(missing_in(d.dir), ", "),
           c.data.empty() ? " (install Debian's dataset-fashion-mnist: datasets/fetch fashion-mnist)" : "");
  if (ds == "auto")
    d.note = "no --data DIR with MNIST given: running on Fashion-MNIST from " + d.dir +
             ". Accuracies are NOT comparable to the paper's MNIST figure.";
  else
    d.note = "running on Fashion-MNIST (--dataset fashion-mnist), not the paper's MNIST.";
  return d;
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

// The progress line on stderr: rewritten in place on a terminal, a plain line every few seconds otherwise.
class Progress {
 public:
  Progress(int64_t total_steps, int64_t done_steps)
      : tty_(isatty(STDERR_FILENO)), total_(total_steps), done_at_start_(done_steps), done_(done_steps),
        start_(Clock::now()), last_(start_) {}

  void step(const std::string& head, int64_t step, int64_t steps, double loss, double samples_per_s) {
    ++done_;
    const auto now = Clock::now();
    const double since = std::chrono::duration<double>(now - last_).count();
    if (tty_ ? since < 0.2 && step != steps : since < 5.0) return;
    last_ = now;
    const std::string line = head + " step " + std::to_string(step) + "/" + std::to_string(steps) + "  loss " +
                             fmt("%.4f", loss) + "  " + fmt("%.0f", samples_per_s) + " samples/s  ETA " + eta();
    if (tty_) {
      std::cerr << '\r' << line << "\033[K" << std::flush;
      open_ = true;
    } else {
      std::cerr << line << '\n' << std::flush;
    }
  }
  void skip(int64_t steps) { done_ += steps, done_at_start_ += steps; }
  // A line that stays (epoch results, notes).
  void say(const std::string& line) {
    if (open_) std::cerr << "\r\033[K";
    open_ = false;
    std::cerr << line << '\n' << std::flush;
  }
  std::string eta() const {
    const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
    const int64_t done = done_ - done_at_start_;
    if (done <= 0) return "?";
    return hms(elapsed / done * static_cast<double>(total_ - done_));
  }

 private:
  bool tty_;
  int64_t total_, done_at_start_, done_;
  Clock::time_point start_, last_;
  bool open_ = false;
};

// The name of the first parameter whose gradient holds a NaN or Inf, or "" when all are finite.
std::string first_nonfinite_grad(const models::MLP& model) {
  for (const auto& [name, p] : model.named_parameters()) {
    const Tensor g = p.grad();
    if (!g.defined()) continue;
    bool finite = true;
    if (g.dtype() == DType::F32) {
      const float* x = g.data<float>();
      for (int64_t i = 0; i < g.numel(); ++i) finite &= std::isfinite(x[i]);
    } else {
      const std::vector<double> x = g.to_vector<double>();
      for (double v : x) finite &= std::isfinite(v);
    }
    if (!finite) return name;
  }
  return "";
}

struct Evaluation {
  double loss = 0.0, acc = 0.0;
};

int64_t count_correct(const Tensor& logits, const Tensor& labels) {
  const auto pred = argmax(logits.detach(), 1).to_vector<int64_t>();
  const int64_t* y = labels.data<int64_t>();
  int64_t correct = 0;
  for (size_t i = 0; i < pred.size(); ++i) correct += pred[i] == y[i];
  return correct;
}

Evaluation evaluate(models::MLP& model, const datasets::DataLoader& loader) {
  NoGradGuard no_grad;
  model.eval();
  double loss_sum = 0.0;
  int64_t correct = 0;
  for (int64_t b = 0; b < loader.num_batches(); ++b) {
    const datasets::Batch batch = loader.batch(b);
    const Tensor logits = model(batch.x);
    loss_sum += cross_entropy(logits, batch.y, Reduction::Sum).item();
    correct += count_correct(logits, batch.y);
  }
  model.train();
  const double n = static_cast<double>(loader.num_samples());
  return {loss_sum / n, correct / n};
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

json summary_of(const RunSummary& r, const std::string& out_dir) {
  json s = {{"optimizer", r.run.label}, {"spec", r.run.spec}, {"resolved", r.resolved},
            {"epochs_done", r.epochs.size()}, {"seconds", r.seconds}, {"diverged", r.diverged},
            {"stopped", r.stopped.empty() ? json(nullptr) : json(r.stopped)},
            {"results", (fs::path(out_dir) / (lower(r.run.label) + ".jsonl")).string()}};
  double best = -1.0;
  int64_t best_epoch = 0;
  for (const json& e : r.epochs)
    if (e["test_acc"].is_number() && e["test_acc"].get<double>() > best) {
      best = e["test_acc"].get<double>();
      best_epoch = e["epoch"].get<int64_t>();
    }
  s["best_test_acc"] = best >= 0 ? json(best) : json(nullptr);
  s["best_epoch"] = best_epoch;
  if (!r.epochs.empty()) {
    const json& last = r.epochs.back();
    for (const char* k : {"test_acc", "test_loss", "train_acc", "train_loss"}) s[std::string("final_") + k] = last[k];
  }
  return s;
}

std::string percent(const json& v) { return v.is_number() ? fmt("%.2f", 100.0 * v.get<double>()) : "-"; }

std::string summary_table(const json& summary) {
  std::ostringstream os;
  os << "| optimizer | best test acc % (epoch) | final test acc % | final train loss | time (s) |\n"
     << "|---|---|---|---|---|\n";
  for (const json& r : summary["runs"]) {
    os << "| " << r["optimizer"].get<std::string>() << (r["diverged"].get<bool>() ? " (diverged)" : "") << " | "
       << percent(r["best_test_acc"]) << " (" << r["best_epoch"].get<int64_t>() << ") | "
       << percent(r.value("final_test_acc", json())) << " | "
       << (r.contains("final_train_loss") && r["final_train_loss"].is_number()
               ? fmt("%.4f", r["final_train_loss"].get<double>())
               : "-")
       << " | " << fmt("%.1f", r["seconds"].get<double>()) << " |\n";
  }
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

void write_atomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    TG_CHECK(out.good(), "cannot write ", tmp);
  }
  fs::rename(tmp, path);
}

int run(const Config& c, const std::vector<RunSpec>& runs) {
  TG_CHECK(c.epochs >= 1, "--epochs ", c.epochs, ": must be at least 1");
  TG_CHECK(c.hidden >= 1, "--hidden ", c.hidden, ": must be at least 1");
  TG_CHECK(c.batch >= 1, "--batch ", c.batch, ": must be at least 1");
  TG_CHECK(c.threads >= 0, "--threads ", c.threads, ": must be >= 0 (0: OpenMP's default)");
  TG_CHECK(c.train_limit >= 0 && c.test_limit >= 0, "--train-limit/--test-limit must be >= 0");
  TG_CHECK(c.lr_decay > 0 && c.lr_decay <= 1, "--lr-decay ", c.lr_decay, ": must be in (0, 1]");
  TG_CHECK(c.telemetry >= 0, "--telemetry ", c.telemetry, ": must be >= 0 (0: off)");
  TG_CHECK(c.debug_nan_at >= 0, "--debug-nan-at ", c.debug_nan_at, ": must be >= 0 (0: off)");
  if (c.threads > 0) set_num_threads(c.threads);

  const DataChoice data = choose_data(c);
  // Check every spec before the first epoch, so a typo in the last one does not cost the others' time.
  {
    models::MLP probe(4, 2, 2);
    for (const RunSpec& r : runs) optim::make(r.spec, probe.parameters());
  }

  auto banner = [&](const std::string& s) { std::cerr << s << '\n'; };
  if (!data.note.empty()) {
    const std::string bar(78, '!');
    banner(bar);
    banner("!! " + data.note);
    banner(bar);
  }
  datasets::ImageDataset train = datasets::load_mnist(data.dir, true, data.dataset);
  datasets::ImageDataset test = datasets::load_mnist(data.dir, false, data.dataset);
  if (c.train_limit > 0) train = datasets::head(train, std::min(c.train_limit, train.size()));
  if (c.test_limit > 0) test = datasets::head(test, std::min(c.test_limit, test.size()));
  const datasets::PixelStats stats = datasets::pixel_stats(train);
  const int64_t features = train.rows * train.cols;
  banner("dataset: " + data.title + " from " + data.dir + ": " + std::to_string(train.size()) + " train, " +
         std::to_string(test.size()) + " test images of " + std::to_string(train.rows) + "x" +
         std::to_string(train.cols) + " (normalised with train mean " + fmt("%.4f", stats.mean) + ", std " +
         fmt("%.4f", stats.std) + ")");
  banner("model: perceptron " + std::to_string(features) + " -> " + std::to_string(c.hidden) +
         " -> 10 (ReLU), batch " + std::to_string(c.batch) + ", " + std::to_string(c.epochs) + (c.epochs == 1 ? " epoch" : " epochs") + ", seed " +
         std::to_string(c.seed) + ", " + std::to_string(num_threads()) + " threads");

  datasets::DataLoader train_loader(train, {.batch_size = c.batch, .shuffle = true, .drop_last = false,
                                            .seed = c.seed, .mean = stats.mean, .std = stats.std});
  datasets::DataLoader test_loader(test, {.batch_size = 1000, .shuffle = false, .drop_last = false,
                                          .seed = 0, .mean = stats.mean, .std = stats.std});

  fs::create_directories(c.out);
  const std::string telemetry_path = (fs::path(c.out) / "telemetry.jsonl").string();
  if (c.telemetry > 0 && !c.resume) write_atomically(telemetry_path, "");
  const int64_t steps = train_loader.num_batches();
  Progress progress(static_cast<int64_t>(runs.size()) * c.epochs * steps, 0);
  std::vector<RunSummary> summaries;
  bool any_stopped = false;  // an optimizer stopped on a NaN/Inf: exit code 3

  for (size_t k = 0; k < runs.size(); ++k) {
    const RunSpec& r = runs[k];
    const std::string base = (fs::path(c.out) / lower(r.label)).string();
    const std::string results_path = base + ".jsonl", ckpt_path = base + ".ckpt";

    Generator init_gen(c.seed);  // the same initial weights for every optimizer
    models::MLP model(features, c.hidden, 10, init_gen);
    std::unique_ptr<optim::Optimizer> opt = optim::make(r.spec, model.parameters());
    std::optional<optim::MultiStepLR> scheduler;
    if (!c.milestones.empty()) scheduler.emplace(*opt, c.milestones, c.lr_decay);

    const Metadata identity = {{"spec", r.spec},
                               {"dataset", data.dataset},
                               {"hidden", std::to_string(c.hidden)},
                               {"batch", std::to_string(c.batch)},
                               {"seed", std::to_string(c.seed)},
                               {"train_samples", std::to_string(train.size())}};
    RunSummary summary{r, "", {}, 0.0, false};
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
    const auto named = model.named_parameters();
    if (c.telemetry > 0) {
      if (c.resume && fs::exists(telemetry_path)) {  // drop this optimizer's lines after its checkpoint
        std::ifstream in(telemetry_path);
        std::string line, kept;
        while (std::getline(in, line)) {
          json j = json::parse(line, nullptr, false);
          if (j.is_discarded()) continue;
          if (j.value("optimizer", "") != r.label || j.value("step", int64_t{0}) <= opt->steps()) kept += line + "\n";
        }
        in.close();
        write_atomically(telemetry_path, kept);
      }
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
      train_loader.set_epoch(epoch - 1);
      model.train();
      double loss_sum = 0.0;
      int64_t correct = 0, seen = 0;
      int64_t skipped = 0;
      std::string stopped;  // why this optimizer stops, when a step is not finite
      const std::string head = tag + " epoch " + std::to_string(epoch) + "/" + std::to_string(c.epochs);
      for (int64_t b = 0; b < steps; ++b) {
        const datasets::Batch batch = train_loader.batch(b);
        const Tensor logits = model(batch.x);
        const Tensor loss = cross_entropy(logits, batch.y);
        opt->zero_grad();
        loss.backward();
        const int64_t step = (epoch - 1) * steps + b + 1;
        if (step == c.debug_nan_at) {
          Tensor g = model.named_parameters().front().second.grad();
          g.data<float>()[0] = std::numeric_limits<float>::quiet_NaN();
        }
        const double l = loss.item();
        const std::string bad_grad = first_nonfinite_grad(model);
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
        opt->step();
        if (c.telemetry > 0 && opt->steps() % c.telemetry == 0)
          telemetry << telemetry_lines(r.label, epoch, *opt, named) << std::flush;
        loss_sum += l * static_cast<double>(batch.y.size(0));
        correct += count_correct(logits, batch.y);
        seen += batch.y.size(0);
        const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
        progress.step(head, b + 1, steps, loss_sum / seen, seen / std::max(elapsed, 1e-9));
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
      const Evaluation ev = evaluate(model, test_loader);
      const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
      summary.seconds += seconds;
      // Skipped steps count in neither the loss nor the accuracy; an epoch of skipped steps has neither.
      const double train_loss = loss_sum / std::max<int64_t>(seen, 1);
      const double train_acc = static_cast<double>(correct) / std::max<int64_t>(seen, 1);
      const auto or_null = [&](double v) { return seen ? json(v) : json(nullptr); };
      json line = {{"optimizer", r.label}, {"spec", r.spec}, {"dataset", data.dataset},
                   {"epoch", epoch}, {"epochs", c.epochs}, {"train_loss", or_null(train_loss)},
                   {"train_acc", or_null(train_acc)}, {"test_loss", ev.loss}, {"test_acc", ev.acc},
                   {"seconds", seconds}, {"lr", opt->lr()}, {"samples_per_s", seen / train_seconds},
                   {"steps", opt->steps()}};
      if (c.skip_nonfinite) line["skipped_steps"] = skipped;
      results << line.dump() << '\n' << std::flush;
      summary.epochs.push_back(line);
      progress.say(head + "  train loss " + fmt("%.4f", train_loss) + " acc " + fmt("%.2f%%", 100 * train_acc) +
                   "  test loss " + fmt("%.4f", ev.loss) + " acc " + fmt("%.2f%%", 100 * ev.acc) + "  " +
                   fmt("%.1f s", seconds) + "  lr " + optim::format_number(opt->lr()) + "  " +
                   fmt("%.0f samples/s", seen / train_seconds));
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

  json summary = {{"experiment", "mnist"},
                  {"dataset", data.dataset},
                  {"dataset_title", data.title},
                  {"data_dir", data.dir},
                  {"note", data.note},
                  {"train_samples", train.size()},
                  {"test_samples", test.size()},
                  {"epochs", c.epochs},
                  {"hidden", c.hidden},
                  {"batch", c.batch},
                  {"seed", c.seed},
                  {"threads", num_threads()},
                  {"milestones", c.milestones},
                  {"lr_decay", c.lr_decay},
                  {"runs", json::array()}};
  for (const RunSummary& r : summaries) summary["runs"].push_back(summary_of(r, c.out));
  const std::string table = summary_table(summary);
  const std::string title = "# " + data.title + " perceptron (784-" + std::to_string(c.hidden) + "-10), " +
                            std::to_string(c.epochs) + (c.epochs == 1 ? " epoch" : " epochs") + ", batch " + std::to_string(c.batch) + ", seed " +
                            std::to_string(c.seed) + "\n\n";
  const std::string note = data.note.empty() ? "" : "**Note:** " + data.note + "\n\n";
  write_atomically((fs::path(c.out) / "summary.json").string(), summary.dump(2) + "\n");
  write_atomically((fs::path(c.out) / "summary.md").string(),
                   title + note + "Data: " + data.dir + ". Per-epoch results: `<optimizer>.jsonl` beside this file.\n\n" +
                       table);
  std::cout << '\n' << title << note << table << "\nresults in " << c.out << "/ (summary.json, summary.md, *.jsonl)\n";
  if (!data.note.empty()) std::cerr << "NOTE: " << data.note << '\n';
  if (any_stopped) {
    for (const RunSummary& r : summaries)
      if (!r.stopped.empty()) std::cerr << "mnist: stopped: not finite at " << r.stopped << '\n';
    return 3;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "mnist: the AdaBound paper's perceptron experiment. Trains a 784-hidden-10 ReLU perceptron with each "
      "optimizer from the same initial weights on the same data order, and writes per-epoch JSON lines, "
      "checkpoints and a summary."};
  app.get_formatter()->column_width(34);
  Config c;
  app.add_option("--optim", c.optim,
                 "optimizer spec(s), repeatable or separated by ';' or spaces: NAME:key=value,... "
                 "(\"adam:lr=1e-3\"), a bare name for its default (\"sgdm\", \"adabound\"), or "
                 "LABEL=SPEC. Default: the paper's six, SGDM AdaGrad Adam AMSGrad AdaBound AMSBound");
  app.add_option("--epochs", c.epochs, "epochs per optimizer (the paper: 100)")->capture_default_str();
  app.add_option("--hidden", c.hidden, "hidden units")->capture_default_str();
  app.add_option("--batch", c.batch, "batch size")->capture_default_str();
  app.add_option("--seed", c.seed, "seed of the initial weights and the data order")->capture_default_str();
  app.add_option("--data", c.data, "directory with the four MNIST IDX files (raw or .gz)");
  app.add_option("--dataset", c.dataset,
                 "mnist, fashion-mnist or auto (MNIST when --data has it, else Debian's Fashion-MNIST)")
      ->capture_default_str();
  app.add_option("--out", c.out, "output directory")->capture_default_str();
  app.add_option("--threads", c.threads, "CPU threads (0: OpenMP's default); results depend on it")
      ->capture_default_str();
  app.add_flag("--resume", c.resume, "continue each optimizer from its last complete epoch in --out");
  app.add_option("--milestones", c.milestones, "epochs after which the lr is multiplied by --lr-decay (none by default)");
  app.add_option("--lr-decay", c.lr_decay, "the factor at each milestone")->capture_default_str();
  app.add_option("--train-limit", c.train_limit, "use only the first N training images (0: all)");
  app.add_option("--test-limit", c.test_limit, "use only the first N test images (0: all)");
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

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "mnist: " << e.what() << "\n(run with --help for the flags)\n";
    return 2;
  }
  try {
    return run(c, parse_runs(c.optim));
  } catch (const Error& e) {
    std::cerr << "\nmnist: error: " << e.what() << '\n';
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "\nmnist: unexpected error: " << e.what() << '\n';
    return 1;
  }
}
