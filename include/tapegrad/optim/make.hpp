// Optimizers from spec strings, for command lines and config files:
//
//   optim::make("adabound:lr=1e-3,final_lr=0.1,gamma=1e-3", model.parameters())
//
// Grammar: NAME[:KEY=VALUE[,KEY=VALUE]...]; spaces around tokens are ignored. Names and keys:
//   sgd, sgdm      lr (required), momentum (sgdm: default 0.9), dampening, nesterov, weight_decay
//   adagrad        lr, lr_decay, weight_decay, initial_accumulator_value, eps
//   adam, amsgrad, adamw             lr, betas, eps, weight_decay, amsgrad
//   adabound, amsbound, adaboundw    lr, betas, final_lr, gamma, eps, weight_decay, amsbound
// Keys and defaults are the reference implementations' (see each optimizer's header). Numbers are
// decimal ("1e-3", "0.9"); betas is "BETA1/BETA2"; booleans are true or false. Unknown names or keys,
// malformed values and repeated keys throw an Error that lists what is accepted. The constructor then
// checks the ranges. Optimizer::describe() prints a spec that rebuilds the same optimizer.
//
// Parameter groups: make(spec, {{"decay", weights}, {"no_decay", biases}}) builds one group per entry, in
// order; every group takes the head's keys, and a section ";GROUP:KEY=VALUE,..." overrides them for the
// group of that name:
//
//   optim::make("sgdm:lr=0.1,weight_decay=5e-4; no_decay: weight_decay=0", groups)
//   optim::make("adabound:lr=1e-3,final_lr=0.1; head: lr=1e-2,final_lr=0.5", groups)
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tapegrad/optim/optimizer.hpp"

namespace tapegrad::optim {

// A named parameter group for make().
struct ParamGroup {
  std::string name;
  std::vector<Tensor> params;
};

std::unique_ptr<Optimizer> make(const std::string& spec, const std::vector<Tensor>& params);
std::unique_ptr<Optimizer> make(const std::string& spec, const std::vector<ParamGroup>& groups);

// The names make() accepts, in the order above.
const std::vector<std::string>& optimizer_names();

}  // namespace tapegrad::optim
