// The training driver of the replication programs: see experiment.hpp.
#include "experiment.hpp"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>

#include "results.hpp"
#include "tapegrad/datasets/idx.hpp"
#include "tapegrad/dist.hpp"
#include "tapegrad/nn/layers.hpp"
#include "tapegrad/ops.hpp"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace tapegrad::tools {

// ------------------------------------------------------------------------------------------------ data

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

// ---------------------------------------------------------------------------------------------- device

void add_device_flags(CLI::App& app, DeviceConfig& c) {
  app.add_option("--device", c.device,
                 "cpu, cuda, test (the CPU kernels under the test device's tag: tests), or auto: cuda when a GPU is "
                 "there and the data is the paper's, else cpu")
      ->capture_default_str();
  app.add_flag("--deterministic", c.deterministic,
               "CUDA: only deterministic cuDNN algorithms (bit-identical runs, exact --resume); the CPU always is");
  app.add_flag("--tf32", c.tf32, "CUDA: TF32 tensor cores for f32 matrix products (about 1e-3 relative)");
}

Device choose_device(const DeviceConfig& c, bool paper_data) {
  const std::string name = lower(c.device);
  TG_CHECK(name == "auto" || name == "cpu" || name == "cuda" || name == "test", "--device '", c.device,
           "': expected cpu, cuda, test or auto");
  Device dev = Device::CPU;
  std::string why;
  if (name == "auto") {
    const bool gpu = cuda_available();
    dev = gpu && paper_data ? Device::CUDA : Device::CPU;
    why = !gpu ? "auto: no CUDA device" : paper_data ? "auto: a CUDA device and the paper's data"
                                                     : "auto: the stand-in data set stays on the CPU (--device cuda "
                                                       "to run it on the GPU)";
  } else {
    dev = device_from_name(name);
    why = "--device " + name;
    TG_CHECK(dev != Device::CUDA || cuda_available(), "--device cuda: no CUDA device (no GPU here, or a build without "
             "-Dcuda=enabled); use --device cpu");
  }
  set_deterministic(c.deterministic);
  set_allow_tf32(c.tf32);
  std::cerr << "device: " << tapegrad::name(dev) << " (" << why << "), "
            << (dev != Device::CUDA ? std::string("deterministic (the CPU kernels always are)")
                                    : std::string(c.deterministic ? "deterministic" : "fastest algorithms") +
                                          (c.tf32 ? ", TF32 matrix products" : ", FP32 matrix products"))
            << '\n';
  return dev;
}

// ------------------------------------------------------------------------------------------- run specs

namespace {

// The optimizer name of a spec ("adam" of "adam:lr=1e-3"); optim::make owns the rest of the grammar.
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
      if (name == "sgd") {  // without momentum "SGD" (the language models' baseline), with it "SGDM"
        nn::Linear probe(2, 2);
        const auto opt = optim::make(s, probe.parameters());
        const auto* sgd = dynamic_cast<const optim::SGD*>(opt.get());
        if (sgd && sgd->options().momentum == 0.0) r.label = "SGD";
      }
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
  app.add_option("--val-fraction", c.val_fraction,
                 "hold out this share of the training data, drawn from --seed, and evaluate on it every epoch "
                 "(val_loss, val_acc; for tools/tune) (0: none)")
      ->capture_default_str();
  app.add_flag("--check-optim", c.check_optim,
               "check the --optim specs, print each as a JSON line with the spec optim::make resolves it to, and "
               "exit (nothing is read or trained)");
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
  TG_CHECK(c.val_fraction >= 0 && c.val_fraction < 1, "--val-fraction ", c.val_fraction,
           ": must be in [0, 1) (0: no validation split)");
  for (int64_t m : c.milestones) TG_CHECK(m >= 1, "--milestones ", m, ": epochs count from 1");
  TG_CHECK(!c.out.empty(), "--out: an output directory is needed");
  if (c.threads > 0) set_num_threads(c.threads);
  if (c.threads == 0 && dist::world_size() > 1) {  // dist: the cores this rank may use, shared with the others here
    cpu_set_t cpus;
    const int mine = sched_getaffinity(0, sizeof cpus, &cpus) == 0 ? CPU_COUNT(&cpus) : 1;
    const int per_rank = static_cast<int>(std::max<long>(1, sysconf(_SC_NPROCESSORS_ONLN) / dist::local_size()));
    set_num_threads(std::max(1, std::min(mine, per_rank)));
  }
}

void check_batches_cover_ranks(const std::string& flag, int64_t n, int64_t batch) {
  const int64_t last = n % batch == 0 ? batch : n % batch, smallest = std::min(batch, last);
  TG_CHECK(n == 0 || smallest >= dist::world_size(), flag, " ", batch, ": with ", dist::world_size(),
           " ranks every batch needs at least one sample per rank, but ", n, " items in batches of ", batch,
           " leave a batch of ", smallest);
}

bool check_runs(const CommonConfig& c, const std::vector<RunSpec>& runs) {
  nn::Linear probe(2, 2);
  std::string lines;
  for (const RunSpec& r : runs) {
    const std::string resolved = optim::make(r.spec, probe.parameters())->describe();
    lines += json{{"label", r.label}, {"spec", r.spec}, {"resolved", resolved}}.dump() + "\n";
  }
  if (c.check_optim) std::cout << lines << std::flush;
  return c.check_optim;
}

int64_t count_correct(const Tensor& logits, const Tensor& labels) {
  const auto pred = argmax(logits.detach(), 1).to_vector<int64_t>();
  const Tensor host = labels.cpu();  // the labels may be on the device with the batch
  const int64_t* y = host.data<int64_t>();
  int64_t correct = 0;
  for (size_t i = 0; i < pred.size(); ++i) correct += pred[i] == y[i];
  return correct;
}

StepResult classify_batch(const Forward& model, const datasets::Batch& batch) {
  const Tensor logits = model(batch.x);  // [B, classes], on the model's device
  return StepResult{cross_entropy(logits, batch.y.to(logits.device())), batch.y.size(0),
                    count_correct(logits, batch.y)};
}

json evaluate_classifier(const Forward& model, const datasets::DataLoader& loader, const std::string& prefix) {
  double loss_sum = 0.0;
  int64_t correct = 0;
  for (int64_t b = 0; b < loader.num_batches(); ++b) {
    const datasets::Batch batch = loader.batch(b);  // dist: this rank's slice (empty when the batch is short)
    if (batch.y.numel() == 0) continue;
    const Tensor logits = model(batch.x);
    loss_sum += cross_entropy(logits, batch.y.to(logits.device()), Reduction::Sum).item();
    correct += count_correct(logits, batch.y);
  }
  const auto sums = dist::all_reduce_sum({loss_sum, static_cast<double>(correct)});  // dist: exact sums
  const double n = static_cast<double>(loader.num_samples());
  return json{{prefix + "_loss", sums[0] / n}, {prefix + "_acc", sums[1] / n}};
}

datasets::ImageDataset split_validation(datasets::ImageDataset& train, double fraction, uint64_t seed) {
  TG_CHECK(fraction > 0 && fraction < 1, "--val-fraction ", fraction, ": must be in (0, 1) (0: no validation split)");
  const int64_t n = train.size(), held = std::llround(fraction * static_cast<double>(n));
  TG_CHECK(held >= 1 && held < n, "--val-fraction ", fraction, " of ", n, " training samples leaves ", held,
           " for validation and ", n - held, " for training: both need at least one");
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  Generator gen(seed ^ 0x76616c6964ull);  // its own stream: not the initial weights' or the data order's
  for (int64_t i = n - 1; i > 0; --i) std::swap(order[i], order[gen.randint(i + 1)]);
  std::vector<bool> is_val(static_cast<size_t>(n), false);
  for (int64_t i = 0; i < held; ++i) is_val[order[i]] = true;
  const int64_t d = train.images.numel() / std::max<int64_t>(n, 1);
  const auto take = [&](bool val, int64_t count, const std::string& name) {
    datasets::ImageDataset out = train;
    out.images = empty({count, d});
    out.labels = empty({count}, DType::I64);
    const float* x = train.images.data<float>();
    const int64_t* y = train.labels.data<int64_t>();
    float* ox = out.images.data<float>();
    int64_t* oy = out.labels.data<int64_t>();
    for (int64_t i = 0, k = 0; i < n; ++i) {
      if (is_val[i] != val) continue;
      std::copy(x + i * d, x + (i + 1) * d, ox + k * d);
      oy[k++] = y[i];
    }
    out.name = name;
    return out;
  };
  datasets::ImageDataset val = take(true, held, train.name + " (validation)");
  train = take(false, n - held, train.name);
  return val;
}

namespace {

// False when some gradient on a device (not the CPU) holds a NaN or Inf. One number crosses to the host instead
// of every gradient: the sum of g * 0 over them all is NaN exactly when an element is NaN or Inf (Inf * 0 = NaN).
bool device_grads_finite(const std::vector<std::pair<std::string, Tensor>>& named) {
  NoGradGuard no_grad;
  Tensor zero_sum;
  for (const auto& [name, p] : named) {
    const Tensor& g = p.grad();
    if (!g.defined() || g.device() == Device::CPU) continue;
    const Tensor z = sum(g * 0.0);
    zero_sum = zero_sum.defined() ? zero_sum + z.to(zero_sum.dtype()) : z;
  }
  return !zero_sum.defined() || std::isfinite(zero_sum.item());
}

// The name of the first parameter whose gradient holds a NaN or Inf, or "" when all are finite.
std::string first_nonfinite_grad(const std::vector<std::pair<std::string, Tensor>>& named) {
  const bool devices_finite = device_grads_finite(named);
  for (const auto& [name, p] : named) {
    if (!p.grad().defined() || (devices_finite && p.grad().device() != Device::CPU)) continue;
    const Tensor g = p.grad().cpu();  // the check reads host memory
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

// One optimizer's run in the comparison: its model and optimizer, its files, and what it has done so far.
struct Run {
  RunSpec spec;
  std::string tag;  // "[Adam 3/6]": the head of its progress lines
  std::string results_path, ckpt_path;
  nn::Module* model = nullptr;
  std::vector<std::pair<std::string, Tensor>> named;
  std::unique_ptr<optim::Optimizer> opt;
  std::optional<optim::MultiStepLR> scheduler;
  Metadata identity;        // what its checkpoint must match to be resumed
  RunSummary summary;
  int64_t start_epoch = 0;  // epochs done before this process (--resume)
  std::optional<dist::DataParallel> data_parallel;  // dist: averages the gradients over the ranks (1 rank: none)
  std::ofstream results, telemetry;                 // rank 0's alone
};

// dist: rank 0 alone writes results, checkpoints, telemetry and summaries.
bool lead() { return dist::rank() == 0; }

// Builds the model from the seed (the same initial weights for every optimizer) and the optimizer; with
// --resume, continues after the checkpoint's epoch once it is shown to be of the same run.
void start_run(const CommonConfig& c, Experiment& ex, const RunSpec& r, Run& run) {
  const std::string base = (fs::path(c.out) / lower(r.label)).string();
  run.spec = r;
  run.results_path = base + ".jsonl";
  run.ckpt_path = base + ".ckpt";
  Generator init_gen(c.seed);
  run.model = &ex.make_model(init_gen);
  run.model->train();
  run.named = run.model->named_parameters();
  run.opt = optim::make(r.spec, run.model->parameters());
  if (!c.milestones.empty()) run.scheduler.emplace(*run.opt, c.milestones, c.lr_decay);

  run.identity = ex.identity;
  run.identity["spec"] = r.spec;
  run.identity["seed"] = std::to_string(c.seed);
  run.identity["dataset"] = ex.dataset;
  run.summary = RunSummary{r, "", {}, 0.0, false, ""};
  if (c.resume && fs::exists(run.ckpt_path)) {
    Metadata saved;
    load_safetensors(run.ckpt_path, &saved);
    for (const auto& [key, value] : run.identity) {
      const auto it = saved.find(key);
      TG_CHECK(it != saved.end() && it->second == value, "--resume: checkpoint ", run.ckpt_path, " was made with ",
               key, " = '", (it == saved.end() ? std::string("?") : it->second), "', this run has '", value,
               "': use the same flags, or another --out, or drop --resume to start afresh");
    }
    run.start_epoch = std::stoll(saved.at("epoch"));
    load_checkpoint(run.ckpt_path, *run.model, run.opt.get());  // restores the lr too
    if (run.scheduler) run.scheduler->set_last_epoch(run.start_epoch);
    run.summary.seconds = std::stod(saved.at("seconds"));
    run.summary.diverged = saved.count("diverged") && saved.at("diverged") == "true";
    run.summary.epochs = read_results(run.results_path, run.start_epoch);
    TG_CHECK(static_cast<int64_t>(run.summary.epochs.size()) == run.start_epoch, "--resume: ", run.results_path,
             " holds ", run.summary.epochs.size(), " epochs, its checkpoint ", run.ckpt_path, " ", run.start_epoch,
             ": remove both to start this optimizer afresh");
  }
  run.summary.resolved = run.opt->describe();
  // dist: every rank was started alike (flags, data, checkpoint), then takes rank 0's weights and averages its
  // gradients with the others' during backward. (A collective: before rank 0 rewrites the results below.)
  std::string described;
  for (const auto& [key, value] : run.identity) described += key + "=" + value + "\n";
  dist::check_same("flags and data", described + "start_epoch=" + std::to_string(run.start_epoch) +
                                         "\nsync_batch_norm=" + (ex.sync_batch_norm ? "true" : "false") + "\n");
  if (dist::world_size() > 1)  // (a world of one needs none, and keeps any device)
    run.data_parallel.emplace(*run.model, dist::DataParallelOptions{.sync_batch_norm = ex.sync_batch_norm});
  if (!lead()) return;
  // Results: the kept lines only (all of them epochs <= start_epoch).
  run.results = open_results(run.results_path, run.summary.epochs);
  if (c.telemetry > 0) {
    const std::string telemetry_path = (fs::path(c.out) / "telemetry.jsonl").string();
    if (c.resume && fs::exists(telemetry_path)) trim_telemetry(telemetry_path, r.label, run.opt->steps());
    run.telemetry.open(telemetry_path, std::ios::app);
    TG_CHECK(run.telemetry.good(), "cannot write ", telemetry_path);
  }
}

// The divergence guard, after backward and before the update: "" when the loss and every gradient are
// finite, else what is not (the step, the batch, the optimizer and the parameter).
std::string nonfinite_step(const Run& run, double loss, int64_t epoch, int64_t b, int64_t steps) {
  const std::string bad_grad = first_nonfinite_grad(run.named);
  if (std::isfinite(loss) && bad_grad.empty()) return "";
  return "step " + std::to_string((epoch - 1) * steps + b + 1) + " (epoch " + std::to_string(epoch) + ", batch " +
         std::to_string(b + 1) + "/" + std::to_string(steps) + ") of optimizer " + run.spec.label + " (" +
         run.spec.spec + "): loss " + optim::format_number(loss) +
         (bad_grad.empty() ? std::string(", all gradients finite")
                           : ", the gradient of parameter '" + bad_grad + "' holds NaN or Inf");
}

// For testing the guard: a NaN in the first parameter's gradient (set on the host, copied back to its device).
void poison_gradient(const Run& run) {
  Tensor g = run.named.front().second.grad();
  Tensor host = g.cpu().clone();
  if (host.dtype() == DType::F32) host.data<float>()[0] = std::numeric_limits<float>::quiet_NaN();
  else host.data<double>()[0] = std::numeric_limits<double>::quiet_NaN();
  g.copy_(host);
}

// What one epoch of training gave.
struct EpochStats {
  double loss_sum = 0.0;  // sum over samples of the batch mean losses
  int64_t correct = 0, seen = 0, skipped = 0;
  bool counts_correct = false;
  std::string stopped;  // why this optimizer stops (a NaN/Inf), or ""
  double train_mean_loss() const { return loss_sum / std::max<int64_t>(seen, 1); }
};

// One epoch of the training loop. Each step: the batch and forward (the experiment's step; data parallel:
// each rank takes its slice of the global batch there), the batch's sums over the ranks, zero_grad, backward
// (data parallel: the gradients averaged over the ranks), the finite check, before_update (clipping), the
// update, telemetry.
EpochStats train_epoch(const CommonConfig& c, Experiment& ex, Run& run, int64_t epoch, Progress& progress) {
  const int64_t steps = ex.steps_per_epoch;
  const auto t0 = Clock::now();
  const std::string head = run.tag + " epoch " + std::to_string(epoch) + "/" + std::to_string(c.epochs);
  EpochStats s;
  ex.begin_epoch(epoch - 1);
  run.model->train();
  for (int64_t b = 0; b < steps; ++b) {
    const StepResult out = ex.step(epoch - 1, b);  // forward
    // dist: this rank's share of the global batch, and the batch's loss sum, count, correct and whether some
    // rank's loss is not finite (so that every rank skips or stops alike).
    const double local_l = out.loss.item();
    const auto global = dist::all_reduce_sum({local_l * static_cast<double>(out.count), static_cast<double>(out.count),
                                              static_cast<double>(out.correct), std::isfinite(local_l) ? 0.0 : 1.0});
    if (run.data_parallel) run.data_parallel->set_batch_share(out.count, static_cast<int64_t>(global[1]));
    run.opt->zero_grad();
    out.loss.backward();
    if ((epoch - 1) * steps + b + 1 == c.debug_nan_at) poison_gradient(run);
    const double l = global[3] > 0 && std::isfinite(local_l) ? std::numeric_limits<double>::quiet_NaN() : local_l;
    const std::string bad = nonfinite_step(run, l, epoch, b, steps);
    if (!bad.empty()) {
      if (!c.skip_nonfinite) {
        s.stopped = bad;
        break;
      }
      ++s.skipped;
      progress.say(run.tag + " skipped " + bad);
      continue;
    }
    if (ex.before_update) ex.before_update();
    run.opt->step();
    if (c.telemetry > 0 && run.opt->steps() % c.telemetry == 0 && lead())
      run.telemetry << telemetry_lines(run.spec.label, epoch, *run.opt, run.named) << std::flush;
    s.loss_sum += global[0];  // dist: sums over the ranks
    if (out.correct >= 0) s.correct += static_cast<int64_t>(global[2]), s.counts_correct = true;
    s.seen += static_cast<int64_t>(global[1]);
    const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
    progress.step(head, b + 1, steps, s.train_mean_loss(), s.seen / std::max(elapsed, 1e-9));
  }
  return s;
}

// The held-out metrics, in eval mode and without the tape.
json evaluate(Experiment& ex, nn::Module& model) {
  NoGradGuard no_grad;
  model.eval();
  json eval = ex.evaluate();
  model.train();
  return eval;
}

// The epoch's JSON line (appended to the results and the summary), its progress line, the lr schedule's
// step and the checkpoint. Data parallel: only rank 0 writes.
void record_epoch(const CommonConfig& c, const Experiment& ex, Run& run, int64_t epoch, const EpochStats& s,
                  const json& eval, double train_seconds, double seconds, Progress& progress) {
  run.summary.seconds += seconds;
  // Skipped steps count in neither the loss nor the accuracy; an epoch of skipped steps has neither.
  const auto or_null = [&](double v) { return s.seen ? json(v) : json(nullptr); };
  json line = {{"optimizer", run.spec.label}, {"spec", run.spec.spec}, {"dataset", ex.dataset},
               {"epoch", epoch}, {"epochs", c.epochs}, {"train_loss", or_null(s.train_mean_loss())}};
  if (s.counts_correct) line["train_acc"] = or_null(static_cast<double>(s.correct) / std::max<int64_t>(s.seen, 1));
  if (ex.decorate && s.seen) ex.decorate(line);
  std::string shown;
  for (const auto& [key, value] : eval.items()) {
    line[key] = value;
    if (value.is_number())
      shown += "  " + key + " " +
               (key.find("acc") != std::string::npos ? fmt("%.2f%%", 100 * value.get<double>())
                                                     : fmt("%.4f", value.get<double>()));
  }
  line["seconds"] = seconds;
  line["lr"] = run.opt->lr();
  line[ex.unit + "_per_s"] = static_cast<double>(s.seen) / train_seconds;
  line["steps"] = run.opt->steps();
  if (c.skip_nonfinite) line["skipped_steps"] = s.skipped;
  if (lead()) run.results << line.dump() << '\n' << std::flush;
  run.summary.epochs.push_back(line);
  const std::string head = run.tag + " epoch " + std::to_string(epoch) + "/" + std::to_string(c.epochs);
  progress.say(head + "  train loss " + fmt("%.4f", s.train_mean_loss()) +
               (s.counts_correct ? " acc " + fmt("%.2f%%", 100.0 * s.correct / std::max<int64_t>(s.seen, 1)) : "") +
               shown + "  " + fmt("%.1f s", seconds) + "  lr " + fmt("%.6g", run.opt->lr()) + "  " +
               fmt("%.0f ", s.seen / train_seconds) + ex.unit + "/s");
  if (run.scheduler) run.scheduler->step();
  if (s.skipped > 0)
    progress.say(head + "  skipped " + std::to_string(s.skipped) + " of " + std::to_string(ex.steps_per_epoch) +
                 " steps (loss or gradient not finite)");
  Metadata meta = run.identity;
  meta["epoch"] = std::to_string(epoch);
  meta["seconds"] = optim::format_number(run.summary.seconds);
  meta["diverged"] = "false";
  meta["optimizer"] = run.spec.label;
  if (lead()) save_checkpoint(run.ckpt_path, *run.model, run.opt.get(), meta);
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
  if (c.telemetry > 0 && !c.resume && lead()) write_file_atomically((fs::path(c.out) / "telemetry.jsonl").string(), "");
  const int64_t steps = ex.steps_per_epoch;
  Progress progress(static_cast<int64_t>(runs.size()) * c.epochs * steps, ex.unit);
  progress.say(ex.name + ": " + std::to_string(num_threads()) + " threads, CPU kernels " + cpu_isa());
  std::vector<RunSummary> summaries;

  for (size_t k = 0; k < runs.size(); ++k) {
    Run run;
    start_run(c, ex, runs[k], run);
    run.tag = "[" + run.spec.label + " " + std::to_string(k + 1) + "/" + std::to_string(runs.size()) + "]";
    if (run.start_epoch > 0)
      progress.say(run.tag + " resumed from " + run.ckpt_path + " after epoch " + std::to_string(run.start_epoch));
    progress.say(run.tag + " " + run.summary.resolved);
    const int64_t last_epoch = run.summary.diverged ? run.start_epoch : c.epochs;
    progress.skip((c.epochs - std::max<int64_t>(0, last_epoch - run.start_epoch)) * steps);

    for (int64_t epoch = run.start_epoch + 1; epoch <= last_epoch; ++epoch) {
      const auto t0 = Clock::now();
      const EpochStats s = train_epoch(c, ex, run, epoch, progress);
      if (!s.stopped.empty()) {
        progress.say(run.tag + " not finite at " + s.stopped + ": stopping this optimizer; its checkpoint " +
                     (fs::exists(run.ckpt_path) ? run.ckpt_path + " (the last complete epoch) is left as it was"
                                                : std::string("was never written (no epoch completed)")) +
                     " (--skip-nonfinite skips such steps instead)");
        run.summary.diverged = true;
        run.summary.stopped = s.stopped;
        progress.skip((c.epochs - epoch + 1) * steps);
        break;
      }
      const double train_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
      const json eval = evaluate(ex, *run.model);
      const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
      record_epoch(c, ex, run, epoch, s, eval, train_seconds, seconds, progress);
    }
    summaries.push_back(std::move(run.summary));
  }

  if (lead()) write_summary(c, ex, summaries);
  bool any_stopped = false;  // an optimizer stopped on a NaN/Inf: exit code 3
  for (const RunSummary& r : summaries)
    if (!r.stopped.empty()) {
      std::cerr << ex.name << ": stopped: not finite at " << r.stopped << '\n';
      any_stopped = true;
    }
  return any_stopped ? 3 : 0;
}

// dist: "rank 1: " in a world of several ranks.
static std::string rank_prefix() {
  return dist::world_size() > 1 ? "rank " + std::to_string(dist::rank()) + ": " : "";
}

int main_of(const char* name, CLI::App& app, int argc, char** argv, const std::function<int()>& run) {
  dist::init(&argc, &argv);  // dist: under mpirun, one rank of the world; else a world of one
  // dist: only rank 0 prints; the others' output goes nowhere, except their errors (below).
  static std::ofstream nowhere;
  std::streambuf* const out_buf = std::cout.rdbuf();
  std::streambuf* const err_buf = std::cerr.rdbuf();
  if (dist::rank() != 0) {
    std::cout.rdbuf(nowhere.rdbuf());
    std::cerr.rdbuf(nowhere.rdbuf());
  }
  const auto speak = [&] {
    std::cout.rdbuf(out_buf), std::cerr.rdbuf(err_buf);
    std::cout.clear(), std::cerr.clear();
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << name << ": " << e.what() << "\n(run with --help for the flags)\n";
    dist::abort(2);  // dist: a rank started with other flags must not leave the others waiting
    return 2;
  }
  try {
    return run();
  } catch (const Error& e) {
    speak();
    std::cerr << "\n" + std::string(name) + ": error: " + rank_prefix() + e.what() + "\n";  // one write
    dist::abort(2);  // dist: never leave the other ranks waiting
    return 2;
  } catch (const std::exception& e) {
    speak();
    std::cerr << "\n" + std::string(name) + ": unexpected error: " + rank_prefix() + e.what() + "\n";  // one write
    dist::abort(1);
    return 1;
  }
}

}  // namespace tapegrad::tools
