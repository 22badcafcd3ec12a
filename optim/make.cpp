// optim::make(): spec strings -> optimizers (grammar in include/tapegrad/optim/make.hpp).
#include "tapegrad/optim/make.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <map>
#include <optional>

#include "tapegrad/optim/adabound.hpp"
#include "tapegrad/optim/adagrad.hpp"
#include "tapegrad/optim/adam.hpp"
#include "tapegrad/optim/sgd.hpp"

namespace tapegrad::optim {
namespace {

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

// The parsed KEY=VALUE pairs of one spec, consumed by the builder of the named optimizer; whatever is
// left afterwards is an unknown key.
class Args {
 public:
  Args(std::string spec, std::string name, std::map<std::string, std::string> kv)
      : spec_(std::move(spec)), name_(std::move(name)), kv_(std::move(kv)) {}

  std::optional<double> number(const std::string& key) {
    auto v = take(key);
    if (!v) return std::nullopt;
    return parse_number(key, *v, *v);
  }
  std::optional<bool> boolean(const std::string& key) {
    auto v = take(key);
    if (!v) return std::nullopt;
    if (*v == "true") return true;
    if (*v == "false") return false;
    fail(key, *v, "true or false");
  }
  std::optional<std::array<double, 2>> betas(const std::string& key) {
    auto v = take(key);
    if (!v) return std::nullopt;
    const size_t slash = v->find('/');
    if (slash == std::string::npos || v->find('/', slash + 1) != std::string::npos)
      fail(key, *v, "two numbers BETA1/BETA2, e.g. 0.9/0.999");
    return std::array<double, 2>{parse_number(key, trim(v->substr(0, slash)), *v),
                                 parse_number(key, trim(v->substr(slash + 1)), *v)};
  }
  // After the builder took its keys: anything left is not accepted by this optimizer.
  void finish(const std::vector<std::string>& accepted) const {
    if (kv_.empty()) return;
    TG_FAIL("optim::make: '", name_, "' does not take the key '", kv_.begin()->first, "' (spec '", spec_,
            "'); accepted keys: ", join(accepted));
  }

 private:
  std::optional<std::string> take(const std::string& key) {
    auto it = kv_.find(key);
    if (it == kv_.end()) return std::nullopt;
    std::string v = it->second;
    kv_.erase(it);
    return v;
  }
  double parse_number(const std::string& key, const std::string& text, const std::string& whole) const {
    double x = 0;
    const char* end = text.data() + text.size();
    auto res = std::from_chars(text.data(), end, x);
    if (text.empty() || res.ec != std::errc() || res.ptr != end || !std::isfinite(x))
      fail(key, whole, "a finite decimal number such as 0.001 or 1e-3");
    return x;
  }
  [[noreturn]] void fail(const std::string& key, const std::string& value, const char* expected) const {
    TG_FAIL("optim::make: malformed value '", value, "' for ", name_, " key '", key, "' in spec '", spec_,
            "' (expected ", expected, ")");
  }

  std::string spec_, name_;
  std::map<std::string, std::string> kv_;
};

std::unique_ptr<Optimizer> build_sgd(Args& a, const std::vector<Tensor>& params, const std::string& name,
                                     const std::string& spec) {
  SGDOptions o;
  if (name == "sgdm") o.momentum = 0.9;
  auto lr = a.number("lr");
  if (auto v = a.number("momentum")) o.momentum = *v;
  if (auto v = a.number("dampening")) o.dampening = *v;
  if (auto v = a.boolean("nesterov")) o.nesterov = *v;
  if (auto v = a.number("weight_decay")) o.weight_decay = *v;
  a.finish({"lr", "momentum", "dampening", "nesterov", "weight_decay"});
  TG_CHECK(lr.has_value(), "optim::make: ", name, " needs lr (torch.optim.SGD has no default), e.g. '", name,
           ":lr=0.1'; spec was '", spec, "'");
  return std::make_unique<SGD>(params, *lr, o);
}

std::unique_ptr<Optimizer> build_adagrad(Args& a, const std::vector<Tensor>& params) {
  AdagradOptions o;
  const double lr = a.number("lr").value_or(1e-2);
  if (auto v = a.number("lr_decay")) o.lr_decay = *v;
  if (auto v = a.number("weight_decay")) o.weight_decay = *v;
  if (auto v = a.number("initial_accumulator_value")) o.initial_accumulator_value = *v;
  if (auto v = a.number("eps")) o.eps = *v;
  a.finish({"lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps"});
  return std::make_unique<Adagrad>(params, lr, o);
}

std::unique_ptr<Optimizer> build_adam(Args& a, const std::vector<Tensor>& params, const std::string& name) {
  const double lr = a.number("lr").value_or(1e-3);
  AdamWOptions o;  // the fields of AdamOptions; weight_decay's default depends on the name
  o.weight_decay = name == "adamw" ? 1e-2 : 0.0;
  o.amsgrad = name == "amsgrad";
  if (auto v = a.betas("betas")) o.betas = *v;
  if (auto v = a.number("eps")) o.eps = *v;
  if (auto v = a.number("weight_decay")) o.weight_decay = *v;
  if (auto v = a.boolean("amsgrad")) o.amsgrad = *v;
  a.finish({"lr", "betas", "eps", "weight_decay", "amsgrad"});
  if (name == "adamw") return std::make_unique<AdamW>(params, lr, o);
  return std::make_unique<Adam>(params, lr, AdamOptions{o.betas, o.eps, o.weight_decay, o.amsgrad});
}

std::unique_ptr<Optimizer> build_adabound(Args& a, const std::vector<Tensor>& params, const std::string& name) {
  const double lr = a.number("lr").value_or(1e-3);
  AdaBoundOptions o;
  o.amsbound = name == "amsbound";
  if (auto v = a.betas("betas")) o.betas = *v;
  if (auto v = a.number("final_lr")) o.final_lr = *v;
  if (auto v = a.number("gamma")) o.gamma = *v;
  if (auto v = a.number("eps")) o.eps = *v;
  if (auto v = a.number("weight_decay")) o.weight_decay = *v;
  if (auto v = a.boolean("amsbound")) o.amsbound = *v;
  a.finish({"lr", "betas", "final_lr", "gamma", "eps", "weight_decay", "amsbound"});
  if (name == "adaboundw") return std::make_unique<AdaBoundW>(params, lr, o);
  return std::make_unique<AdaBound>(params, lr, o);
}

}  // namespace

const std::vector<std::string>& optimizer_names() {
  static const std::vector<std::string> names{"sgd",     "sgdm",  "adagrad",  "adam",     "amsgrad",
                                              "adamw",   "adabound", "amsbound", "adaboundw"};
  return names;
}

std::unique_ptr<Optimizer> make(const std::string& spec, const std::vector<Tensor>& params) {
  const size_t colon = spec.find(':');
  const std::string name = trim(spec.substr(0, colon));
  const auto& names = optimizer_names();
  TG_CHECK(std::find(names.begin(), names.end(), name) != names.end(), "optim::make: unknown optimizer '", name,
           "' in spec '", spec, "'; accepted: ", join(names));

  std::map<std::string, std::string> kv;
  if (colon != std::string::npos) {
    const std::string rest = spec.substr(colon + 1);
    size_t start = 0;
    while (true) {
      const size_t comma = rest.find(',', start);
      const std::string item = trim(rest.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
      const size_t eq = item.find('=');
      TG_CHECK(eq != std::string::npos && !trim(item.substr(0, eq)).empty(), "optim::make: malformed item '", item,
               "' in spec '", spec, "' (expected KEY=VALUE, items separated by commas)");
      const std::string key = trim(item.substr(0, eq)), value = trim(item.substr(eq + 1));
      TG_CHECK(kv.emplace(key, value).second, "optim::make: key '", key, "' given twice in spec '", spec, "'");
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  Args args(spec, name, std::move(kv));
  if (name == "sgd" || name == "sgdm") return build_sgd(args, params, name, spec);
  if (name == "adagrad") return build_adagrad(args, params);
  if (name == "adam" || name == "amsgrad" || name == "adamw") return build_adam(args, params, name);
  return build_adabound(args, params, name);
}

}  // namespace tapegrad::optim
