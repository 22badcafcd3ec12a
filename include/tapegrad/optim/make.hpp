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
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tapegrad/optim/optimizer.hpp"

namespace tapegrad::optim {

std::unique_ptr<Optimizer> make(const std::string& spec, const std::vector<Tensor>& params);

// The names make() accepts, in the order above.
const std::vector<std::string>& optimizer_names();

}  // namespace tapegrad::optim
