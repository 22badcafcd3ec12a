// Optimizer: the base of every update rule. It owns the parameter groups, each group's learning rate and
// the per-parameter step counts; each algorithm adds its options (one set per group), its typed
// per-parameter state and one update() that calls its fused kernel (the optimizer entries of
// src/kernels.inc) once for all the parameters of a group.
//
// Parameter groups, as in torch.optim: the constructor makes group 0 from its parameters, lr and options;
// add_param_group() (on each algorithm) adds more, each with its own lr and options (e.g. no weight decay
// on biases and BatchNorm). params() is the concatenation of the groups in order; a parameter's index in it
// is its key in state_dict(): "0.step", "0.exp_avg", ..., plus "lr" and "initial_lr" (group 0) and
// "group<g>.lr", "group<g>.initial_lr", "group<g>.params" (groups g >= 1). State is created at a
// parameter's first step (as torch does), with the parameter's dtype. A checkpoint therefore belongs to
// an optimizer built over the same groups of the same parameters in the same order.
//
// The learning rate is the only hyperparameter that changes during training: schedulers call
// set_lr() between steps; initial_lr(g) stays the lr group g was given (AdaBound scales its final_lr by
// lr(g) / initial_lr(g), as the reference does with its base_lrs).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "tapegrad/nn/module.hpp"
#include "tapegrad/tensor.hpp"

namespace tapegrad::optim {

// Telemetry: the distribution over one parameter tensor's elements of the effective per-element learning
// rate of the last step (the factor that multiplies the first moment, or the gradient for AdaGrad).
// Quantiles interpolate linearly between order statistics (numpy's default).
struct LrQuantiles {
  double min = 0, p5 = 0, p25 = 0, median = 0, p75 = 0, p95 = 0, max = 0;
};
// The quantiles of values (any order; empty gives zeros).
LrQuantiles lr_quantiles(std::vector<double> values);

struct LrStats {
  size_t param = 0;  // index in params()
  size_t group = 0;  // its parameter group
  int64_t step = 0;  // the parameter's step count: the figures are those of that step
  LrQuantiles lr;    // the rate that was applied (AdaBound / AMSBound: after clamping)
  // AdaBound / AMSBound / AdaBoundW only (bounded == true): the rate before clamping, the bounds of that
  // step, and the fractions of the elements clamped up to the lower bound and down to the upper bound.
  bool bounded = false;
  LrQuantiles lr_unclamped;
  double lower_bound = 0, upper_bound = 0, frac_at_lower = 0, frac_at_upper = 0;
};

class Optimizer {
 public:
  virtual ~Optimizer();
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every parameter whose grad() is defined (others are skipped and keep their step
  // count), under NoGradGuard: one kernel call per group (per step count, should some parameters of a
  // group have skipped steps). Throws before changing anything if a gradient's shape, dtype or device
  // differs from its parameter's, or a parameter's dtype changed since its state was created.
  void step();
  // Drops every parameter's gradient (p.zero_grad()).
  void zero_grad();

  // Learning rates: lr() and initial_lr() are group 0's; set_lr(lr) sets every group's.
  double lr() const { return lr(0); }
  double lr(size_t group) const;
  void set_lr(double lr);  // lr >= 0 and finite
  void set_lr(size_t group, double lr);
  double initial_lr() const { return initial_lr(0); }
  double initial_lr(size_t group) const;

  const std::string& name() const { return name_; }  // "sgd", "adam", "amsgrad", "adaboundw", ...
  const std::vector<Tensor>& params() const { return params_; }
  size_t num_groups() const { return groups_.size(); }
  const std::string& group_name(size_t group) const;  // "0", "1", ... unless named (optim::make)
  void set_group_name(size_t group, std::string name);  // unique, not empty, none of the characters ;:,=
  const std::vector<size_t>& group_params(size_t group) const;  // indices into params()
  size_t group_of(size_t i) const;
  // Steps taken by parameter i (its state's "step"); steps() is the largest over all parameters.
  int64_t steps(size_t i) const;
  int64_t steps() const;

  // The resolved hyperparameters as a spec that optim::make() accepts and that rebuilds this optimizer
  // with the current lrs: "adam:lr=0.001,betas=0.9/0.999,eps=1e-08,weight_decay=0,amsgrad=false", and
  // for each group g >= 1 ";NAME:lr=...,..." with all of its keys.
  std::string describe() const;

  // See the top of this file; tensors are copies (state: the parameter's dtype and shape; the rest F64
  // scalars).
  virtual TensorDict state_dict() const;
  // Restores what state_dict() saved, by copy: afterwards step() continues the saved trajectory bit for
  // bit. Errors name the optimizer and the key: missing keys, unexpected keys, shape mismatches,
  // parameter indices out of range, another grouping. Nothing changes unless the whole dict is valid.
  virtual void load_state_dict(const TensorDict& dict);

  // Telemetry, on request only (it copies and sorts each state tensor; step() never computes it): for each
  // parameter that has taken a step, the distribution of the effective per-element learning rate of its
  // last step. Adaptive optimizers (AdaGrad, the Adam and AdaBound families) override it; the default, for
  // SGD, is empty.
  virtual std::vector<LrStats> lr_telemetry() const { return {}; }
  // The same per element, on request: parameter i's effective learning rate of its last step as an F64
  // tensor of the parameter's shape (what lr_telemetry() summarises; the paper's figure 1 draws it), with
  // its group's hyperparameters and current lr. AdaGrad: lr_t / (sqrt(sum) + eps); the Adam family: as in
  // lr_telemetry(); the AdaBound family: the rate after clipping into its bounds. Undefined when
  // parameter i has not stepped yet or the optimizer has no such rate (SGD).
  virtual Tensor effective_lr(size_t i) const;

 protected:
  // Group 0. params: float leaves, no duplicates. lr: its initial learning rate, checked >= 0.
  Optimizer(std::string name, std::vector<Tensor> params, double lr);
  // Appends a group (the same checks, and no parameter may already be in another group); returns its
  // index. The algorithm stores the group's options at that index before or after.
  size_t add_group(std::vector<Tensor> params, double lr, std::string name);

  // Creates parameter i's state (zeros or the initial accumulator) for parameter p.
  virtual void init_state(size_t i, const Tensor& p) = 0;
  // Parameter i's state tensors by name, in a fixed order (empty when the algorithm keeps none, as
  // SGD without momentum): handles to the live state, so copy_() into them restores it. Called only
  // once the state exists.
  virtual std::vector<std::pair<std::string, Tensor>> state_tensors(size_t i) const = 0;
  // One update of the parameters `index` (indices into params(), all in group `group`, all at step
  // number `step`, 1-based) with their gradients `grads` (same order, checked).
  virtual void update(size_t group, const std::vector<size_t>& index, const std::vector<Tensor>& grads,
                      int64_t step) = 0;
  // Group g's "key=value" pairs after the lr in describe().
  virtual std::vector<std::pair<std::string, std::string>> hparams(size_t group) const = 0;

  // Error message prefix and validation helpers for the constructors: throw Error naming the optimizer,
  // the key, the value and the accepted range.
  void check_range(const char* key, double value, double lo, bool lo_open, double hi, bool hi_open) const;
  void check_nonnegative(const char* key, double value) const;
  // Throws Error naming the optimizer, `what` and the number of groups unless group < num_groups().
  void check_group(size_t group, const char* what) const;

  std::string name_;

 private:
  struct Group {
    std::string name;
    std::vector<size_t> params;  // indices into params_
    double lr = 0, initial_lr = 0;
  };

  std::vector<Tensor> params_;
  std::vector<size_t> group_of_;
  std::vector<int64_t> steps_;  // 0: no state yet
  std::vector<Group> groups_;
};

// Formats a double in the shortest form that reads back exactly, as %g would ("0.001", "0.0005", "1e-08").
std::string format_number(double v);

}  // namespace tapegrad::optim
