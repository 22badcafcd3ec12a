// Learning-rate schedulers, stepped once per epoch after the epoch's optimizer steps, as in torch:
//
//   StepLR sched(opt, 30, 0.1);
//   for (int epoch = 0; epoch < 90; ++epoch) { train_one_epoch(opt); sched.step(); }
//
// Reference: torch.optim.lr_scheduler (PyTorch 1.13), chainable form: each step() moves every parameter
// group's current lr by the rule of the new last_epoch, with the same floating-point operations, so the lrs
// are bit-identical to torch's (tests/data/optim_golden.json, "schedulers"). Construction leaves the lr as
// it is (torch's epoch 0), except LinearLR, which multiplies it by start_factor there as torch does.
// base lr of group g = the optimizer's initial_lr(g). A scheduler keeps a reference to the optimizer, which
// must outlive it. state_dict() holds what resuming needs ("last_epoch", and ReduceLROnPlateau's counters);
// save_checkpoint() stores it beside the optimizer's, whose state holds the lrs themselves.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tapegrad/optim/optimizer.hpp"

namespace tapegrad::optim {

class Scheduler {
 public:
  virtual ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  const std::string& name() const { return name_; }  // "StepLR", ...
  Optimizer& optimizer() const { return opt_; }
  int64_t last_epoch() const { return last_epoch_; }
  void set_last_epoch(int64_t e);  // e >= 0: resuming without a saved state (the lrs come from the optimizer)

  // F64 scalars: "last_epoch" and the subclass's counters. load_state_dict checks every key first.
  virtual TensorDict state_dict() const;
  virtual void load_state_dict(const TensorDict& dict);

 protected:
  Scheduler(std::string name, Optimizer& opt);
  // The subclass's extra state (name, value): read by state_dict, written by load_state_dict.
  virtual std::vector<std::pair<std::string, double*>> counters() { return {}; }

  std::string name_;
  Optimizer& opt_;
  int64_t last_epoch_ = 0;
};

// The schedulers that move the lr by the epoch number alone.
class EpochScheduler : public Scheduler {
 public:
  // One epoch ends: last_epoch + 1, and every group's lr becomes next_lr(group, its lr).
  void step();

 protected:
  using Scheduler::Scheduler;
  virtual double next_lr(size_t group, double lr) const = 0;  // at the new last_epoch
};

// lr = base lr * gamma^floor(epoch / step_size).
class StepLR : public EpochScheduler {
 public:
  StepLR(Optimizer& opt, int64_t step_size, double gamma = 0.1);

 protected:
  double next_lr(size_t group, double lr) const override;

 private:
  int64_t step_size_;
  double gamma_;
};

// lr = base lr * gamma^(number of milestones <= epoch). Milestones may repeat (each counts).
class MultiStepLR : public EpochScheduler {
 public:
  MultiStepLR(Optimizer& opt, std::vector<int64_t> milestones, double gamma = 0.1);

 protected:
  double next_lr(size_t group, double lr) const override;

 private:
  std::vector<int64_t> milestones_;
  double gamma_;
};

// lr = eta_min + (base lr - eta_min) (1 + cos(pi epoch / T_max)) / 2 (SGDR without restarts: past T_max
// the cosine goes on, back up to the base lr at 2 T_max), in torch's recursive form.
class CosineAnnealingLR : public EpochScheduler {
 public:
  CosineAnnealingLR(Optimizer& opt, int64_t T_max, double eta_min = 0);

 protected:
  double next_lr(size_t group, double lr) const override;

 private:
  int64_t T_max_;
  double eta_min_;
};

// Linear warm-up (or decay): the factor on the base lr goes from start_factor at epoch 0 to end_factor at
// total_iters and stays there. Construction multiplies the lr by start_factor (torch).
class LinearLR : public EpochScheduler {
 public:
  LinearLR(Optimizer& opt, double start_factor = 1.0 / 3, double end_factor = 1.0, int64_t total_iters = 5);

 protected:
  double next_lr(size_t group, double lr) const override;

 private:
  double start_factor_, end_factor_;
  int64_t total_iters_;
};

struct PlateauOptions {
  bool maximize = false;     // torch's mode: "min" (false) or "max"
  double factor = 0.1;       // lr = max(lr * factor, min_lr)
  int64_t patience = 10;     // epochs without improvement before a reduction
  double threshold = 1e-4;   // what counts as an improvement, relative (rel) or absolute
  bool relative = true;      // torch's threshold_mode: "rel" (true) or "abs"
  int64_t cooldown = 0;      // epochs after a reduction during which bad epochs are not counted
  std::vector<double> min_lr{0.0};  // one for every group, or one per group
  double eps = 1e-8;         // reductions smaller than this are skipped
};

// Reduces every group's lr by `factor` once the metric has not improved for more than `patience` epochs.
class ReduceLROnPlateau : public Scheduler {
 public:
  explicit ReduceLROnPlateau(Optimizer& opt, PlateauOptions options = {});
  void step(double metric);  // once per epoch, with the epoch's validation metric
  double best() const { return best_; }

 protected:
  std::vector<std::pair<std::string, double*>> counters() override;

 private:
  bool better(double a) const;
  PlateauOptions o_;
  double best_, num_bad_epochs_ = 0, cooldown_counter_ = 0;
};

}  // namespace tapegrad::optim
