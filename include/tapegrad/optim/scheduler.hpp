// Learning-rate schedulers, stepped once per epoch after the epoch's optimizer steps, as in torch:
//
//   StepLR sched(opt, 30, 0.1);
//   for (int epoch = 0; epoch < 90; ++epoch) { train_one_epoch(opt); sched.step(); }
//
// Reference: torch.optim.lr_scheduler (PyTorch 1.13), chainable form: each step() multiplies the
// optimizer's current lr by gamma when last_epoch reaches a boundary, so the lrs are bit-identical
// to torch's. Construction leaves the lr as it is (torch's epoch 0). The scheduler keeps a reference
// to the optimizer, which must outlive it.
#pragma once

#include <cstdint>
#include <vector>

#include "tapegrad/optim/optimizer.hpp"

namespace tapegrad::optim {

// lr = initial lr * gamma^floor(epoch / step_size).
class StepLR {
 public:
  StepLR(Optimizer& opt, int64_t step_size, double gamma = 0.1);
  void step();
  int64_t last_epoch() const { return last_epoch_; }
  void set_last_epoch(int64_t e) { last_epoch_ = e; }  // when resuming (the lr comes from the optimizer)

 private:
  Optimizer& opt_;
  int64_t step_size_;
  double gamma_;
  int64_t last_epoch_ = 0;
};

// lr = initial lr * gamma^(number of milestones <= epoch). Milestones may repeat (each counts).
class MultiStepLR {
 public:
  MultiStepLR(Optimizer& opt, std::vector<int64_t> milestones, double gamma = 0.1);
  void step();
  int64_t last_epoch() const { return last_epoch_; }
  void set_last_epoch(int64_t e) { last_epoch_ = e; }

 private:
  Optimizer& opt_;
  std::vector<int64_t> milestones_;
  double gamma_;
  int64_t last_epoch_ = 0;
};

}  // namespace tapegrad::optim
