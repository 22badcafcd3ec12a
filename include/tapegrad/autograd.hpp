// The tape: reverse-mode automatic differentiation as a list.
//
// While recording is on (no NoGradGuard active) and an op's input requires grad, the op appends a Node
// to the thread-local tape. The Node holds the op's inputs and a backward function that captured what
// the op saved. backward() seeds the output gradient and walks the tape from its end to its start: no
// recursion and no sort, since creation order is already a topological order. Each Node turns its output
// gradients into input gradients, hands them to the producing Node (non-leaf) or accumulates them into
// .grad() (leaf), then releases what it saved. Nodes are owned by the tensors they produced (through
// grad_fn); the tape only keeps weak references, so a graph that is never differentiated frees itself.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "tapegrad/tensor.hpp"

namespace tapegrad {

using Grads = std::vector<Tensor>;
// One gradient per output in (zeros where none arrived), one per input out (undefined where none).
using BackwardFn = std::function<Grads(const Grads& grad_outputs)>;

struct Node {
  const char* name = "";
  std::vector<std::shared_ptr<TensorImpl>> inputs;  // null where that input needs no gradient
  std::vector<Shape> output_shapes;
  DType dtype = DType::F32;
  Device device = Device::CPU;
  Grads grad_outputs;  // accumulated during backward
  BackwardFn backward;
  bool released = false;  // backward ran and freed what was saved
};

// True when recording is on and one of the tensors requires grad: the op must record a Node.
bool needs_grad(const std::vector<Tensor>& inputs);

// Records `outputs = name(inputs)` with its backward function (call only when needs_grad(inputs)).
void record(const char* name, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs,
            BackwardFn backward);

// Reverse-mode pass from `outputs` seeded with `grad_outputs` (same shapes). Tensor::backward calls it.
void backward(const std::vector<Tensor>& outputs, const std::vector<Tensor>& grad_outputs);

// Number of live nodes on this thread's tape (for tests and leak checks).
size_t tape_size();

// Gradient-ready hooks: fn(leaf) runs inside backward() as soon as the leaf's .grad() is final for that walk,
// i.e. once the walk has passed the last node (in reverse order) that can send it a gradient; once per
// backward() whose graph reaches the leaf, in the order the gradients become final. The grad may be undefined
// there (no gradient arrived). dist::DataParallel starts averaging a gradient here while the walk goes on.
// Hooks belong to this thread; the handle removes its hook when destroyed. No hook, no cost.
class GradHook {
 public:
  GradHook() = default;
  explicit GradHook(uint64_t id) : id_(id) {}
  GradHook(GradHook&& o) noexcept : id_(o.id_) { o.id_ = 0; }
  GradHook& operator=(GradHook&& o) noexcept;
  GradHook(const GradHook&) = delete;
  GradHook& operator=(const GradHook&) = delete;
  ~GradHook();

 private:
  uint64_t id_ = 0;
};
GradHook add_grad_ready_hook(const Tensor& leaf, std::function<void(const Tensor& leaf)> fn);

}  // namespace tapegrad
