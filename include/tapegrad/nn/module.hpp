// Module: a node of the model tree that owns named parameters, buffers and submodules.
//
// Registration by name gives named_parameters() with dotted paths ("body.0.weight"), state_dict() and
// checkpoints for free. Layer is a Module with a one-tensor forward (what Sequential chains).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tapegrad/tensor.hpp"

namespace tapegrad {

using TensorDict = std::map<std::string, Tensor>;

namespace nn {

class Module {
 public:
  explicit Module(std::string type_name) : type_name_(std::move(type_name)) {}
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  const std::string& type_name() const { return type_name_; }

  // Registration: names are unique within a module and may not contain '.'.
  Tensor register_parameter(const std::string& name, Tensor t, bool requires_grad = true);
  Tensor register_buffer(const std::string& name, Tensor t);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    add_child(name, m);
    return m;
  }

  std::vector<Tensor> parameters() const;
  std::vector<std::pair<std::string, Tensor>> named_parameters() const;  // registration order
  std::vector<std::pair<std::string, Tensor>> named_buffers() const;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const { return children_; }
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

}  // namespace nn
}  // namespace tapegrad
