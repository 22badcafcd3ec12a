// The CIFAR models' training step (zero_grad, forward, cross-entropy, backward, SGD-momentum step) on random
// 32x32 images: ResNet-20 by default, the other models by --model. One JSON line like bench_mlp's.
//
//   bench_cnn [--threads 2] [--model resnet20] [--batch 128] [--repeats 3]
#include <CLI/CLI.hpp>
#include <iostream>

#include "bench.hpp"
#include "tapegrad/models/densenet.hpp"
#include "tapegrad/models/resnet.hpp"
#include "tapegrad/tapegrad.hpp"

namespace tg = tapegrad;

int main(int argc, char** argv) {
  CLI::App app{"tapegrad CNN step benchmark"};
  int threads = 2, repeats = 3, batch = 128;
  std::vector<std::string> models{"resnet20"};
  app.add_option("--threads", threads, "OpenMP threads");
  app.add_option("--model", models, "resnet20, resnet34, densenet121");
  app.add_option("--repeats", repeats, "timed blocks");
  app.add_option("--batch", batch, "batch size");
  CLI11_PARSE(app, argc, argv);
  try {
    tg::set_num_threads(threads);
    bench::json results = bench::json::array();
    for (const auto& name : models) {
      tg::Generator gen(0);
      std::shared_ptr<tg::nn::Layer> model;
      if (name == "resnet20") model = tg::models::resnet20(10, gen);
      else if (name == "resnet34") model = tg::models::resnet34(10, gen);
      else if (name == "densenet121") model = tg::models::densenet121(10, gen);
      else TG_FAIL("bench_cnn: unknown model '", name, "' (resnet20, resnet34, densenet121)");
      tg::Tensor x = tg::randn({batch, 3, 32, 32}, gen);
      tg::Tensor y = tg::randint(10, {batch}, gen);
      auto opt = tg::optim::make("sgd:lr=0.1,momentum=0.9", model->parameters());
      auto step = [&] {
        opt->zero_grad();
        tg::cross_entropy(model->forward(x), y).backward();
        opt->step();
      };
      auto secs = bench::time_blocks(step, repeats, 2, 0.0);
      std::string id = name + "_train_b" + std::to_string(batch);
      results.push_back(bench::summarize(id, secs, {{"steps_per_s", 1.0}, {"samples_per_s", double(batch)}},
                                         {{"model", name}, {"batch", batch}, {"optim", "sgdm"}}));
      bench::progress(id + ": " + std::to_string(int(batch / bench::median(secs))) + " samples/s");
    }
    std::cout << bench::json{{"bench", "cnn_step"}, {"meta", bench::meta()}, {"results", results}}.dump() << "\n";
  } catch (const tg::Error& e) {
    std::cerr << "bench_cnn: " << e.what() << "\n";
    return 2;
  }
}
