// cifar: the AdaBound paper's CIFAR-10 experiment (Luo et al., ICLR 2019, section 5, figures 3-4).
//
// A ResNet-34 or DenseNet-121 (the paper) or a ResNet-20 (the CPU default) trained with cross-entropy, batch
// 128, by each of the six optimizers in turn from the same initial weights on the same batches. Training
// images are augmented as in the paper's reference code (kuangliu/pytorch-cifar): random crop 32 with zero
// padding 4, random horizontal flip, then per-channel normalisation with mean (0.4914, 0.4822, 0.4465) and
// std (0.2023, 0.1994, 0.2010). The crop and flip of image i in epoch e depend on (seed, e, i) alone, so
// every optimizer sees the same batches and --resume continues bit for bit.
//
// Hyperparameters of the paper's released code (Luolc/AdaBound, demos/cifar10): SGDM lr 0.1 momentum 0.9;
// AdaGrad lr 0.01; Adam and AMSGrad lr 1e-3 with betas (0.99, 0.999) for the ResNets and (0.9, 0.999) for
// DenseNet-121; AdaBound and AMSBound lr 1e-3, final_lr 0.1, gamma 1e-3 (betas (0.9, 0.999)); weight decay
// 5e-4 for all. --paper: 200 epochs, lr divided by 10 after epoch 150, the whole data set, ResNet-34 unless
// --model says otherwise. The default is a CPU-sized version of that schedule (ResNet-20, a subset of the
// training and test sets, fewer epochs, the milestone scaled with them), said in the output and results.
//
// Data: CIFAR-10 (binary version) from --data DIR. Without it: Fashion-MNIST from Debian's
// dataset-fashion-mnist, padded to 32x32, one channel, normalised with its own mean and std; said loudly,
// since the paper's numbers are CIFAR-10's.
//
// Everything else (JSON lines per epoch, checkpoints, --resume, divergence guard, telemetry, the summary
// beside the paper's numbers) is the shared driver of tools/experiment.hpp.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cifar_model.hpp"
#include "experiment.hpp"
#include "tapegrad/datasets/cifar.hpp"
#include "tapegrad/datasets/idx.hpp"
#include "tapegrad/datasets/loader.hpp"
#include "tapegrad/dist.hpp"
#include "tapegrad/ops.hpp"

using namespace tapegrad;
using namespace tapegrad::tools;

namespace {

// The CPU default: about ten minutes for all six optimizers with ResNet-20 on two cores (see README).
constexpr int64_t kCpuEpochs = 8, kCpuTrain = 4000, kCpuTest = 1000;
// The paper's protocol (the milestone, 150, is 3/4 of it).
constexpr int64_t kPaperEpochs = 200;

// Best test accuracy after 200 epochs, from the authors' released curves (the CIFAR issue's numbers).
const std::map<std::string, double> kPaperResNet34 = {{"AdaBound", 0.9503}, {"AMSBound", 0.9482}, {"SGDM", 0.9464},
                                                      {"AMSGrad", 0.9327},  {"Adam", 0.9296},     {"AdaGrad", 0.9266}};
const std::map<std::string, double> kPaperDenseNet121 = {{"AMSBound", 0.9524}, {"AdaBound", 0.9489},
                                                         {"SGDM", 0.9432},     {"AMSGrad", 0.9352},
                                                         {"Adam", 0.9336},     {"AdaGrad", 0.9211}};

struct Config : CommonConfig, DeviceConfig {
  std::string model = "resnet20";
  int64_t batch = 128;
  std::string data;
  std::string dataset = "auto";
  int64_t train_limit = kCpuTrain;
  int64_t test_limit = kCpuTest;
  int64_t records_per_file = datasets::kCifarRecordsPerFile;
  bool paper = false;
  bool no_augment = false;
  bool sync_bn = false;
  double weight_decay = 5e-4;
  int64_t eval_batch = 500;
  std::string prefetch = "auto";  // on, off, auto: on for a device other than the CPU
};

// CIFAR-10 when --data holds it, else Fashion-MNIST padded to 32x32, said loudly.
DataChoice choose_data(const Config& c) {
  PaperDataset cifar;
  cifar.name = "cifar10";
  cifar.title = "CIFAR-10";
  cifar.find = datasets::find_cifar10_dir;
  cifar.missing = datasets::missing_cifar10_files;
  cifar.expected = "give the directory holding the binary version's data_batch_1.bin .. data_batch_5.bin and "
                   "test_batch.bin (or its parent, holding cifar-10-batches-bin/)";
  cifar.stand_in_title = "Fashion-MNIST (32x32)";
  cifar.stand_in = ", padded to 32x32, one channel";
  cifar.results = "numbers";
  return choose_image_data(c.dataset, c.data, cifar);
}

// The paper's six with the reference hyperparameters for `model`.
std::vector<RunSpec> default_runs(const std::string& model, double weight_decay) {
  const std::string beta1 = model == "densenet121" ? "0.9" : "0.99";
  std::vector<RunSpec> runs = paper_runs(",weight_decay=" + optim::format_number(weight_decay));
  for (RunSpec& r : runs)
    if (r.label == "Adam" || r.label == "AMSGrad") r.spec += ",betas=" + beta1 + "/0.999";
  return runs;
}

int run(Config c, const CLI::App& app) {
  auto given = [&](const char* flag) { return app.count(flag) > 0; };
  // --paper fills in what the flags leave open; the CPU default otherwise. Without --milestones the lr
  // drops once, at 3/4 of the epochs (the paper: after 150 of 200).
  if (c.paper) {
    if (!given("--model")) c.model = "resnet34";
    if (!given("--epochs")) c.epochs = kPaperEpochs;
    if (!given("--train-limit")) c.train_limit = 0;
    if (!given("--test-limit")) c.test_limit = 0;
  }
  if (!given("--milestones") && c.epochs * 3 / 4 >= 1 && c.epochs * 3 / 4 < c.epochs)
    c.milestones = {c.epochs * 3 / 4};
  check_common_flags(c);
  TG_CHECK(c.batch >= 1, "--batch ", c.batch, ": must be at least 1");
  TG_CHECK(c.eval_batch >= 1, "--eval-batch ", c.eval_batch, ": must be at least 1");
  TG_CHECK(c.train_limit >= 0 && c.test_limit >= 0, "--train-limit/--test-limit must be >= 0 (0: all)");
  TG_CHECK(c.records_per_file >= 0, "--records-per-file ", c.records_per_file, ": must be >= 0 (0: any)");
  TG_CHECK(c.weight_decay >= 0 && std::isfinite(c.weight_decay), "--weight-decay ", c.weight_decay,
           ": must be >= 0");
  TG_CHECK(c.prefetch == "auto" || c.prefetch == "on" || c.prefetch == "off", "--prefetch '", c.prefetch,
           "': expected on, off or auto");
  c.model = lower(c.model);
  Generator probe_gen(0);
  make_cifar_model(c.model, 3, probe_gen);  // an unknown --model fails here, before any data is read
  const std::vector<RunSpec> runs = parse_runs(c.optim, default_runs(c.model, c.weight_decay));
  if (check_runs(c, runs)) return 0;  // --check-optim

  const DataChoice data = choose_data(c);
  const Device dev = choose_device(c, data.dataset == "cifar10");  // before the data is read: a bad flag fails fast
  datasets::ImageDataset train, test;
  std::vector<double> mean, sd;
  if (data.dataset == "cifar10") {
    train = datasets::load_cifar10(data.dir, true, c.records_per_file);
    test = datasets::load_cifar10(data.dir, false, c.records_per_file);
    mean.assign(datasets::kCifarMean.begin(), datasets::kCifarMean.end());
    sd.assign(datasets::kCifarStd.begin(), datasets::kCifarStd.end());
  } else {
    train = datasets::load_mnist(data.dir, true, data.dataset);
    test = datasets::load_mnist(data.dir, false, data.dataset);
    const datasets::PixelStats s = datasets::channel_stats(train).front();  // of the 28x28 images, as usual
    mean = {s.mean};
    sd = {s.std};
    train = datasets::pad_images(train, 2);
    test = datasets::pad_images(test, 2);
  }
  const int64_t full_train = train.size(), full_test = test.size();
  if (c.train_limit > 0) train = datasets::head(train, std::min(c.train_limit, train.size()));
  if (c.test_limit > 0) test = datasets::head(test, std::min(c.test_limit, test.size()));
  std::optional<datasets::ImageDataset> val;
  if (c.val_fraction > 0) val = split_validation(train, c.val_fraction, c.seed);
  TG_CHECK(train.size() >= 1 && test.size() >= 1, "dataset ", data.dataset, ": ", train.size(), " training and ",
           test.size(), " test images; need at least one of each");

  const bool cpu_default = !c.paper && c.model == "resnet20" && c.epochs == kCpuEpochs && c.train_limit == kCpuTrain &&
                           c.test_limit == kCpuTest && c.milestones == std::vector<int64_t>{kCpuEpochs * 3 / 4};
  std::string schedule = std::to_string(c.epochs) + (c.epochs == 1 ? " epoch" : " epochs");
  if (c.lr_decay != 1.0)
    for (int64_t m : c.milestones) schedule += ", lr x" + fmt("%g", c.lr_decay) + " after epoch " + std::to_string(m);
  const bool subset = train.size() < full_train || test.size() < full_test;
  auto count = [](int64_t n, int64_t of) { return std::to_string(n) + (n < of ? " of " + std::to_string(of) : ""); };
  const std::string sizes =
      count(train.size(), full_train) + " training, " + count(test.size(), full_test) + " test images" +
      (val ? " (and " + std::to_string(val->size()) + " validation images held out)" : "");
  std::string note = data.note;
  if (!c.paper) {
    const std::string protocol = (cpu_default ? "CPU default schedule: " : "Reduced schedule: ") + c.model + ", " +
                                 schedule + ", " + sizes + (subset ? " (the first ones)" : "") +
                                 ". NOT the paper's protocol (--paper: ResNet-34, 200 epochs, lr /10 after 150, all "
                                 "50000 training images); the paper's column is for reference, not comparable.";
    note += (note.empty() ? "" : " ") + protocol;
  }
  if (!note.empty()) banner(note);
  // The next batch is decoded, augmented and sent to the device on a thread while this one trains.
  const bool prefetch = c.prefetch == "on" || (c.prefetch == "auto" && dev != Device::CPU);
  std::cerr << "dataset: " << data.title << " from " << data.dir << ": " << sizes << ", " << train.channels << "x"
            << train.rows << "x" << train.cols << ", normalised per channel with mean (";
  for (size_t k = 0; k < mean.size(); ++k) std::cerr << (k ? ", " : "") << fmt("%.4f", mean[k]);
  std::cerr << ") std (";
  for (size_t k = 0; k < sd.size(); ++k) std::cerr << (k ? ", " : "") << fmt("%.4f", sd[k]);
  std::cerr << ")" << (c.no_augment ? ", no augmentation" : ", random crop 32 (zero padding 4) and flip") << '\n'
            << "model: " << c.model << " (" << train.channels << " input channel" << (train.channels == 1 ? "" : "s")
            << "), batch " << c.batch << ", " << schedule << ", weight decay " << optim::format_number(c.weight_decay)
            << ", seed " << c.seed << ", " << num_threads() << " threads"
            << (prefetch ? ", batches prefetched on a thread" : "") << "\n";

  // dist: each rank takes its slice of every global batch (training and evaluation)
  check_batches_cover_ranks("--batch", train.size(), c.batch);
  const int rank = dist::rank(), ranks = dist::world_size();
  datasets::DataLoader train_loader(train, {.batch_size = c.batch, .shuffle = true, .seed = c.seed,
                                            .channel_mean = mean, .channel_std = sd, .image_shape = true,
                                            .crop_padding = c.no_augment ? 0 : 4,
                                            .horizontal_flip = !c.no_augment, .prefetch = prefetch, .device = dev,
                                            .rank = rank, .world_size = ranks});
  datasets::DataLoader test_loader(test, {.batch_size = c.eval_batch, .shuffle = false, .channel_mean = mean,
                                          .channel_std = sd, .image_shape = true, .prefetch = prefetch, .device = dev,
                                          .rank = rank, .world_size = ranks});
  std::optional<datasets::DataLoader> val_loader;
  if (val)
    val_loader.emplace(*val, datasets::LoaderOptions{.batch_size = c.eval_batch, .shuffle = false, .channel_mean = mean,
                                                     .channel_std = sd, .image_shape = true, .prefetch = prefetch,
                                                     .device = dev, .rank = rank, .world_size = ranks});
  std::shared_ptr<nn::Layer> model;
  const Forward forward = [&](const Tensor& x) { return (*model)(x); };

  Experiment ex;
  ex.name = "cifar";
  ex.title = data.title + " " + c.model + ", " + schedule + ", batch " + std::to_string(c.batch) + ", " +
             std::to_string(train.size()) + " training images, seed " + std::to_string(c.seed);
  ex.dataset = data.dataset;
  ex.note = note;
  ex.unit = "images";
  ex.identity = {{"model", c.model},
                 {"in_channels", std::to_string(train.channels)},
                 {"batch", std::to_string(c.batch)},
                 {"train_samples", std::to_string(train.size())},
                 {"augment", c.no_augment ? "false" : "true"},
                 {"data", std::to_string(dist::fingerprint(train.images) ^ dist::fingerprint(train.labels))}};
  if (val) ex.identity["val_fraction"] = optim::format_number(c.val_fraction);
  ex.summary_fields = {{"dataset_title", data.title},
                       {"data_dir", data.dir},
                       {"model", c.model},
                       {"in_channels", train.channels},
                       {"protocol", c.paper ? "paper" : (cpu_default ? "cpu-default" : "custom")},
                       {"train_samples", train.size()},
                       {"test_samples", test.size()},
                       {"batch", c.batch},
                       {"weight_decay", c.weight_decay},
                       {"augment", !c.no_augment},
                       {"mean", mean},
                       {"std", sd}};
  if (val) ex.summary_fields["val_samples"] = val->size();
  ex.sync_batch_norm = c.sync_bn;
  ex.steps_per_epoch = train_loader.num_batches();
  ex.make_model = [&](Generator& init) -> nn::Module& {
    model = make_cifar_model(c.model, train.channels, init);  // on the CPU: the same weights on every device
    model->to(dev);
    return *model;
  };
  ex.begin_epoch = [&](int64_t epoch) { train_loader.set_epoch(epoch); };
  ex.step = [&](int64_t, int64_t b) {
    return classify_batch(forward, train_loader.batch(b));  // x: F32 [B, C, 32, 32], y: I64 [B]
  };
  ex.evaluate = [&] {
    json eval = val_loader ? evaluate_classifier(forward, *val_loader, "val") : json::object();
    eval.update(evaluate_classifier(forward, test_loader, "test"));
    return eval;
  };
  ex.paper = c.model == "densenet121" ? kPaperDenseNet121 : kPaperResNet34;
  ex.paper_caption = std::string("best test accuracy of ") + (c.model == "densenet121" ? "DenseNet-121" : "ResNet-34") +
                     " on the full CIFAR-10, 200 epochs, from the authors' released curves" +
                     (data.dataset == "cifar10" && c.paper && c.model != "resnet20"
                          ? ""
                          : "; this run (" + data.title + ", " + c.model + ", " + schedule +
                                ") is not comparable with it");
  return run_experiment(c, runs, ex);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "cifar: the AdaBound paper's CIFAR-10 experiment. Trains a ResNet or DenseNet with each optimizer from the "
      "same initial weights on the same (augmented) batches, and writes per-epoch JSON lines, checkpoints and a "
      "summary beside the paper's numbers."};
  app.get_formatter()->column_width(34);
  Config c;
  c.epochs = kCpuEpochs;
  c.out = "results/cifar10";
  add_common_flags(app, c);
  app.add_option("--model", c.model, "resnet20 (the CPU default), resnet34 (the paper; --paper's default) or "
                                     "densenet121")->capture_default_str();
  app.add_flag("--paper", c.paper,
               "the paper's protocol: 200 epochs, lr /10 after epoch 150, all images, ResNet-34 (flags given "
               "explicitly still apply)");
  app.add_option("--batch", c.batch, "batch size")->capture_default_str();
  app.add_option("--data", c.data, "CIFAR-10 binary version: the directory with data_batch_1..5.bin and test_batch.bin "
                                   "(or its parent)");
  app.add_option("--dataset", c.dataset,
                 "cifar10, fashion-mnist or auto (CIFAR-10 when --data has it, else Debian's Fashion-MNIST)")
      ->capture_default_str();
  app.add_option("--train-limit", c.train_limit, "use only the first N training images (0: all)")
      ->capture_default_str();
  app.add_option("--test-limit", c.test_limit, "use only the first N test images (0: all)")->capture_default_str();
  app.add_option("--records-per-file", c.records_per_file,
                 "records each CIFAR-10 file must hold (0: any, for partial copies and tests)")
      ->capture_default_str();
  app.add_option("--weight-decay", c.weight_decay, "weight decay of the default optimizer specs")
      ->capture_default_str();
  app.add_flag("--no-augment", c.no_augment, "no random crop and flip");
  app.add_flag("--sync-bn", c.sync_bn,
               "under mpirun: BatchNorm statistics over the global batch (default: each rank's slice, as PyTorch)");
  app.add_option("--eval-batch", c.eval_batch, "batch size of the evaluation")->capture_default_str();
  add_device_flags(app, c);
  app.add_option("--prefetch", c.prefetch,
                 "on, off or auto (on for a device other than the CPU): make the next batch on a thread while one "
                 "trains")
      ->capture_default_str();
  return main_of("cifar", app, argc, argv, [&] { return run(c, app); });
}
