// lr_heatmap: the numbers of the AdaBound paper's figure 1 from a trained network's Adam checkpoint.
//
// The figure shows, for Adam at the end of training (ResNet-34 on CIFAR-10 in the paper), the effective
// learning rate lr / (1 - beta1^t) / (sqrt(v_t) / sqrt(1 - beta2^t) + eps) of each element of nine 3x3
// kernels taken from different conv layers and of the last linear layer's bias, on a log colour scale:
// some rates are tiny (< 0.01), some huge (> 1000): the extremes AdaBound's bounds cut off.
//
// Any adaptive optimizer's checkpoint works (Optimizer::effective_lr: AdaGrad, the Adam family, and the
// AdaBound family after clipping, which shows the bounds at work); the paper's figure is Adam's.
//
// Input: a checkpoint of tools/cifar (model, optimizer state and, in its metadata, the model name, input
// channels and optimizer spec), e.g. results/lr-heatmap/adam.ckpt. The nine conv layers are spread evenly
// over the network's 3x3 convs in order (first and last included); the kernel (out channel, in channel) of
// each is drawn with --seed. Output: one JSON file (--out) with the rates, the thresholds, how many fall
// beyond them, and the same fractions over every element of the network; tools/plot heatmap draws it.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "cifar_model.hpp"
#include "experiment.hpp"

using namespace tapegrad;
using namespace tapegrad::tools;
namespace fs = std::filesystem;

namespace {

struct Config : DeviceConfig {
  std::string checkpoint;
  std::string out;
  int64_t kernels = 9;
  uint64_t seed = 1;
  double low = 0.01, high = 1000.0;
};

std::string meta_value(const Metadata& meta, const std::string& key, const std::string& path) {
  const auto it = meta.find(key);
  TG_CHECK(it != meta.end(), "--checkpoint ", path, ": no '", key,
           "' in its metadata: not a checkpoint of tools/cifar (which records model, in_channels and spec)");
  return it->second;
}

int run(const Config& c) {
  TG_CHECK(!c.checkpoint.empty(), "--checkpoint: which checkpoint? (e.g. results/lr-heatmap/adam.ckpt)");
  TG_CHECK(c.kernels >= 1, "--kernels ", c.kernels, ": must be at least 1");
  TG_CHECK(c.low > 0 && c.high > c.low, "--low ", c.low, " / --high ", c.high, ": need 0 < low < high");
  Metadata meta;
  load_safetensors(c.checkpoint, &meta);  // missing, truncated, corrupted: refused here, naming the file
  const std::string model_name = meta_value(meta, "model", c.checkpoint);
  const std::string spec = meta_value(meta, "spec", c.checkpoint);
  const int64_t in_channels = std::stoll(meta_value(meta, "in_channels", c.checkpoint));

  // A checkpoint of any device loads on any device: the rates are computed where the state is.
  const Device dev = choose_device(c, meta.count("dataset") && meta.at("dataset") == "cifar10");
  Generator gen(0);
  auto model = make_cifar_model(model_name, in_channels, gen, "checkpoint model");
  model->to(dev);
  auto opt = optim::make(spec, model->parameters());
  load_checkpoint(c.checkpoint, *model, opt.get());
  const auto named = model->named_parameters();

  // Every 3x3 conv weight [O, I, 3, 3] in order, and the classifier's bias.
  std::vector<size_t> convs;
  int64_t bias = -1;
  for (size_t i = 0; i < named.size(); ++i) {
    const Tensor& p = named[i].second;
    if (p.dim() == 4 && p.size(2) == 3 && p.size(3) == 3) convs.push_back(i);
    if (named[i].first == "linear.bias") bias = static_cast<int64_t>(i);
  }
  TG_CHECK(static_cast<int64_t>(convs.size()) >= c.kernels, "--kernels ", c.kernels, ": ", model_name, " has only ",
           convs.size(), " 3x3 conv layers");
  TG_CHECK(bias >= 0, "checkpoint ", c.checkpoint, ": model ", model_name, " has no 'linear.bias'");
  const Tensor probe = opt->effective_lr(convs.front());
  TG_CHECK(probe.defined(), "checkpoint ", c.checkpoint, ": optimizer '", spec,
           "' has no per-element effective learning rate (AdaGrad and the Adam and AdaBound families have; "
           "the paper's figure is Adam's: train with --optim adam), or it has not taken a step");

  json kernels = json::array();
  int64_t below = 0, above = 0, count = 0;
  double lo = 1e300, hi = 0;
  auto tally = [&](double v) {
    below += v < c.low, above += v > c.high, ++count;
    lo = std::min(lo, v), hi = std::max(hi, v);
  };
  Generator pick(c.seed);
  for (int64_t k = 0; k < c.kernels; ++k) {
    // Layer k of `kernels` spread evenly over the convs: the first, ..., the last.
    const size_t layer = c.kernels == 1 ? 0 : static_cast<size_t>(k * (static_cast<int64_t>(convs.size()) - 1) /
                                                                 (c.kernels - 1));
    const size_t index = convs[layer];
    const Tensor& w = named[index].second;                     // [O, I, 3, 3]
    const int64_t o = pick.randint(w.size(0)), in = pick.randint(w.size(1));
    const std::vector<double> rate = opt->effective_lr(index).to_vector<double>();
    json rows = json::array();
    for (int64_t r = 0; r < 3; ++r) {
      json row = json::array();
      for (int64_t col = 0; col < 3; ++col) {
        const double v = rate[static_cast<size_t>(((o * w.size(1) + in) * 3 + r) * 3 + col)];
        row.push_back(v);
        tally(v);
      }
      rows.push_back(row);
    }
    kernels.push_back({{"param", named[index].first}, {"param_index", index}, {"layer", layer + 1},
                       {"out_channel", o}, {"in_channel", in}, {"lr", rows}});
  }
  const std::vector<double> bias_rate = opt->effective_lr(static_cast<size_t>(bias)).to_vector<double>();
  for (double v : bias_rate) tally(v);

  // The same thresholds over every element of every parameter, for context.
  int64_t all = 0, all_below = 0, all_above = 0;
  for (size_t i = 0; i < named.size(); ++i) {
    const Tensor rate = opt->effective_lr(i);
    if (!rate.defined()) continue;
    for (double v : rate.to_vector<double>()) all_below += v < c.low, all_above += v > c.high, ++all;
  }

  json j = {{"checkpoint", c.checkpoint},
            {"model", model_name},
            {"dataset", meta.count("dataset") ? meta.at("dataset") : ""},
            {"optimizer", opt->describe()},
            {"epoch", meta.count("epoch") ? std::stoll(meta.at("epoch")) : 0},
            {"step", opt->steps()},
            {"conv_layers", convs.size()},
            {"low", c.low},
            {"high", c.high},
            {"kernels", kernels},
            {"bias", {{"param", named[static_cast<size_t>(bias)].first}, {"param_index", bias}, {"lr", bias_rate}}},
            {"sampled", {{"count", count}, {"min", lo}, {"max", hi}, {"below_low", below}, {"above_high", above}}},
            {"all_elements",
             {{"count", all},
              {"below_low_fraction", static_cast<double>(all_below) / std::max<int64_t>(all, 1)},
              {"above_high_fraction", static_cast<double>(all_above) / std::max<int64_t>(all, 1)}}}};
  const std::string out = c.out.empty() ? (fs::path(c.checkpoint).parent_path() / "lr_heatmap.json").string() : c.out;
  if (!fs::path(out).parent_path().empty()) fs::create_directories(fs::path(out).parent_path());
  write_file_atomically(out, j.dump(1) + "\n");

  std::cout << "effective learning rates of Adam (" << model_name << ", epoch " << j["epoch"] << ", step "
            << opt->steps() << "): " << c.kernels << " 3x3 kernels and " << bias_rate.size() << " bias elements\n";
  for (const json& k : kernels)
    std::cout << "  " << k["param"].get<std::string>() << " [" << k["out_channel"] << ", " << k["in_channel"]
              << "]: " << fmt("%.3g", k["lr"][0][0].get<double>()) << " ... "
              << fmt("%.3g", k["lr"][2][2].get<double>()) << '\n';
  std::cout << "sampled: " << count << " rates from " << fmt("%.3g", lo) << " to " << fmt("%.3g", hi) << "; " << below
            << " below " << fmt("%g", c.low) << ", " << above << " above " << fmt("%g", c.high) << "\n"
            << "all " << all << " elements: " << fmt("%.2f%%", 100.0 * all_below / std::max<int64_t>(all, 1))
            << " below " << fmt("%g", c.low) << ", " << fmt("%.4f%%", 100.0 * all_above / std::max<int64_t>(all, 1))
            << " above " << fmt("%g", c.high) << "\n"
            << out << '\n';
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"lr_heatmap: per-element effective learning rates of Adam in nine 3x3 kernels of different conv "
               "layers and the last linear layer's bias (the AdaBound paper's figure 1), from a tools/cifar "
               "checkpoint, as JSON (tools/plot heatmap draws it)."};
  app.get_formatter()->column_width(30);
  Config c;
  app.add_option("--checkpoint", c.checkpoint, "an Adam checkpoint written by tools/cifar")->required();
  app.add_option("--out", c.out, "the JSON file (default: lr_heatmap.json beside the checkpoint)");
  app.add_option("--kernels", c.kernels, "3x3 kernels to sample, from as many conv layers")->capture_default_str();
  app.add_option("--seed", c.seed, "seed of the kernel choice")->capture_default_str();
  app.add_option("--low", c.low, "rates below this are marked")->capture_default_str();
  app.add_option("--high", c.high, "rates above this are marked")->capture_default_str();
  add_device_flags(app, c);
  return main_of("lr_heatmap", app, argc, argv, [&] { return run(c); });
}
