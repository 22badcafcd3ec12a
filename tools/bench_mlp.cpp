// The perceptron's training step (zero_grad, forward, cross-entropy, backward, optimizer step) at
// batch 128 for 784-256-10 and 784-1000-10, and its evaluation forward pass; the same workload as
// ../shared/bench/mlp_step.py (PyTorch), with the same names, so the two sit side by side.
//
//   bench_mlp [--threads 2] [--hidden 256 1000] [--repeats 7]
#include <CLI/CLI.hpp>
#include <iostream>

#include "bench.hpp"
#include "tapegrad/models/mlp.hpp"
#include "tapegrad/tapegrad.hpp"

namespace tg = tapegrad;

int main(int argc, char** argv) {
  CLI::App app{"tapegrad MLP step benchmark"};
  int threads = 2, repeats = 7, batch = 128;
  std::vector<int64_t> hidden{256, 1000};
  std::vector<std::string> optims{"sgdm", "adam", "amsgrad", "adagrad", "adabound", "amsbound"};
  app.add_option("--threads", threads, "OpenMP threads");
  app.add_option("--hidden", hidden, "hidden sizes");
  app.add_option("--optims", optims, "optimizers");
  app.add_option("--repeats", repeats, "timed blocks");
  app.add_option("--batch", batch, "batch size");
  std::string device = "cpu";
  app.add_option("--device", device, "cpu, cuda or test");
  CLI11_PARSE(app, argc, argv);
  try {
    bench::start(threads);
    const tg::Device dev = tg::device_from_name(device);
    const std::map<std::string, std::string> specs{
        {"sgdm", "sgd:lr=0.01,momentum=0.9"}, {"adam", "adam:lr=1e-3"}, {"amsgrad", "amsgrad:lr=1e-3"},
        {"adagrad", "adagrad:lr=0.01"}, {"adabound", "adabound:lr=1e-3"}, {"amsbound", "amsbound:lr=1e-3"}};
    bench::json results = bench::json::array();
    for (int64_t H : hidden) {
      tg::Generator gen(0);
      tg::Tensor x = tg::randn({batch, 784}, gen, dev);
      tg::Tensor y = tg::randint(10, {batch}, gen, dev);
      std::shared_ptr<tg::models::MLP> model;
      for (const auto& name : optims) {
        model = std::make_shared<tg::models::MLP>(784, H, 10, gen);
        model->to(dev);
        auto opt = tg::optim::make(specs.at(name), model->parameters());
        auto step = [&] {
          opt->zero_grad();
          tg::Tensor loss = tg::cross_entropy(model->forward(x), y);
          loss.backward();
          opt->step();
          tg::synchronize(dev);  // a step counts when the device has done it
        };
        auto secs = bench::time_blocks(step, repeats, 20);
        std::string id = "mlp784-" + std::to_string(H) + "-10_train_" + name;
        results.push_back(bench::summarize(id, secs, {{"steps_per_s", 1.0}, {"samples_per_s", double(batch)}},
                                           {{"hidden", H}, {"batch", batch}, {"optim", name}, {"device", device}}));
        bench::progress(id + ": " + std::to_string(int(batch / bench::median(secs))) + " samples/s");
      }
      model->eval();
      for (int64_t eb : {int64_t{128}, int64_t{1000}}) {
        tg::Tensor xe = tg::randn({eb, 784}, gen, dev);
        auto secs = bench::time_blocks([&] {
          tg::NoGradGuard ng;
          model->forward(xe);
          tg::synchronize(dev);
        }, repeats, 20);
        std::string id = "mlp784-" + std::to_string(H) + "-10_eval_b" + std::to_string(eb);
        results.push_back(bench::summarize(id, secs, {{"batches_per_s", 1.0}, {"samples_per_s", double(eb)}},
                                           {{"hidden", H}, {"batch", eb}, {"device", device}}));
        bench::progress(id + ": " + std::to_string(int(eb / bench::median(secs))) + " samples/s");
      }
    }
    std::cout << bench::json{{"bench", "mlp_step"}, {"meta", bench::meta()}, {"results", results}}.dump() << "\n";
  } catch (const tg::Error& e) {
    std::cerr << "bench_mlp: " << e.what() << "\n";
    return 2;
  }
}
