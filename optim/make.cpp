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
  const std::string& spec() const { return spec_; }
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

// Each algorithm's keys: lr (nullopt: the default) and its options, from one group's keys.
struct SgdArgs {
  std::optional<double> lr;
  SGDOptions o;
};
SgdArgs parse_sgd(Args& a, const std::string& name) {
  SgdArgs r;
  if (name == "sgdm") r.o.momentum = 0.9;
  r.lr = a.number("lr");
  if (auto v = a.number("momentum")) r.o.momentum = *v;
  if (auto v = a.number("dampening")) r.o.dampening = *v;
  if (auto v = a.boolean("nesterov")) r.o.nesterov = *v;
  if (auto v = a.number("weight_decay")) r.o.weight_decay = *v;
  a.finish({"lr", "momentum", "dampening", "nesterov", "weight_decay"});
  TG_CHECK(r.lr.has_value(), "optim::make: ", name, " needs lr (torch.optim.SGD has no default), e.g. '", name,
           ":lr=0.1'; spec was '", a.spec(), "'");
  return r;
}

std::pair<double, AdagradOptions> parse_adagrad(Args& a) {
  AdagradOptions o;
  const double lr = a.number("lr").value_or(1e-2);
  if (auto v = a.number("lr_decay")) o.lr_decay = *v;
  if (auto v = a.number("weight_decay")) o.weight_decay = *v;
  if (auto v = a.number("initial_accumulator_value")) o.initial_accumulator_value = *v;
  if (auto v = a.number("eps")) o.eps = *v;
  a.finish({"lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps"});
  return {lr, o};
}

std::pair<double, AdamOptions> parse_adam(Args& a, const std::string& name) {
  const double lr = a.number("lr").value_or(1e-3);
  AdamOptions o;  // weight_decay's default depends on the name
  o.weight_decay = name == "adamw" ? 1e-2 : 0.0;
  o.amsgrad = name == "amsgrad";
  if (auto v = a.betas("betas")) o.betas = *v;
  if (auto v = a.number("eps")) o.eps = *v;
  if (auto v = a.number("weight_decay")) o.weight_decay = *v;
  if (auto v = a.boolean("amsgrad")) o.amsgrad = *v;
  a.finish({"lr", "betas", "eps", "weight_decay", "amsgrad"});
  return {lr, o};
}

std::pair<double, AdaBoundOptions> parse_adabound(Args& a, const std::string& name) {
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
  return {lr, o};
}

// The optimizer over every group, group g's keys in args[g].
std::unique_ptr<Optimizer> build(const std::string& name, std::vector<Args>& args,
                                 const std::vector<ParamGroup>& groups) {
  std::unique_ptr<Optimizer> out;
  auto add_groups = [&](auto& opt, auto parse) {
    for (size_t g = 1; g < groups.size(); ++g) {
      auto [lr, o] = parse(args[g]);
      opt.add_param_group(groups[g].params, lr, o, groups[g].name);
    }
  };
  if (name == "sgd" || name == "sgdm") {
    auto first = parse_sgd(args[0], name);
    auto opt = std::make_unique<SGD>(groups[0].params, *first.lr, first.o);
    add_groups(*opt, [&](Args& a) { auto r = parse_sgd(a, name); return std::make_pair(*r.lr, r.o); });
    out = std::move(opt);
  } else if (name == "adagrad") {
    auto [lr, o] = parse_adagrad(args[0]);
    auto opt = std::make_unique<Adagrad>(groups[0].params, lr, o);
    add_groups(*opt, parse_adagrad);
    out = std::move(opt);
  } else if (name == "adam" || name == "amsgrad" || name == "adamw") {
    auto [lr, o] = parse_adam(args[0], name);
    std::unique_ptr<Adam> opt;
    if (name == "adamw")
      opt = std::make_unique<AdamW>(groups[0].params, lr, AdamWOptions{o.betas, o.eps, o.weight_decay, o.amsgrad});
    else
      opt = std::make_unique<Adam>(groups[0].params, lr, o);
    add_groups(*opt, [&](Args& a) { return parse_adam(a, name); });
    out = std::move(opt);
  } else {
    auto [lr, o] = parse_adabound(args[0], name);
    std::unique_ptr<AdaBound> opt;
    if (name == "adaboundw") opt = std::make_unique<AdaBoundW>(groups[0].params, lr, o);
    else opt = std::make_unique<AdaBound>(groups[0].params, lr, o);
    add_groups(*opt, [&](Args& a) { return parse_adabound(a, name); });
    out = std::move(opt);
  }
  out->set_group_name(0, groups[0].name);
  return out;
}

// "KEY=VALUE,KEY=VALUE" -> pairs (blank text: none). A bare number right after betas=X is the classic slip
// "betas=0.9,0.999": the error suggests the slash.
std::map<std::string, std::string> parse_items(const std::string& text, const std::string& spec) {
  std::map<std::string, std::string> kv;
  if (trim(text).empty()) return kv;
  std::string previous_key;
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    const std::string item = trim(text.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    const size_t eq = item.find('=');
    if (eq == std::string::npos && previous_key == "betas" && !item.empty() &&
        item.find_first_not_of("0123456789.eE+-") == std::string::npos)
      TG_FAIL("optim::make: malformed item '", item, "' in spec '", spec, "': betas is written BETA1/BETA2 (a comma ",
              "separates items); did you mean betas=", kv.at("betas"), "/", item, "?");
    TG_CHECK(eq != std::string::npos && !trim(item.substr(0, eq)).empty(), "optim::make: malformed item '", item,
             "' in spec '", spec, "' (expected KEY=VALUE, items separated by commas)");
    const std::string key = trim(item.substr(0, eq)), value = trim(item.substr(eq + 1));
    TG_CHECK(kv.emplace(key, value).second, "optim::make: key '", key, "' given twice in spec '", spec, "'");
    previous_key = key;
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return kv;
}

}  // namespace

const std::vector<std::string>& optimizer_names() {
  static const std::vector<std::string> names{"sgd",     "sgdm",  "adagrad",  "adam",     "amsgrad",
                                              "adamw",   "adabound", "amsbound", "adaboundw"};
  return names;
}

std::unique_ptr<Optimizer> make(const std::string& spec, const std::vector<Tensor>& params) {
  return make(spec, std::vector<ParamGroup>{{"0", params}});
}

std::unique_ptr<Optimizer> make(const std::string& spec, const std::vector<ParamGroup>& groups) {
  TG_CHECK(!groups.empty(), "optim::make: no parameter groups (spec '", spec, "')");
  std::vector<std::string> group_names;
  for (const ParamGroup& g : groups) group_names.push_back(g.name);

  // Sections: the head NAME[:ITEMS], then GROUP[:ITEMS] for groups whose keys differ from the head's.
  std::vector<std::string> sections;
  for (size_t start = 0;;) {
    const size_t semi = spec.find(';', start);
    sections.push_back(spec.substr(start, semi == std::string::npos ? std::string::npos : semi - start));
    if (semi == std::string::npos) break;
    start = semi + 1;
  }
  const size_t colon = sections[0].find(':');
  const std::string name = trim(sections[0].substr(0, colon));
  const auto& names = optimizer_names();
  TG_CHECK(std::find(names.begin(), names.end(), name) != names.end(), "optim::make: unknown optimizer '", name,
           "' in spec '", spec, "'; accepted: ", join(names));
  const auto head = parse_items(colon == std::string::npos ? "" : sections[0].substr(colon + 1), spec);

  std::vector<std::map<std::string, std::string>> kv(groups.size(), head);
  std::vector<bool> seen(groups.size(), false);
  for (size_t k = 1; k < sections.size(); ++k) {
    const size_t c = sections[k].find(':');
    const std::string group = trim(sections[k].substr(0, c));
    const auto it = std::find(group_names.begin(), group_names.end(), group);
    TG_CHECK(it != group_names.end(), "optim::make: spec '", spec, "' names the parameter group '", group,
             "', but the groups given are: ", join(group_names),
             groups.size() == 1 ? " (pass named groups to make() to give them their own keys)" : "");
    const size_t g = static_cast<size_t>(it - group_names.begin());
    TG_CHECK(!seen[g], "optim::make: group '", group, "' has two sections in spec '", spec, "'");
    seen[g] = true;
    for (const auto& [key, value] : parse_items(c == std::string::npos ? "" : sections[k].substr(c + 1), spec))
      kv[g][key] = value;
  }
  std::vector<Args> args;
  for (size_t g = 0; g < groups.size(); ++g)
    args.emplace_back(spec, name, std::move(kv[g]));
  return build(name, args, groups);
}

}  // namespace tapegrad::optim
