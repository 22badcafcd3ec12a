// Parameter groups: the usual recipe of no weight decay on biases and BatchNorm parameters, as with
// torch.optim's param_groups. The weights of convolutions and linear layers (rank >= 2) decay; everything
// of rank 1 does not. A spec string gives the head's keys to every group and a section per group overrides
// them; a scheduler moves every group's lr; a checkpoint holds the optimizer and the scheduler.
//
//   param_groups            trains a small CNN on random data for a few steps and prints the groups
#include <cstdio>
#include <memory>

#include <tapegrad/tapegrad.hpp>

using namespace tapegrad;

int main() {
  Generator gen(0);
  nn::Sequential model({std::make_shared<nn::Conv2d>(3, 8, 3, 1, 1, true, gen), std::make_shared<nn::BatchNorm2d>(8),
                        std::make_shared<nn::ReLU>(), std::make_shared<nn::AdaptiveAvgPool2d>(),
                        std::make_shared<nn::Flatten>(), std::make_shared<nn::Linear>(8, 10, true, gen)});

  optim::ParamGroup decay{"decay", {}}, no_decay{"no_decay", {}};
  for (const auto& [name, p] : model.named_parameters()) {
    (p.dim() >= 2 ? decay : no_decay).params.push_back(p);
    std::printf("%-12s %-16s -> %s\n", name.c_str(), to_string(p.shape()).c_str(), p.dim() >= 2 ? "decay" : "no_decay");
  }
  auto opt = optim::make("sgdm:lr=0.1,weight_decay=5e-4; no_decay: weight_decay=0", {decay, no_decay});
  // The same with the typed API:
  //   optim::SGD opt(decay.params, 0.1, {.momentum = 0.9, .weight_decay = 5e-4});
  //   opt.add_param_group(no_decay.params, 0.1, {.momentum = 0.9}, "no_decay");
  optim::CosineAnnealingLR schedule(*opt, 10);

  Tensor x = randn({16, 3, 8, 8}, gen);
  std::vector<int64_t> labels(16);
  for (int64_t i = 0; i < 16; ++i) labels[i] = i % 10;
  Tensor y = from_vector(labels, {16});
  for (int epoch = 0; epoch < 5; ++epoch) {
    Tensor loss = cross_entropy(model(x), y);
    opt->zero_grad();
    loss.backward();
    opt->step();
    schedule.step();
    std::printf("epoch %d  loss %.4f  lr %g / %g\n", epoch, loss.item(), opt->lr(0), opt->lr(1));
  }
  std::printf("%s\n", opt->describe().c_str());
  save_checkpoint("param_groups.safetensors", model, {{opt.get()}, {&schedule}});
  std::printf("saved param_groups.safetensors (model, optimizer and scheduler)\n");
  return 0;
}
