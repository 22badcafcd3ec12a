// The Optimizer base: parameter checks, the step loop, lr, state_dict round trips.
#include "tapegrad/optim/optimizer.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>
#include <set>
#include <tuple>

#include "tapegrad/autograd.hpp"

namespace tapegrad::optim {

std::string format_number(double v) {
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::general);
  return std::string(buf, res.ptr);
}

LrQuantiles lr_quantiles(std::vector<double> v) {
  LrQuantiles q;
  if (v.empty()) return q;
  std::sort(v.begin(), v.end());
  auto at = [&](double f) {  // linear interpolation between the order statistics around f (n - 1)
    const double pos = f * static_cast<double>(v.size() - 1);
    const size_t lo = static_cast<size_t>(pos);
    const size_t hi = std::min(lo + 1, v.size() - 1);
    return v[lo] + (pos - static_cast<double>(lo)) * (v[hi] - v[lo]);
  };
  q.min = v.front();
  q.p5 = at(0.05);
  q.p25 = at(0.25);
  q.median = at(0.5);
  q.p75 = at(0.75);
  q.p95 = at(0.95);
  q.max = v.back();
  return q;
}

Optimizer::Optimizer(std::string name, std::vector<Tensor> params, double lr) : name_(std::move(name)) {
  add_group(std::move(params), lr, "0");
}

Optimizer::~Optimizer() = default;

size_t Optimizer::add_group(std::vector<Tensor> params, double lr, std::string name) {
  check_nonnegative("lr", lr);
  const size_t g = groups_.size();
  if (name.empty()) name = std::to_string(g);
  TG_CHECK(name.find_first_of(";:,=") == std::string::npos, name_, ": invalid group name '", name,
           "' (accepted: none of the characters ;:,=)");
  for (const Group& other : groups_)
    TG_CHECK(other.name != name, name_, ": two parameter groups are named '", name, "'");
  std::set<uint64_t> seen;
  for (const Tensor& p : params_) seen.insert(p.id());
  Group group{name, {}, lr, lr};
  for (size_t k = 0; k < params.size(); ++k) {
    const Tensor& p = params[k];
    const size_t i = params_.size() + k;
    TG_CHECK(p.defined(), name_, ": parameter ", i, " is an undefined tensor");
    TG_CHECK(p.dtype() == DType::F32 || p.dtype() == DType::F64, name_, ": parameter ", i, " ", to_string(p.shape()),
             " has dtype ", p.dtype(), "; an optimizer updates f32 or f64 tensors");
    TG_CHECK(p.is_leaf(), name_, ": parameter ", i, " ", to_string(p.shape()),
             " is not a leaf (it was computed by an op); optimize the leaf tensors the model owns");
    TG_CHECK(seen.insert(p.id()).second, name_, ": parameter ", i, " ", to_string(p.shape()),
             g == 0 ? " appears twice in the parameter list" : " appears twice (in this group or an earlier one)");
    group.params.push_back(i);
  }
  for (Tensor& p : params) params_.push_back(std::move(p));
  group_of_.resize(params_.size(), g);
  steps_.resize(params_.size(), 0);
  groups_.push_back(std::move(group));
  return g;
}

void Optimizer::check_range(const char* key, double value, double lo, bool lo_open, double hi, bool hi_open) const {
  const bool ok = (lo_open ? value > lo : value >= lo) && (hi_open ? value < hi : value <= hi);
  if (ok) return;
  std::string range = format_number(lo) + (lo_open ? " < " : " <= ") + key;
  if (std::isfinite(hi)) range += (hi_open ? " < " : " <= ") + format_number(hi);
  TG_FAIL(name_, ": invalid ", key, " = ", format_number(value), " (accepted: ", range, ")");
}

void Optimizer::check_nonnegative(const char* key, double value) const {
  check_range(key, value, 0.0, false, INFINITY, true);
}

void Optimizer::check_group(size_t group, const char* what) const {
  TG_CHECK(group < groups_.size(), name_, ".", what, ": parameter group ", group, " out of range (", groups_.size(),
           groups_.size() == 1 ? " group)" : " groups)");
}

double Optimizer::lr(size_t group) const {
  check_group(group, "lr");
  return groups_[group].lr;
}

double Optimizer::initial_lr(size_t group) const {
  check_group(group, "initial_lr");
  return groups_[group].initial_lr;
}

void Optimizer::set_lr(double lr) {
  for (size_t g = 0; g < groups_.size(); ++g) set_lr(g, lr);
}

void Optimizer::set_lr(size_t group, double lr) {
  check_group(group, "set_lr");
  TG_CHECK(std::isfinite(lr) && lr >= 0, name_, ".set_lr: invalid lr = ", format_number(lr),
           " (accepted: finite and >= 0)");
  groups_[group].lr = lr;
}

const std::string& Optimizer::group_name(size_t group) const {
  check_group(group, "group_name");
  return groups_[group].name;
}

void Optimizer::set_group_name(size_t group, std::string name) {
  check_group(group, "set_group_name");
  TG_CHECK(!name.empty() && name.find_first_of(";:,=") == std::string::npos, name_, ": invalid group name '", name,
           "' (accepted: not empty, none of the characters ;:,=)");
  for (size_t g = 0; g < groups_.size(); ++g)
    TG_CHECK(g == group || groups_[g].name != name, name_, ": two parameter groups are named '", name, "'");
  groups_[group].name = std::move(name);
}

const std::vector<size_t>& Optimizer::group_params(size_t group) const {
  check_group(group, "group_params");
  return groups_[group].params;
}

size_t Optimizer::group_of(size_t i) const {
  TG_CHECK(i < params_.size(), name_, ".group_of: parameter ", i, " out of range (", params_.size(), " parameters)");
  return group_of_[i];
}

int64_t Optimizer::steps(size_t i) const {
  TG_CHECK(i < params_.size(), name_, ".steps: parameter ", i, " out of range (", params_.size(), " parameters)");
  return steps_[i];
}

int64_t Optimizer::steps() const {
  int64_t s = 0;
  for (int64_t k : steps_) s = std::max(s, k);
  return s;
}

void Optimizer::zero_grad() {
  for (Tensor& p : params_) p.zero_grad();
}

void Optimizer::step() {
  NoGradGuard no_grad;
  // Check everything first so that a bad gradient leaves all parameters untouched.
  std::vector<Tensor> grads(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    Tensor g = p.grad();
    if (!g.defined()) continue;
    TG_CHECK(g.shape() == p.shape() && g.dtype() == p.dtype() && g.device() == p.device(), name_,
             ".step: parameter ", i, " is ", to_string(p.shape()), " ", p.dtype(), " on ", p.device(), " but its gradient is ",
             to_string(g.shape()), " ", g.dtype(), " on ", g.device());
    if (steps_[i] > 0) {
      for (const auto& [key, t] : state_tensors(i))
        TG_CHECK(t.dtype() == p.dtype() && t.device() == p.device(), name_, ".step: parameter ", i, " is ",
                 p.dtype(), " on ", p.device(), " but its state '", key, "' is ", t.dtype(), " on ", t.device(),
                 " (was the model converted after training started? convert it before building the optimizer)");
    }
    grads[i] = g;
  }
  // One update per group and step number: the parameters of a group normally share their step count; one
  // that had no gradient on some step lags behind and gets its own call. A kernel takes one dtype and device.
  for (size_t g = 0; g < groups_.size(); ++g) {
    std::map<std::tuple<int64_t, DType, Device>, std::vector<size_t>> batches;
    for (size_t i : groups_[g].params)
      if (grads[i].defined()) batches[{steps_[i] + 1, params_[i].dtype(), params_[i].device()}].push_back(i);
    for (const auto& [key, index] : batches) {
      std::vector<Tensor> gs;
      for (size_t i : index) {
        if (steps_[i] == 0) init_state(i, params_[i]);
        ++steps_[i];
        gs.push_back(grads[i]);
      }
      update(g, index, gs, std::get<0>(key));
    }
  }
}

std::string Optimizer::describe() const {
  std::string s;
  for (size_t g = 0; g < groups_.size(); ++g) {
    s += (g == 0 ? name_ : ";" + groups_[g].name) + ":lr=" + format_number(groups_[g].lr);
    for (const auto& [k, v] : hparams(g)) s += "," + k + "=" + v;
  }
  return s;
}

namespace {

std::string group_key(size_t g, const char* what) { return "group" + std::to_string(g) + "." + what; }

}  // namespace

TensorDict Optimizer::state_dict() const {
  TensorDict d;
  for (size_t g = 0; g < groups_.size(); ++g) {
    d[g == 0 ? "lr" : group_key(g, "lr")] = scalar(groups_[g].lr, DType::F64);
    d[g == 0 ? "initial_lr" : group_key(g, "initial_lr")] = scalar(groups_[g].initial_lr, DType::F64);
    if (g > 0) d[group_key(g, "params")] = scalar(static_cast<double>(groups_[g].params.size()), DType::F64);
  }
  for (size_t i = 0; i < params_.size(); ++i) {
    if (steps_[i] == 0) continue;
    const std::string prefix = std::to_string(i) + ".";
    d[prefix + "step"] = scalar(static_cast<double>(steps_[i]), DType::F64);
    for (const auto& [key, t] : state_tensors(i)) d[prefix + key] = t.detach().clone();
  }
  return d;
}

namespace {

// "12.exp_avg" -> (12, "exp_avg"); false when the key has no such form.
bool split_key(const std::string& key, size_t& index, std::string& rest) {
  const size_t dot = key.find('.');
  if (dot == 0 || dot == std::string::npos) return false;
  size_t i = 0;
  auto res = std::from_chars(key.data(), key.data() + dot, i);
  if (res.ec != std::errc() || res.ptr != key.data() + dot) return false;
  index = i;
  rest = key.substr(dot + 1);
  return true;
}

double read_scalar(const std::string& opt, const TensorDict& dict, const std::string& key) {
  auto it = dict.find(key);
  TG_CHECK(it != dict.end(), opt, ".load_state_dict: missing key '", key, "'");
  const Tensor& t = it->second;
  TG_CHECK(t.defined() && t.numel() == 1, opt, ".load_state_dict: '", key, "' must hold one number, got ",
           t.defined() ? to_string(t.shape()) : std::string("an undefined tensor"));
  return t.item();
}

}  // namespace

void Optimizer::load_state_dict(const TensorDict& dict) {
  const std::string who = name_ + ".load_state_dict";
  // The groups' lrs, and their sizes: the same grouping as when it was saved.
  std::vector<std::pair<double, double>> lrs;
  for (size_t g = 0; g < groups_.size(); ++g) {
    const double lr = read_scalar(name_, dict, g == 0 ? "lr" : group_key(g, "lr"));
    const double initial_lr = read_scalar(name_, dict, g == 0 ? "initial_lr" : group_key(g, "initial_lr"));
    TG_CHECK(std::isfinite(lr) && lr >= 0 && std::isfinite(initial_lr) && initial_lr >= 0, who, ": group ", g,
             "'s lr and initial_lr must be finite and >= 0, got ", lr, " and ", initial_lr);
    if (g > 0) {
      const double n = read_scalar(name_, dict, group_key(g, "params"));
      TG_CHECK(n == static_cast<double>(groups_[g].params.size()), who, ": group ", g, " had ", n,
               " parameters when saved but has ", groups_[g].params.size(), " now");
    }
    lrs.emplace_back(lr, initial_lr);
  }

  // The state names of each parameter (they may differ between groups: amsgrad per group), from its
  // freshly made state when it has none yet (dropped again below: steps 0 makes it afresh at the next step).
  std::vector<std::vector<std::string>> names(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    if (steps_[i] == 0) init_state(i, params_[i]);
    for (const auto& kv : state_tensors(i)) names[i].push_back(kv.first);
  }

  // Validate every key before changing anything.
  std::vector<int64_t> steps(params_.size(), 0);
  for (const auto& [key, t] : dict) {  // the grouping first: its error says the most
    if (key.rfind("group", 0) != 0) continue;
    size_t g = 0;
    const char* b = key.data() + 5;
    const char* e = key.data() + key.size();
    auto res = std::from_chars(b, e, g);
    const std::string rest = res.ec == std::errc() ? std::string(res.ptr, e) : "";
    TG_CHECK(res.ec == std::errc() && (rest == ".lr" || rest == ".initial_lr" || rest == ".params"), who,
             ": unexpected key '", key, "' (expected group<g>.lr, .initial_lr or .params)");
    TG_CHECK(g >= 1 && g < groups_.size(), who, ": key '", key, "' names parameter group ", g,
             " but this optimizer has ", groups_.size(), groups_.size() == 1 ? " group" : " groups",
             " (group 0's lr is saved as 'lr')");
  }
  for (const auto& [key, t] : dict) {
    if (key == "lr" || key == "initial_lr" || key.rfind("group", 0) == 0) continue;
    size_t i = 0;
    std::string rest;
    TG_CHECK(split_key(key, i, rest), who, ": unexpected key '", key,
             "' (expected lr, initial_lr, group<g>.* or <param index>.<state>)");
    TG_CHECK(i < params_.size(), who, ": key '", key, "' names parameter ", i, " but this optimizer has ",
             params_.size(), " parameters");
    if (rest == "step") {
      const double s = read_scalar(name_, dict, key);
      TG_CHECK(s >= 1 && s == std::floor(s) && s < 9.0e15, who, ": '", key, "' must be a whole number >= 1, got ", s);
      steps[i] = static_cast<int64_t>(s);
      continue;
    }
    if (std::find(names[i].begin(), names[i].end(), rest) == names[i].end()) {
      std::string joined;
      for (const auto& n : names[i]) joined += ", " + n;
      TG_FAIL(who, ": unexpected key '", key, "' (accepted for parameter ", i, ": step", joined, ")");
    }
    TG_CHECK(dict.count(std::to_string(i) + ".step"), who, ": key '", key, "' has no matching '", i, ".step'");
  }
  for (size_t i = 0; i < params_.size(); ++i) {
    if (steps[i] == 0) continue;
    for (const auto& n : names[i]) {
      const std::string key = std::to_string(i) + "." + n;
      auto it = dict.find(key);
      TG_CHECK(it != dict.end(), who, ": missing key '", key, "' (parameter ", i, " has a step count)");
      const Tensor& t = it->second;
      TG_CHECK(t.defined() && t.shape() == params_[i].shape(), who, ": '", key, "' has shape ",
               t.defined() ? to_string(t.shape()) : std::string("(undefined)"), " but parameter ", i, " is ",
               to_string(params_[i].shape()));
      TG_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::F64, who, ": '", key, "' has dtype ", t.dtype(),
               " (expected f32 or f64)");
    }
  }

  // Apply.
  NoGradGuard no_grad;
  for (size_t g = 0; g < groups_.size(); ++g) std::tie(groups_[g].lr, groups_[g].initial_lr) = lrs[g];
  for (size_t i = 0; i < params_.size(); ++i) {
    steps_[i] = steps[i];
    if (steps[i] == 0) continue;  // state is made afresh at the next step
    init_state(i, params_[i]);
    for (auto& [n, t] : state_tensors(i)) t.copy_(dict.at(std::to_string(i) + "." + n));
  }
}

Tensor Optimizer::effective_lr(size_t i) const {
  TG_CHECK(i < params_.size(), name_, ": effective_lr: parameter ", i, " out of range (", params_.size(), " parameters)");
  return {};
}

}  // namespace tapegrad::optim
