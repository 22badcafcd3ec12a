// The lr schedulers in torch's chainable form (include/tapegrad/optim/scheduler.hpp). Each next_lr() is
// torch 1.13's get_lr() for one group, operation for operation.
#include "tapegrad/optim/scheduler.hpp"

// Python rounds every operation; -march=native would let GCC fuse a * b + c into one FMA (one rounding), and
// the lrs would differ from torch's in the last bit.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <algorithm>
#include <cmath>
#include <numbers>

namespace tapegrad::optim {

Scheduler::Scheduler(std::string name, Optimizer& opt) : name_(std::move(name)), opt_(opt) {}

Scheduler::~Scheduler() = default;

void Scheduler::set_last_epoch(int64_t e) {
  TG_CHECK(e >= 0, name_, ".set_last_epoch: invalid epoch ", e, " (accepted: >= 0)");
  last_epoch_ = e;
}

TensorDict Scheduler::state_dict() const {
  TensorDict d;
  d["last_epoch"] = scalar(static_cast<double>(last_epoch_), DType::F64);
  for (const auto& [key, value] : const_cast<Scheduler*>(this)->counters()) d[key] = scalar(*value, DType::F64);
  return d;
}

void Scheduler::load_state_dict(const TensorDict& dict) {
  const std::string who = name_ + ".load_state_dict";
  auto read = [&](const std::string& key) {
    auto it = dict.find(key);
    TG_CHECK(it != dict.end(), who, ": missing key '", key, "'");
    TG_CHECK(it->second.defined() && it->second.numel() == 1, who, ": '", key, "' must hold one number, got ",
             it->second.defined() ? to_string(it->second.shape()) : std::string("an undefined tensor"));
    return it->second.item();
  };
  const double e = read("last_epoch");
  TG_CHECK(e >= 0 && e == std::floor(e) && e < 9.0e15, who, ": 'last_epoch' must be a whole number >= 0, got ", e);
  std::vector<std::pair<double*, double>> values;
  std::vector<std::string> keys{"last_epoch"};
  std::string accepted = "last_epoch";
  for (const auto& [key, value] : counters()) {
    values.emplace_back(value, read(key));
    keys.push_back(key);
    accepted += ", " + key;
  }
  for (const auto& kv : dict)
    TG_CHECK(std::find(keys.begin(), keys.end(), kv.first) != keys.end(), who, ": unexpected key '", kv.first,
             "' (accepted: ", accepted, ")");
  last_epoch_ = static_cast<int64_t>(e);
  for (auto& [ptr, v] : values) *ptr = v;
}

void EpochScheduler::step() {
  ++last_epoch_;
  for (size_t g = 0; g < opt_.num_groups(); ++g) opt_.set_lr(g, next_lr(g, opt_.lr(g)));
}

StepLR::StepLR(Optimizer& opt, int64_t step_size, double gamma)
    : EpochScheduler("StepLR", opt), step_size_(step_size), gamma_(gamma) {
  TG_CHECK(step_size > 0, "StepLR: invalid step_size = ", step_size, " (accepted: step_size >= 1)");
  TG_CHECK(std::isfinite(gamma) && gamma >= 0, "StepLR: invalid gamma = ", format_number(gamma),
           " (accepted: finite and >= 0)");
}

double StepLR::next_lr(size_t, double lr) const {
  if (last_epoch_ == 0 || last_epoch_ % step_size_ != 0) return lr;
  return lr * gamma_;
}

MultiStepLR::MultiStepLR(Optimizer& opt, std::vector<int64_t> milestones, double gamma)
    : EpochScheduler("MultiStepLR", opt), milestones_(std::move(milestones)), gamma_(gamma) {
  for (int64_t m : milestones_)
    TG_CHECK(m > 0, "MultiStepLR: invalid milestone ", m, " (accepted: epochs >= 1)");
  TG_CHECK(std::isfinite(gamma) && gamma >= 0, "MultiStepLR: invalid gamma = ", format_number(gamma),
           " (accepted: finite and >= 0)");
}

double MultiStepLR::next_lr(size_t, double lr) const {
  const auto hits = std::count(milestones_.begin(), milestones_.end(), last_epoch_);
  if (hits == 0) return lr;
  return lr * std::pow(gamma_, static_cast<double>(hits));
}

CosineAnnealingLR::CosineAnnealingLR(Optimizer& opt, int64_t T_max, double eta_min)
    : EpochScheduler("CosineAnnealingLR", opt), T_max_(T_max), eta_min_(eta_min) {
  TG_CHECK(T_max > 0, "CosineAnnealingLR: invalid T_max = ", T_max, " (accepted: T_max >= 1)");
  TG_CHECK(std::isfinite(eta_min) && eta_min >= 0, "CosineAnnealingLR: invalid eta_min = ", format_number(eta_min),
           " (accepted: finite and >= 0)");
}

double CosineAnnealingLR::next_lr(size_t group, double lr) const {
  constexpr double pi = std::numbers::pi;
  const double base = opt_.initial_lr(group), T = static_cast<double>(T_max_), e = static_cast<double>(last_epoch_);
  if (last_epoch_ == 0) return base;
  const int64_t period = 2 * T_max_, k = ((last_epoch_ - 1 - T_max_) % period + period) % period;  // Python's %
  if (k == 0) return lr + (base - eta_min_) * (1 - std::cos(pi / T)) / 2;
  return (1 + std::cos(pi * e / T)) / (1 + std::cos(pi * (e - 1) / T)) * (lr - eta_min_) + eta_min_;
}

LinearLR::LinearLR(Optimizer& opt, double start_factor, double end_factor, int64_t total_iters)
    : EpochScheduler("LinearLR", opt), start_factor_(start_factor), end_factor_(end_factor), total_iters_(total_iters) {
  TG_CHECK(start_factor > 0 && start_factor <= 1, "LinearLR: invalid start_factor = ", format_number(start_factor),
           " (accepted: 0 < start_factor <= 1)");
  TG_CHECK(end_factor >= 0 && end_factor <= 1, "LinearLR: invalid end_factor = ", format_number(end_factor),
           " (accepted: 0 <= end_factor <= 1)");
  TG_CHECK(total_iters > 0, "LinearLR: invalid total_iters = ", total_iters, " (accepted: >= 1)");
  for (size_t g = 0; g < opt.num_groups(); ++g) opt.set_lr(g, opt.lr(g) * start_factor_);  // torch's epoch 0
}

double LinearLR::next_lr(size_t, double lr) const {
  if (last_epoch_ == 0) return lr * start_factor_;
  if (last_epoch_ > total_iters_) return lr;
  return lr * (1. + (end_factor_ - start_factor_) /
                        (static_cast<double>(total_iters_) * start_factor_ +
                         static_cast<double>(last_epoch_ - 1) * (end_factor_ - start_factor_)));
}

ReduceLROnPlateau::ReduceLROnPlateau(Optimizer& opt, PlateauOptions options)
    : Scheduler("ReduceLROnPlateau", opt), o_(std::move(options)) {
  TG_CHECK(o_.factor >= 0 && o_.factor < 1, "ReduceLROnPlateau: invalid factor = ", format_number(o_.factor),
           " (accepted: 0 <= factor < 1)");
  TG_CHECK(o_.patience >= 0 && o_.cooldown >= 0, "ReduceLROnPlateau: invalid patience = ", o_.patience,
           " or cooldown = ", o_.cooldown, " (accepted: >= 0)");
  TG_CHECK(std::isfinite(o_.threshold) && o_.threshold >= 0, "ReduceLROnPlateau: invalid threshold = ",
           format_number(o_.threshold), " (accepted: finite and >= 0)");
  TG_CHECK(o_.min_lr.size() == 1 || o_.min_lr.size() == opt.num_groups(), "ReduceLROnPlateau: ",
           o_.min_lr.size(), " min_lr values for ", opt.num_groups(), " parameter groups (accepted: 1 or one per group)");
  for (double m : o_.min_lr)
    TG_CHECK(std::isfinite(m) && m >= 0, "ReduceLROnPlateau: invalid min_lr = ", format_number(m),
             " (accepted: finite and >= 0)");
  best_ = o_.maximize ? -INFINITY : INFINITY;
}

// torch's is_better for the four (mode, threshold_mode) pairs.
bool ReduceLROnPlateau::better(double a) const {
  if (o_.relative) return o_.maximize ? a > best_ * (o_.threshold + 1) : a < best_ * (1 - o_.threshold);
  return o_.maximize ? a > best_ + o_.threshold : a < best_ - o_.threshold;
}

void ReduceLROnPlateau::step(double metric) {
  TG_CHECK(!std::isnan(metric), "ReduceLROnPlateau.step: the metric is NaN (epoch ", last_epoch_ + 1, ")");
  ++last_epoch_;
  if (better(metric)) {
    best_ = metric;
    num_bad_epochs_ = 0;
  } else {
    num_bad_epochs_ += 1;
  }
  if (cooldown_counter_ > 0) {
    cooldown_counter_ -= 1;
    num_bad_epochs_ = 0;
  }
  if (num_bad_epochs_ > static_cast<double>(o_.patience)) {
    for (size_t g = 0; g < opt_.num_groups(); ++g) {
      const double old_lr = opt_.lr(g);
      const double new_lr = std::max(old_lr * o_.factor, o_.min_lr[o_.min_lr.size() == 1 ? 0 : g]);
      if (old_lr - new_lr > o_.eps) opt_.set_lr(g, new_lr);
    }
    cooldown_counter_ = static_cast<double>(o_.cooldown);
    num_bad_epochs_ = 0;
  }
}

std::vector<std::pair<std::string, double*>> ReduceLROnPlateau::counters() {
  return {{"best", &best_}, {"num_bad_epochs", &num_bad_epochs_}, {"cooldown_counter", &cooldown_counter_}};
}

}  // namespace tapegrad::optim
