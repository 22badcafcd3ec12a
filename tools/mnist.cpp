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
#include <CLI/CLI.hpp>

#include <algorithm>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "experiment.hpp"
#include "tapegrad/datasets/idx.hpp"
#include "tapegrad/datasets/loader.hpp"
#include "tapegrad/dist.hpp"
#include "tapegrad/models/mlp.hpp"
#include "tapegrad/ops.hpp"

using namespace tapegrad;
using namespace tapegrad::tools;

namespace {

struct Config : CommonConfig {
  int64_t hidden = 256;
  int64_t batch = 128;
  std::string data;
  std::string dataset = "auto";
  int64_t train_limit = 0;
  int64_t test_limit = 0;
  std::string device = "cpu";
};

// The paper's MNIST when --data holds it, else Fashion-MNIST, said loudly.
DataChoice choose_data(const Config& c) {
  PaperDataset mnist;
  mnist.name = "mnist";
  mnist.title = "MNIST";
  mnist.find = [](const std::string& dir) { return datasets::missing_mnist_files(dir).empty() ? dir : ""; };
  mnist.missing = datasets::missing_mnist_files;
  mnist.expected = "give the directory holding train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
                   "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]";
  mnist.stand_in_title = "Fashion-MNIST";
  mnist.results = "figure";
  return choose_image_data(c.dataset, c.data, mnist);
}

int run(const Config& c) {
  check_common_flags(c);
  TG_CHECK(c.hidden >= 1, "--hidden ", c.hidden, ": must be at least 1");
  TG_CHECK(c.batch >= 1, "--batch ", c.batch, ": must be at least 1");
  TG_CHECK(c.train_limit >= 0 && c.test_limit >= 0, "--train-limit/--test-limit must be >= 0");
  const Device dev = device_from_name(c.device);
  TG_CHECK(dev != Device::CUDA || cuda_available(), "--device cuda: no CUDA device (no GPU here, or a build without "
           "-Dcuda=enabled)");
  const std::vector<RunSpec> runs = parse_runs(c.optim, paper_runs());
  if (check_runs(c, runs)) return 0;  // --check-optim

  const DataChoice data = choose_data(c);
  if (!data.note.empty()) banner(data.note);
  datasets::ImageDataset train = datasets::load_mnist(data.dir, true, data.dataset);
  datasets::ImageDataset test = datasets::load_mnist(data.dir, false, data.dataset);
  if (c.train_limit > 0) train = datasets::head(train, std::min(c.train_limit, train.size()));
  if (c.test_limit > 0) test = datasets::head(test, std::min(c.test_limit, test.size()));
  std::optional<datasets::ImageDataset> val;
  if (c.val_fraction > 0) val = split_validation(train, c.val_fraction, c.seed);
  const datasets::PixelStats stats = datasets::pixel_stats(train);
  const int64_t features = train.rows * train.cols;
  std::cerr << "dataset: " << data.title << " from " << data.dir << ": " << train.size() << " train, " << test.size()
            << " test images" << (val ? " (and " + std::to_string(val->size()) + " validation images held out)" : "")
            << " of " << train.rows << "x" << train.cols << " (normalised with train mean "
            << fmt("%.4f", stats.mean) << ", std " << fmt("%.4f", stats.std) << ")\n"
            << "model: perceptron " << features << " -> " << c.hidden << " -> 10 (ReLU), batch " << c.batch << ", "
            << c.epochs << (c.epochs == 1 ? " epoch" : " epochs") << ", seed " << c.seed << ", " << num_threads()
            << " threads\n";

  // dist: each rank takes its slice of every global batch (training and evaluation)
  check_batches_cover_ranks("--batch", train.size(), c.batch);
  const int rank = dist::rank(), ranks = dist::world_size();
  datasets::DataLoader train_loader(train, {.batch_size = c.batch, .shuffle = true, .drop_last = false,
                                            .seed = c.seed, .mean = stats.mean, .std = stats.std,
                                            .rank = rank, .world_size = ranks});
  datasets::DataLoader test_loader(test, {.batch_size = 1000, .shuffle = false, .drop_last = false, .seed = 0,
                                          .mean = stats.mean, .std = stats.std, .rank = rank, .world_size = ranks});
  std::optional<datasets::DataLoader> val_loader;
  if (val) val_loader.emplace(*val, datasets::LoaderOptions{.batch_size = 1000, .shuffle = false, .drop_last = false,
                                                             .seed = 0, .mean = stats.mean, .std = stats.std,
                                                             .rank = rank, .world_size = ranks});
  std::optional<models::MLP> model;
  const Forward forward = [&](const Tensor& x) { return (*model)(x.to(dev)); };  // batches are made on the host

  Experiment ex;
  ex.name = "mnist";
  ex.title = data.title + " perceptron (784-" + std::to_string(c.hidden) + "-10), " + std::to_string(c.epochs) +
             (c.epochs == 1 ? " epoch" : " epochs") + ", batch " + std::to_string(c.batch) + ", seed " +
             std::to_string(c.seed);
  ex.dataset = data.dataset;
  ex.note = data.note;
  ex.identity = {{"hidden", std::to_string(c.hidden)},
                 {"batch", std::to_string(c.batch)},
                 {"train_samples", std::to_string(train.size())},
                 {"data", std::to_string(dist::fingerprint(train.images) ^ dist::fingerprint(train.labels))}};
  if (val) ex.identity["val_fraction"] = optim::format_number(c.val_fraction);
  ex.summary_fields = {{"dataset_title", data.title}, {"data_dir", data.dir},  {"train_samples", train.size()},
                       {"test_samples", test.size()}, {"hidden", c.hidden},    {"batch", c.batch}};
  if (val) ex.summary_fields["val_samples"] = val->size();
  ex.steps_per_epoch = train_loader.num_batches();
  ex.make_model = [&](Generator& init) -> nn::Module& {
    model.emplace(features, c.hidden, 10, init);  // initialised on the CPU (the same weights on every device)
    model->to(dev);
    return *model;
  };
  ex.begin_epoch = [&](int64_t epoch) { train_loader.set_epoch(epoch); };
  ex.step = [&](int64_t, int64_t b) { return classify_batch(forward, train_loader.batch(b)); };
  ex.evaluate = [&] {
    json eval = val_loader ? evaluate_classifier(forward, *val_loader, "val") : json::object();
    eval.update(evaluate_classifier(forward, test_loader, "test"));
    return eval;
  };
  return run_experiment(c, runs, ex);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "mnist: the AdaBound paper's perceptron experiment. Trains a 784-hidden-10 ReLU perceptron with each "
      "optimizer from the same initial weights on the same data order, and writes per-epoch JSON lines, "
      "checkpoints and a summary."};
  app.get_formatter()->column_width(34);
  Config c;
  c.epochs = 30;
  c.out = "results/mnist";
  add_common_flags(app, c);
  app.add_option("--hidden", c.hidden, "hidden units")->capture_default_str();
  app.add_option("--batch", c.batch, "batch size")->capture_default_str();
  app.add_option("--data", c.data, "directory with the four MNIST IDX files (raw or .gz)");
  app.add_option("--dataset", c.dataset,
                 "mnist, fashion-mnist or auto (MNIST when --data has it, else Debian's Fashion-MNIST)")
      ->capture_default_str();
  app.add_option("--train-limit", c.train_limit, "use only the first N training images (0: all)");
  app.add_option("--test-limit", c.test_limit, "use only the first N test images (0: all)");
  app.add_option("--device", c.device, "cpu, cuda, or test (the CPU kernels under the test device's tag: tests)")
      ->capture_default_str();
  return main_of("mnist", app, argc, argv, [&] { return run(c); });
}
