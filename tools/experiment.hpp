// The per-optimizer training driver shared by the replication programs (tools/mnist, tools/cifar,
// tools/ptb): an experiment says how to build its model, how to compute the loss of batch b of an epoch and
// how to evaluate; the driver trains every optimizer of the comparison in turn from the same initial
// weights and owns everything else:
//
//   - run specs ("--optim": "adam:lr=1e-3", a bare name for its default, "LABEL=SPEC"), checked up front;
//   - the lr schedule (--milestones, --lr-decay), the progress line with ETA on stderr;
//   - per epoch: one JSON line per optimizer (<out>/<label>.jsonl) and an atomic checkpoint
//     (<out>/<label>.ckpt) holding model, optimizer state, epoch, and the identity of the run;
//   - --resume: each optimizer continues after its last complete epoch, bit for bit with the same
//     --threads (the experiment's data order must be a function of (seed, epoch) alone);
//   - the divergence guard: after every backward the loss and all gradients are checked finite before the
//     optimizer sees them; a NaN/Inf stops that optimizer with the step, parameter and optimizer named,
//     leaving its last good checkpoint (exit code 3), or --skip-nonfinite skips and counts such steps;
//   - --telemetry N: effective learning-rate distributions (Optimizer::lr_telemetry) every N steps;
//   - --val-fraction F (image experiments): a validation split of the training data, drawn from the seed,
//     evaluated every epoch (val_loss, val_acc) for tools/tune's selection; --check-optim: the specs resolved;
//   - summary.json and summary.md: best and final metric per optimizer, beside the paper's where given;
//   - under mpirun (dist.hpp): data parallel, the same flags meaning the same training on any number of ranks
//     (--batch the global batch, each rank its slice; sums over the ranks; rank 0 alone prints and writes;
//     ranks started differently refused; checkpoints resume on any number of ranks). Call sites: 'dist:'.
//
// Its parts: the run's specification (CommonConfig, RunSpec, Experiment: here), the training loop of named
// steps (run_experiment in experiment.cpp: start_run, train_epoch, evaluate, record_epoch), the results
// writer (results.hpp) and the progress line (progress.hpp). tools/tune runs the same programs per grid point.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "progress.hpp"
#include "tapegrad/datasets/idx.hpp"
#include "tapegrad/datasets/loader.hpp"
#include "tapegrad/io.hpp"
#include "tapegrad/nn/module.hpp"
#include "tapegrad/optim.hpp"
#include "util.hpp"

namespace tapegrad::tools {

// ------------------------------------------------------------------------------------------------ data
// Which data an image experiment runs on: the paper's dataset when --data holds it, else Fashion-MNIST from
// Debian's dataset-fashion-mnist (or from --data with --dataset fashion-mnist), said loudly.
struct DataChoice {
  std::string dataset;  // the paper's ("mnist", "cifar10") or "fashion-mnist"
  std::string title;    // "MNIST", "CIFAR-10", "Fashion-MNIST", "Fashion-MNIST (32x32)"
  std::string dir;
  std::string note;     // printed loudly and kept in the results; empty for the paper's dataset
};
struct PaperDataset {
  std::string name, title;  // "cifar10", "CIFAR-10"
  std::function<std::string(const std::string&)> find;                  // its directory in --data, or ""
  std::function<std::vector<std::string>(const std::string&)> missing;  // its files a directory lacks
  std::string expected;        // what --data must hold, for the error
  std::string stand_in_title;  // "Fashion-MNIST (32x32)"
  std::string stand_in;        // how Fashion-MNIST stands in: ", padded to 32x32, one channel" or ""
  std::string results;         // what of the paper's is not comparable then: "figure", "numbers"
};
// --dataset is auto, the paper's name or fashion-mnist; --data a directory or empty.
DataChoice choose_image_data(const std::string& dataset, const std::string& data, const PaperDataset& paper);

// ---------------------------------------------------------------------------------------------- device
// --device, --deterministic and --tf32 of the programs that may train on a GPU (cifar, ptb, lr_heatmap).
struct DeviceConfig {
  std::string device = "auto";  // cpu, cuda, test, or auto
  bool deterministic = false;   // cuDNN's deterministic algorithms only (set_deterministic)
  bool tf32 = false;            // TF32 tensor cores for f32 matrix products (set_allow_tf32)
};
void add_device_flags(CLI::App& app, DeviceConfig& c);
// The device to run on: --device when given; auto is cuda when a GPU is there and `paper_data` (the paper's
// data set, not the stand-in), else the CPU. Applies --deterministic and --tf32 and says on stderr which device
// and why, and which algorithms. Throws naming the flag for --device cuda without a GPU.
Device choose_device(const DeviceConfig& c, bool paper_data);

// ------------------------------------------------------------------------------------------- run specs
struct RunSpec {
  std::string label;  // "AdaBound"; also names the files (lower case)
  std::string spec;   // what optim::make() takes
};
// "--optim" values: each may hold several specs separated by ';' or spaces. A spec is "name:k=v,...",
// a bare name or label ("adam", "sgdm": its spec in `defaults`), or "LABEL=SPEC". No values: `defaults`.
std::vector<RunSpec> parse_runs(const std::vector<std::string>& values, const std::vector<RunSpec>& defaults);
// The paper's six with the hyperparameters of its released code; `extra` (",weight_decay=5e-4") is
// appended to each spec.
std::vector<RunSpec> paper_runs(const std::string& extra = "");

// ------------------------------------------------------------------------------------------- the driver
// The flags every replication program shares (add_common_flags registers them).
struct CommonConfig {
  std::vector<std::string> optim;
  int64_t epochs = 1;
  uint64_t seed = 1;
  std::string out;
  int threads = 0;
  bool resume = false;
  std::vector<int64_t> milestones;
  double lr_decay = 0.1;
  int64_t telemetry = 0;     // every N steps; 0: off
  bool skip_nonfinite = false;
  int64_t debug_nan_at = 0;  // poisons one gradient at this step (1-based, over epochs): tests only
  double val_fraction = 0.0; // the share of the training data held out for validation (image experiments)
  bool check_optim = false;  // check the specs, print them resolved, and exit
};
void add_common_flags(CLI::App& app, CommonConfig& c);
// Checks the shared flags and applies --threads; throws an Error naming the flag.
void check_common_flags(const CommonConfig& c);
// Builds every run's optimizer once (on a probe parameter), so that a typo in the last spec does not cost
// the others' time: optim::make's Error names the spec. With --check-optim, prints one JSON line per run
// ({"label", "spec", "resolved"}: what tools/tune checks its grid with) and returns true: nothing to train.
bool check_runs(const CommonConfig& c, const std::vector<RunSpec>& runs);

// What one training step reports: the mean loss of the batch (recorded, scalar), how many samples
// (images, tokens) it averages over, and how many were classified correctly (-1: not an accuracy task).
struct StepResult {
  Tensor loss;
  int64_t count = 0;
  int64_t correct = -1;
};

struct Experiment {
  std::string name;       // "mnist": messages, summary.json
  std::string title;      // first line of summary.md
  std::string dataset;    // short data name in every JSON line
  std::string note;       // a loud remark about the data (substitution), kept in the results
  std::string unit = "samples";  // throughput unit: "<unit>_per_s" in the JSON lines
  Metadata identity;      // what a checkpoint must match to be resumed (spec and epoch are added)
  json summary_fields = json::object();  // extra fields of summary.json
  int64_t steps_per_epoch = 0;
  bool sync_batch_norm = false;  // dist: BatchNorm statistics over all ranks' samples (cifar --sync-bn)

  // Builds the model afresh from `init` (the same seed for every optimizer) and returns it; the
  // experiment keeps it (typed) for its step and evaluation functions.
  std::function<nn::Module&(Generator& init)> make_model;
  // Called before the first step of each epoch (0-based e: set the data order, reset carried state).
  std::function<void(int64_t epoch)> begin_epoch = [](int64_t) {};
  // Forward of batch b (0-based) of epoch e; the driver zeroes the gradients and runs backward. (Data
  // parallel: each rank's loader yields its slice of the epoch's global batch b; the driver sums the counts.)
  std::function<StepResult(int64_t epoch, int64_t b)> step;
  // After backward, after the finite check, before the update (gradient clipping); may be empty.
  std::function<void()> before_update;
  // Evaluation (the driver sets eval mode and no-grad): the held-out metrics, e.g. {"test_loss",
  // "test_acc"} or {"valid_ppl", "test_ppl"}. Each key goes into the epoch's JSON line. Data parallel: each
  // rank evaluates its slice and the sums are added over the ranks (evaluate_classifier does).
  std::function<json()> evaluate;
  // Extra fields of an epoch's JSON line from its train loss (e.g. train perplexity); may be empty.
  std::function<void(json& line)> decorate;

  // The metric the summary ranks by, and the paper's value of it per optimizer label (may be empty).
  std::string best_key = "test_acc";
  bool higher_is_better = true;
  bool percent = true;  // show the metric as a percentage
  std::map<std::string, double> paper;
  std::string paper_caption;  // what the paper's column is ("ResNet-34 on CIFAR-10, 200 epochs")
};

// Trains every run of the comparison; returns the exit code (0, or 3 when an optimizer was stopped by a
// NaN/Inf). Errors (bad flags, bad checkpoints) are thrown.
int run_experiment(const CommonConfig& c, const std::vector<RunSpec>& runs, Experiment& ex);

// The main() of a replication program: parses, runs, and turns errors into messages and exit codes
// (2: bad input, 1: unexpected). Under mpirun (dist::init): only rank 0 prints, and an error on any rank
// ends every rank (dist::abort) after printing it with the rank named.
int main_of(const char* name, CLI::App& app, int argc, char** argv, const std::function<int()>& run);

// dist: refuses batches of n items (size `batch`, the last one smaller) of which some rank would get no sample
// under mpirun (`flag` names the flag to change).
void check_batches_cover_ranks(const std::string& flag, int64_t n, int64_t batch);

// ------------------------------------------------------------------------------------------ classifiers
// Number of rows whose argmax equals the label: logits [N, C], labels I64 [N].
int64_t count_correct(const Tensor& logits, const Tensor& labels);
using Forward = std::function<Tensor(const Tensor&)>;  // the model: x -> logits [B, classes]
// The training step of an image classifier: the mean cross-entropy of one batch, and its correct count.
StepResult classify_batch(const Forward& model, const datasets::Batch& batch);
// Mean cross-entropy and accuracy over every batch of a loader: {"<prefix>_loss", "<prefix>_acc"}. Data
// parallel: each rank evaluates its slices (the loader's rank option), the sums are added over the ranks.
json evaluate_classifier(const Forward& model, const datasets::DataLoader& loader, const std::string& prefix);
// Carves a validation split out of the training set (--val-fraction): round(fraction * size) samples
// drawn from seed; `train` keeps the others, in their order. Throws naming the flag when either side would
// be empty.
datasets::ImageDataset split_validation(datasets::ImageDataset& train, double fraction, uint64_t seed);

}  // namespace tapegrad::tools
