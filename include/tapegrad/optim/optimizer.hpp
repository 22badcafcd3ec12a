// Optimizer: the base of every update rule. It owns the parameter list, the learning rate and the
// per-parameter step counts; each algorithm adds its options, its typed per-parameter state and one
// update() that calls its fused kernel (src/optim_kernels.hpp).
//
// One parameter group: every parameter shares the hyperparameters. State is created at a parameter's
// first step (as torch does), with the parameter's dtype, and indexed by the parameter's position in
// params(), which is also its key in state_dict(): "0.step", "0.exp_avg", ..., plus "lr" and
// "initial_lr". A checkpoint therefore belongs to an optimizer built over the same parameter list in
// the same order (what Module::parameters() gives).
//
// The learning rate is the only hyperparameter that changes during training: schedulers call
// set_lr() between steps; initial_lr() stays the lr given at construction (AdaBound scales its
// final_lr by lr() / initial_lr(), as the reference does).
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
  // count), under NoGradGuard. Throws before changing anything if a gradient's shape, dtype or device
  // differs from its parameter's, or a parameter's dtype changed since its state was created.
  void step();
  // Drops every parameter's gradient (p.zero_grad()).
  void zero_grad();

  double lr() const { return lr_; }
  void set_lr(double lr);  // lr >= 0 and finite
  double initial_lr() const { return initial_lr_; }
  const std::string& name() const { return name_; }  // "sgd", "adam", "amsgrad", "adaboundw", ...
  const std::vector<Tensor>& params() const { return params_; }
  // Steps taken by parameter i (its state's "step"); steps() is the largest over all parameters.
  int64_t steps(size_t i) const { return steps_.at(i); }
  int64_t steps() const;

  // The resolved hyperparameters as a spec that optim::make() accepts and that rebuilds this optimizer
  // with the current lr: "adam:lr=0.001,betas=0.9/0.999,eps=1e-08,weight_decay=0,amsgrad=false".
  std::string describe() const;

  // "lr", "initial_lr" (F64 scalars) and, for each parameter that has state, "<i>.step" (F64 scalar)
  // and "<i>.<state name>" (copies, the parameter's dtype and shape).
  virtual TensorDict state_dict() const;
  // Restores what state_dict() saved, by copy: afterwards step() continues the saved trajectory bit for
  // bit. Errors name the optimizer and the key: missing keys, unexpected keys, shape mismatches,
  // parameter indices out of range. Nothing changes unless the whole dict is valid.
  virtual void load_state_dict(const TensorDict& dict);

  // Telemetry, on request only (it copies and sorts each state tensor; step() never computes it): for each
  // parameter that has taken a step, the distribution of the effective per-element learning rate of its
  // last step. Adaptive optimizers (AdaGrad, the Adam and AdaBound families) override it; the default, for
  // SGD, is empty.
  virtual std::vector<LrStats> lr_telemetry() const { return {}; }
  // The same per element, on request: parameter i's effective learning rate of its last step as an F64
  // tensor of the parameter's shape (what lr_telemetry() summarises; the paper's figure 1 draws it).
  // AdaGrad: lr / (sqrt(sum) + eps); the Adam family: as in lr_telemetry(); the AdaBound family: the rate
  // after clipping into its bounds. Undefined when parameter i has not stepped yet or the optimizer has no
  // such rate (SGD).
  virtual Tensor effective_lr(size_t i) const;

 protected:
  // params: float leaves, no duplicates. lr: the initial learning rate, checked >= 0.
  Optimizer(std::string name, std::vector<Tensor> params, double lr);

  // Creates parameter i's state (zeros or the initial accumulator) for parameter p.
  virtual void init_state(size_t i, const Tensor& p) = 0;
  // Parameter i's state tensors by name, in a fixed order (empty when the algorithm keeps none, as
  // SGD without momentum): handles to the live state, so copy_() into them restores it. Called only
  // once the state exists.
  virtual std::vector<std::pair<std::string, Tensor>> state_tensors(size_t i) const = 0;
  // One update of parameter i with gradient g; step is this parameter's step number, 1-based.
  virtual void update(size_t i, Tensor& p, const Tensor& g, int64_t step) = 0;
  // "key=value" pairs after the name in describe(), lr excluded.
  virtual std::vector<std::pair<std::string, std::string>> hparams() const = 0;

  // Error message prefix and validation helpers for the constructors: throw Error naming the optimizer,
  // the key, the value and the accepted range.
  void check_range(const char* key, double value, double lo, bool lo_open, double hi, bool hi_open) const;
  void check_nonnegative(const char* key, double value) const;

  std::string name_;

 private:
  std::vector<Tensor> params_;
  std::vector<int64_t> steps_;  // 0: no state yet
  double lr_, initial_lr_;
};

// Formats a double in the shortest form that reads back exactly, as %g would ("0.001", "0.0005", "1e-08").
std::string format_number(double v);

}  // namespace tapegrad::optim
