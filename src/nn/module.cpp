// Module: named registration, traversal, state dicts, train/eval.
#include "tapegrad/nn/module.hpp"

#include <cxxabi.h>

#include <set>
#include <typeinfo>

#include "tapegrad/autograd.hpp"

namespace tapegrad::nn {

std::string Module::type_name() const {
  if (!type_name_.empty()) return type_name_;
  int status = 0;
  char* demangled = abi::__cxa_demangle(typeid(*this).name(), nullptr, nullptr, &status);
  std::string full = status == 0 ? demangled : typeid(*this).name();
  std::free(demangled);
  size_t cut = full.rfind("::", full.find('<'));  // "ns::Net<a::b>" -> "Net<a::b>"
  return cut == std::string::npos ? full : full.substr(cut + 2);
}

void Module::check_name(const std::string& name) const {
  TG_CHECK(!name.empty() && name.find('.') == std::string::npos, type_name(), ": invalid name '", name,
           "' (non-empty, no '.')");
  auto taken = [&](const auto& list) {
    for (auto& [n, _] : list)
      if (n == name) return true;
    return false;
  };
  TG_CHECK(!taken(params_) && !taken(buffers_) && !taken(children_), type_name(), ": name '", name,
           "' is already registered");
}

Tensor Module::register_parameter(const std::string& name, Tensor t, bool requires_grad) {
  check_name(name);
  TG_CHECK(t.defined() && t.is_leaf(), type_name(), ": parameter '", name, "' must be a defined leaf tensor");
  t.requires_grad_(requires_grad);
  params_.emplace_back(name, t);
  return t;
}

Tensor Module::register_buffer(const std::string& name, Tensor t) {
  check_name(name);
  TG_CHECK(t.defined(), type_name(), ": buffer '", name, "' is undefined");
  buffers_.emplace_back(name, t);
  return t;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> m) {
  check_name(name);
  TG_CHECK(m != nullptr, type_name(), ": submodule '", name, "' is null");
  m->train(training_);
  children_.emplace_back(name, std::move(m));
}

void Module::collect(const std::string& prefix, bool params, std::vector<std::pair<std::string, Tensor>>& out) const {
  for (auto& [n, t] : params ? params_ : buffers_) out.emplace_back(prefix + n, t);
  for (auto& [n, c] : children_) c->collect(prefix + n + ".", params, out);
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters() const {
  std::vector<std::pair<std::string, Tensor>> out;
  collect("", true, out);
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers() const {
  std::vector<std::pair<std::string, Tensor>> out;
  collect("", false, out);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [_, t] : named_parameters()) out.push_back(t);
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& t : parameters()) n += t.numel();
  return n;
}

TensorDict Module::state_dict() const {
  TensorDict d;
  for (auto& [n, t] : named_parameters()) d[n] = t;
  for (auto& [n, t] : named_buffers()) d[n] = t;
  return d;
}

void Module::load_state_dict(const TensorDict& dict, bool strict) {
  TensorDict own = state_dict();
  std::string missing, unexpected;
  for (auto& [n, _] : own)
    if (!dict.count(n)) missing += (missing.empty() ? "" : ", ") + n;
  for (auto& [n, _] : dict)
    if (!own.count(n)) unexpected += (unexpected.empty() ? "" : ", ") + n;
  TG_CHECK(!strict || (missing.empty() && unexpected.empty()), type_name(), ".load_state_dict: ",
           missing.empty() ? "" : "missing keys: " + missing, missing.empty() || unexpected.empty() ? "" : "; ",
           unexpected.empty() ? "" : "unexpected keys: " + unexpected);
  for (auto& [n, t] : own) {
    auto it = dict.find(n);
    if (it == dict.end()) continue;
    TG_CHECK(it->second.shape() == t.shape(), type_name(), ".load_state_dict: '", n, "' has shape ",
             it->second.shape(), ", the module expects ", t.shape());
    TG_CHECK(it->second.dtype() == t.dtype(), type_name(), ".load_state_dict: '", n, "' has dtype ",
             it->second.dtype(), ", the module expects ", t.dtype());
  }
  NoGradGuard guard;
  for (auto& [n, t] : own) {
    auto it = dict.find(n);
    if (it != dict.end()) Tensor(t).copy_(it->second);
  }
}

void Module::collect_modules(const std::string& prefix, std::vector<std::pair<std::string, Module*>>& out) {
  out.emplace_back(prefix, this);
  for (auto& [n, c] : children_) c->collect_modules(prefix.empty() ? n : prefix + "." + n, out);
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> out;
  collect_modules("", out);
  return out;
}

Module& Module::apply(const std::function<void(Module&)>& fn) {
  for (auto& [_, c] : children_) c->apply(fn);
  fn(*this);
  return *this;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [_, c] : children_) c->train(on);
}

void Module::zero_grad() {
  for (auto& t : parameters()) t.zero_grad();
}

void Module::to(DType d) {
  auto convert = [d](Tensor& t) {
    if (t.dtype() == d || t.dtype() == DType::I64) return;  // counters (num_batches_tracked) stay i64
    Tensor c = t.detach().to(d);
    TensorImpl& impl = t.impl();  // swap the data under the same handle: optimizers keep theirs
    impl.storage = c.impl().storage;
    impl.offset = c.impl().offset;
    impl.dtype = d;
    impl.grad.reset();
  };
  for (auto& [_, t] : params_) convert(t);
  for (auto& [_, t] : buffers_) convert(t);
  for (auto& [_, c] : children_) c->to(d);
}

void Module::to(Device d) {
  auto move = [d](Tensor& t) {
    if (t.device() == d) return;
    Tensor c = t.detach().to(d);
    TensorImpl& impl = t.impl();  // swap the data under the same handle: optimizers keep theirs
    if (impl.grad) impl.grad = Tensor(impl.grad).to(d).impl_ptr();
    impl.storage = c.impl().storage;
    impl.offset = c.impl().offset;
    impl.device = d;
  };
  for (auto& [_, t] : params_) move(t);
  for (auto& [_, t] : buffers_) move(t);
  for (auto& [_, c] : children_) c->to(d);
}

ModuleList::ModuleList(std::initializer_list<std::shared_ptr<Module>> modules) : Module("ModuleList") {
  for (auto& m : modules) push_back(m);
}

void ModuleList::push_back(std::shared_ptr<Module> m) {
  register_module(std::to_string(modules_.size()), m);
  modules_.push_back(std::move(m));
}

const std::shared_ptr<Module>& ModuleList::operator[](size_t i) const {
  TG_CHECK(i < modules_.size(), "ModuleList: index ", i, " is out of range (", modules_.size(), " modules)");
  return modules_[i];
}

void ModuleList::throw_wrong_type(size_t i) const {
  TG_FAIL("ModuleList: module ", i, " is a ", modules_[i]->type_name(), ", not the type asked for");
}

}  // namespace tapegrad::nn
