// StepLR and MultiStepLR in torch's chainable form (include/tapegrad/optim/scheduler.hpp).
#include "tapegrad/optim/scheduler.hpp"

#include <algorithm>
#include <cmath>

namespace tapegrad::optim {

StepLR::StepLR(Optimizer& opt, int64_t step_size, double gamma) : opt_(opt), step_size_(step_size), gamma_(gamma) {
  TG_CHECK(step_size > 0, "StepLR: invalid step_size = ", step_size, " (accepted: step_size >= 1)");
  TG_CHECK(std::isfinite(gamma) && gamma >= 0, "StepLR: invalid gamma = ", format_number(gamma),
           " (accepted: finite and >= 0)");
}

void StepLR::step() {
  ++last_epoch_;
  if (last_epoch_ % step_size_ == 0) opt_.set_lr(opt_.lr() * gamma_);
}

MultiStepLR::MultiStepLR(Optimizer& opt, std::vector<int64_t> milestones, double gamma)
    : opt_(opt), milestones_(std::move(milestones)), gamma_(gamma) {
  for (int64_t m : milestones_)
    TG_CHECK(m > 0, "MultiStepLR: invalid milestone ", m, " (accepted: epochs >= 1)");
  TG_CHECK(std::isfinite(gamma) && gamma >= 0, "MultiStepLR: invalid gamma = ", format_number(gamma),
           " (accepted: finite and >= 0)");
}

void MultiStepLR::step() {
  ++last_epoch_;
  const auto hits = std::count(milestones_.begin(), milestones_.end(), last_epoch_);
  if (hits > 0) opt_.set_lr(opt_.lr() * std::pow(gamma_, static_cast<double>(hits)));
}

}  // namespace tapegrad::optim
