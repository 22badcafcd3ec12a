// Module: a node of the model tree that owns named parameters, buffers and submodules.
//
// Registration by name gives named_parameters() with dotted paths ("body.0.weight"), state_dict() and
// checkpoints for free. Layer is a Module with a one-tensor forward (what Sequential chains).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tapegrad/tensor.hpp"

namespace tapegrad {

using TensorDict = std::map<std::string, Tensor>;

namespace nn {

// A shared_ptr to a submodule that is also called like a function: conv1(x) is conv1->forward(x). It is
// what register_module returns, so a member declared as
//   nn::ModuleHolder<nn::Conv2d> conv1 = register_module("conv1", std::make_shared<nn::Conv2d>(1, 8, 3));
// reads as in PyTorch (libtorch's TORCH_MODULE holders play this part there).
template <class M>
class ModuleHolder : public std::shared_ptr<M> {
 public:
  ModuleHolder() = default;
  ModuleHolder(std::shared_ptr<M> m) : std::shared_ptr<M>(std::move(m)) {}
  template <class... Args>
  decltype(auto) operator()(Args&&... args) const {
    return (*this)->forward(std::forward<Args>(args)...);
  }
};

class Module {
 public:
  Module() = default;  // type_name() is then the class's own name
  explicit Module(std::string type_name) : type_name_(std::move(type_name)) {}
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // The name given to the constructor, else the dynamic class name without namespaces ("Net").
  std::string type_name() const;

  // Registration: names are unique within a module and may not contain '.'.
  Tensor register_parameter(const std::string& name, Tensor t, bool requires_grad = true);
  Tensor register_buffer(const std::string& name, Tensor t);
  template <class M>
  ModuleHolder<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    add_child(name, m);
    return m;
  }

  std::vector<Tensor> parameters() const;
  std::vector<std::pair<std::string, Tensor>> named_parameters() const;  // registration order
  std::vector<std::pair<std::string, Tensor>> named_buffers() const;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const { return children_; }
  // This module ("") and every submodule below it by dotted path, parents before children (PyTorch's order).
  // The pointers are valid while this module lives.
  std::vector<std::pair<std::string, Module*>> named_modules();
  // Calls fn on every submodule, children before their parent, then on this module (PyTorch's apply), e.g.
  // to initialise all Linear layers: m.apply([](nn::Module& s) { if (auto* l = dynamic_cast<nn::Linear*>(&s)) ...; })
  Module& apply(const std::function<void(Module&)>& fn);
  int64_t num_parameters() const;

  // Parameters and buffers by dotted name.
  TensorDict state_dict() const;
  // Copies values in place (handles stay valid). strict: the key sets must match exactly. Errors name
  // missing and unexpected keys, and any shape or dtype mismatch.
  void load_state_dict(const TensorDict& dict, bool strict = true);

  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }
  void zero_grad();
  // Converts every float parameter and buffer to dtype, in place (handles stay valid); i64 counters stay.
  void to(DType d);
  // Moves every parameter and buffer (and their gradients) to device d, in place (handles stay valid).
  void to(Device d);

 private:
  void add_child(const std::string& name, std::shared_ptr<Module> m);
  void check_name(const std::string& name) const;
  void collect_modules(const std::string& prefix, std::vector<std::pair<std::string, Module*>>& out);
  void collect(const std::string& prefix, bool params, std::vector<std::pair<std::string, Tensor>>& out) const;

  std::string type_name_;
  bool training_ = true;
  std::vector<std::pair<std::string, Tensor>> params_;
  std::vector<std::pair<std::string, Tensor>> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

// A module that maps one tensor to one tensor.
class Layer : public Module {
 public:
  using Module::Module;
  virtual Tensor forward(const Tensor& x) = 0;
  Tensor operator()(const Tensor& x) { return forward(x); }
};

// Holds submodules in a list, named "0", "1", ... (their parameters are "0.weight", ...); forward is the
// user's loop over them. at<M>(i) gives the i-th as an M (an Error if it is not one).
class ModuleList : public Module {
 public:
  ModuleList() : Module("ModuleList") {}
  ModuleList(std::initializer_list<std::shared_ptr<Module>> modules);
  void push_back(std::shared_ptr<Module> m);
  size_t size() const { return modules_.size(); }
  const std::shared_ptr<Module>& operator[](size_t i) const;
  template <class M>
  ModuleHolder<M> at(size_t i) const {
    auto m = std::dynamic_pointer_cast<M>((*this)[i]);
    if (!m) throw_wrong_type(i);
    return m;
  }
  auto begin() const { return modules_.begin(); }
  auto end() const { return modules_.end(); }

 private:
  [[noreturn]] void throw_wrong_type(size_t i) const;
  std::vector<std::shared_ptr<Module>> modules_;
};

}  // namespace nn
}  // namespace tapegrad
