// custom_module: a model of one's own, trained, saved and restored exactly.
//
// Residual is a Layer with a parameter of its own ("gain") and two Linear children; Classifier stacks two of
// them between an input and an output layer. Registration by name gives the dotted names of the checkpoint
// ("blocks.1.fc2.weight"). The program trains the classifier on two interleaved spirals, saves model and
// optimizer to a checkpoint, builds a fresh model and optimizer from another seed, loads the checkpoint into
// them, and checks that they predict the same and that one more epoch on each gives the same parameters bit
// for bit (what exact resume means). Exit code 0 on success, 1 otherwise.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <numbers>
#include <string>
#include <vector>

#include <tapegrad/datasets/loader.hpp>
#include <tapegrad/tapegrad.hpp>

namespace tg = tapegrad;

// x + gain * fc2(relu(fc1(x))): x [B, width] -> [B, width].
class Residual : public tg::nn::Layer {
 public:
  Residual(int64_t width, tg::Generator& gen) : Layer("Residual") {
    fc1 = register_module("fc1", std::make_shared<tg::nn::Linear>(width, width, true, gen));
    fc2 = register_module("fc2", std::make_shared<tg::nn::Linear>(width, width, true, gen));
    gain = register_parameter("gain", tg::full({1}, 0.5));
  }
  tg::Tensor forward(const tg::Tensor& x) override { return x + gain * (*fc2)(tg::relu((*fc1)(x))); }

  std::shared_ptr<tg::nn::Linear> fc1, fc2;
  tg::Tensor gain;
};

// x [B, 2] -> logits [B, 2].
class Classifier : public tg::nn::Layer {
 public:
  explicit Classifier(tg::Generator& gen) : Layer("Classifier") {
    in = register_module("in", std::make_shared<tg::nn::Linear>(2, 32, true, gen));
    blocks = register_module("blocks", std::make_shared<tg::nn::Sequential>());
    for (int k = 0; k < 2; ++k) blocks->push_back(std::make_shared<Residual>(32, gen));
    out = register_module("out", std::make_shared<tg::nn::Linear>(32, 2, true, gen));
  }
  tg::Tensor forward(const tg::Tensor& x) override { return (*out)((*blocks)(tg::tanh((*in)(x)))); }

  std::shared_ptr<tg::nn::Linear> in, out;
  std::shared_ptr<tg::nn::Sequential> blocks;
};

// Two spirals of n points each, class 0 and class 1, with a little noise.
static std::shared_ptr<tg::datasets::TensorDataset> spirals(int64_t n, tg::Generator& gen) {
  std::vector<float> x;
  std::vector<int64_t> y;
  for (int64_t c = 0; c < 2; ++c)
    for (int64_t i = 0; i < n; ++i) {
      const double t = 0.25 + 2.5 * std::numbers::pi * static_cast<double>(i) / static_cast<double>(n);
      const double angle = t + std::numbers::pi * static_cast<double>(c);
      x.push_back(static_cast<float>(t / 4 * std::cos(angle) + gen.normal(0, 0.03)));
      x.push_back(static_cast<float>(t / 4 * std::sin(angle) + gen.normal(0, 0.03)));
      y.push_back(c);
    }
  return std::make_shared<tg::datasets::TensorDataset>(tg::from_vector(x, {2 * n, 2}), tg::from_vector(y, {2 * n}),
                                                        "spirals");
}

static void train_epoch(Classifier& model, tg::optim::Optimizer& opt, tg::datasets::DataLoader& loader, int64_t epoch) {
  loader.set_epoch(epoch);
  for (int64_t b = 0; b < loader.num_batches(); ++b) {
    const tg::datasets::Batch batch = loader.batch(b);  // x [32, 2], y [32]
    opt.zero_grad();
    tg::cross_entropy(model(batch.x), batch.y).backward();
    opt.step();
  }
}

static bool same(const tg::TensorDict& a, const tg::TensorDict& b) {
  if (a.size() != b.size()) return false;
  for (const auto& [name, t] : a)
    if (!b.count(name) || t.to_vector<double>() != b.at(name).to_vector<double>()) return false;
  return true;
}

int main() {
  tg::Generator gen(3);
  const auto data = spirals(256, gen);
  tg::datasets::DataLoader loader(data, {.batch_size = 32, .seed = 11});
  Classifier model(gen);
  auto opt = tg::optim::make("adam:lr=1e-2", model.parameters());
  const int64_t epochs = 40;
  for (int64_t e = 0; e < epochs; ++e) train_epoch(model, *opt, loader, e);

  tg::datasets::DataLoader all_loader(data, {.batch_size = data->size(), .shuffle = false});
  const tg::datasets::Batch all = all_loader.batch(0);
  double accuracy = 0;
  {
    tg::NoGradGuard no_grad;
    const auto predicted = tg::argmax(model(all.x), 1).to_vector<int64_t>();
    const auto labels = all.y.to_vector<int64_t>();
    for (size_t i = 0; i < labels.size(); ++i) accuracy += predicted[i] == labels[i];
    accuracy /= static_cast<double>(labels.size());
  }
  std::printf("custom_module: %lld parameters in %zu tensors (%s, ...), training accuracy %.1f%%\n",
              static_cast<long long>(model.num_parameters()), model.named_parameters().size(),
              model.named_parameters()[2].first.c_str(), 100 * accuracy);

  // Save, then restore into a model and an optimizer built from another seed.
  const std::string path =
      (std::filesystem::temp_directory_path() / ("tapegrad_example_" + std::to_string(::getpid()) + ".safetensors"))
          .string();
  tg::save_checkpoint(path, model, opt.get(), {{"epoch", std::to_string(epochs)}});
  tg::Generator other(99);
  Classifier restored(other);
  auto restored_opt = tg::optim::make("adam:lr=1e-2", restored.parameters());
  const tg::Metadata meta = tg::load_checkpoint(path, restored, restored_opt.get());
  std::filesystem::remove(path);

  bool ok = accuracy > 0.95 && meta.at("epoch") == std::to_string(epochs) &&
            same(model.state_dict(), restored.state_dict());
  {
    tg::NoGradGuard no_grad;
    ok = ok && model(all.x).to_vector<float>() == restored(all.x).to_vector<float>();
  }
  // One more epoch on each: the optimizer's moments and step counts came back too, so they stay identical.
  train_epoch(model, *opt, loader, epochs);
  train_epoch(restored, *restored_opt, loader, epochs);
  const bool resumed = same(model.state_dict(), restored.state_dict());
  std::printf("checkpoint: restored model predicts the same: %s; one more epoch on both, same parameters: %s\n",
              ok ? "yes" : "no", resumed ? "yes" : "no");
  if (!(ok && resumed)) {
    std::printf("FAILED: accuracy should exceed 95%% and the restored run should match bit for bit\n");
    return 1;
  }
  return 0;
}
