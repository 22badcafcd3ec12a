// The tape and the reverse walk (see autograd.hpp for the model).
#include "tapegrad/autograd.hpp"

#include <algorithm>
#include <unordered_map>

#include "backend.hpp"
#include "internal.hpp"

namespace tapegrad {

namespace {

thread_local bool g_grad_enabled = true;

// The tape: weak references in creation order. Expired entries (graphs dropped without backward) are
// compacted away when the tape has doubled since the last compaction.
struct Tape {
  std::vector<std::weak_ptr<Node>> nodes;
  size_t compact_at = 1024;

  void push(const std::shared_ptr<Node>& n) {
    if (nodes.size() >= compact_at) {
      std::erase_if(nodes, [](const std::weak_ptr<Node>& w) { return w.expired(); });
      compact_at = std::max<size_t>(1024, 2 * nodes.size());
    }
    nodes.push_back(n);
  }
};
thread_local Tape g_tape;

// Gradient-ready hooks by leaf id (ids are never reused), each with its handle's id.
struct Hook {
  uint64_t handle;
  std::function<void(const Tensor&)> fn;
};
thread_local std::unordered_map<uint64_t, std::vector<Hook>> g_hooks;
thread_local uint64_t g_next_hook = 1;

// For each tape index, the hooked leaves whose gradient is final once the walk has passed that node: the
// lowest index among the nodes the walk can reach (from the seeded outputs) that take the leaf as input.
// Creation order is topological, so one reverse pass finds what is reachable.
struct HookSchedule {
  std::vector<std::vector<std::shared_ptr<TensorImpl>>> at;  // by tape index
  std::vector<std::shared_ptr<TensorImpl>> seeded;            // hooked leaves among the outputs, used by no node
};
HookSchedule hooked_leaves_final_at(const std::vector<std::shared_ptr<Node>>& nodes,
                                    const std::vector<Tensor>& outputs) {
  HookSchedule s;
  auto& final_at = s.at;
  final_at.resize(nodes.size());
  std::unordered_map<const Node*, size_t> index;
  for (size_t i = 0; i < nodes.size(); ++i)
    if (nodes[i]) index[nodes[i].get()] = i;
  std::vector<char> reach(nodes.size(), 0);
  for (const Tensor& y : outputs)
    if (auto& fn = y.impl().grad_fn; fn && index.count(fn.get())) reach[index[fn.get()]] = 1;
  std::unordered_map<uint64_t, size_t> last;  // leaf id -> lowest reachable index using it
  std::unordered_map<uint64_t, std::shared_ptr<TensorImpl>> leaf_of;
  for (size_t i = nodes.size(); i-- > 0;) {
    if (!reach[i] || nodes[i]->released) continue;
    for (auto& in : nodes[i]->inputs) {
      if (!in) continue;
      if (in->grad_fn) {
        if (auto it = index.find(in->grad_fn.get()); it != index.end()) reach[it->second] = 1;
      } else if (g_hooks.count(in->id)) {
        last[in->id] = i;
        leaf_of[in->id] = in;
      }
    }
  }
  for (auto& [id, i] : last) final_at[i].push_back(leaf_of[id]);
  // Several leaves final at one node: in the order of their ids (creation), the same on every run.
  for (auto& v : final_at)
    std::sort(v.begin(), v.end(), [](auto& a, auto& b) { return a->id < b->id; });
  for (const Tensor& y : outputs)
    if (!y.impl().grad_fn && g_hooks.count(y.id()) && !last.count(y.id())) s.seeded.push_back(y.impl_ptr());
  return s;
}

void run_hooks(const std::shared_ptr<TensorImpl>& leaf) {
  auto it = g_hooks.find(leaf->id);
  if (it == g_hooks.end()) return;
  std::vector<Hook> hooks = it->second;  // a hook may add or remove hooks
  Tensor t(leaf);
  for (auto& h : hooks) h.fn(t);
}

}  // namespace

GradHook& GradHook::operator=(GradHook&& o) noexcept {
  if (this != &o) {
    this->~GradHook();
    id_ = o.id_;
    o.id_ = 0;
  }
  return *this;
}

GradHook::~GradHook() {
  if (id_ == 0) return;
  for (auto it = g_hooks.begin(); it != g_hooks.end(); ++it) {
    std::erase_if(it->second, [&](const Hook& h) { return h.handle == id_; });
    if (it->second.empty()) {
      g_hooks.erase(it);
      break;
    }
  }
}

GradHook add_grad_ready_hook(const Tensor& leaf, std::function<void(const Tensor& leaf)> fn) {
  TG_CHECK(leaf.defined() && leaf.is_leaf() && leaf.requires_grad(),
           "add_grad_ready_hook: the tensor must be a leaf that requires grad");
  const uint64_t handle = g_next_hook++;
  g_hooks[leaf.id()].push_back({handle, std::move(fn)});
  return GradHook(handle);
}

NoGradGuard::NoGradGuard() : prev_(g_grad_enabled) { g_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { g_grad_enabled = prev_; }
bool grad_enabled() { return g_grad_enabled; }

bool needs_grad(const std::vector<Tensor>& inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

void record(const char* name, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs,
            BackwardFn backward) {
  auto node = std::make_shared<Node>();
  node->name = name;
  node->inputs.reserve(inputs.size());
  for (const Tensor& t : inputs)
    node->inputs.push_back(t.defined() && t.requires_grad() ? t.impl_ptr() : nullptr);
  for (size_t i = 0; i < outputs.size(); ++i) {
    TensorImpl& o = outputs[i].impl();
    node->output_shapes.push_back(o.shape);
    o.grad_fn = node;
    o.output_nr = static_cast<int>(i);
  }
  node->dtype = outputs.at(0).dtype();
  node->device = outputs.at(0).device();
  node->grad_outputs.resize(outputs.size());
  node->backward = std::move(backward);
  g_tape.push(node);
}

size_t tape_size() {
  return static_cast<size_t>(
      std::count_if(g_tape.nodes.begin(), g_tape.nodes.end(), [](auto& w) { return !w.expired(); }));
}

// slot += g, out of place: gradients are often the same tensor handed to several inputs (add returns
// g for both), so an in-place sum could change another slot. A fresh slot takes g itself (no copy).
static Tensor sum_of(const Tensor& a, const Tensor& b) {
  Tensor out = make_tensor(a.shape(), a.dtype(), a.device());
  backend::binary(backend::Binary::Add, a, b, out);
  return out;
}
// A leaf's .grad() belongs to the user (clipping scales it in place), so it never shares storage:
// a gradient that something else still holds is copied first.
static void accumulate_into(std::shared_ptr<TensorImpl>& leaf_grad, Tensor g) {
  if (leaf_grad) {
    leaf_grad = sum_of(Tensor(leaf_grad), g).impl_ptr();
    return;
  }
  bool exclusive = g.impl_ptr().use_count() == 1 && g.impl().storage.use_count() == 1;
  leaf_grad = (exclusive ? g : g.detach().clone()).impl_ptr();
}
static void accumulate_into(Tensor& slot, const Tensor& g) { slot = slot.defined() ? sum_of(slot, g) : g; }

// One step of the walk: a node that some gradient reached turns its output gradients into input gradients,
// hands them on, then releases what it saved (it stays, owned by its outputs, only as a marker). Returns
// whether it ran.
static bool run_node(Node& node) {
  bool reached = std::any_of(node.grad_outputs.begin(), node.grad_outputs.end(),
                             [](const Tensor& t) { return t.defined(); });
  if (!reached) return false;
  for (size_t k = 0; k < node.grad_outputs.size(); ++k)
    if (!node.grad_outputs[k].defined()) node.grad_outputs[k] = zeros(node.output_shapes[k], {node.dtype, node.device});
  Grads gin = node.backward(node.grad_outputs);
  TG_CHECK(gin.size() == node.inputs.size(), "backward of '", node.name, "' returned ", gin.size(),
           " gradients for ", node.inputs.size(), " inputs");
  for (size_t k = 0; k < gin.size(); ++k) {
    auto& in = node.inputs[k];
    if (!in || !gin[k].defined()) continue;
    TG_CHECK(gin[k].shape() == in->shape, "backward of '", node.name, "': gradient ", gin[k].shape(),
             " for input ", k, " of shape ", in->shape);
    if (in->grad_fn) {
      TG_CHECK(!in->grad_fn->released, "backward: part of the graph (op '", in->grad_fn->name,
               "') was already freed by an earlier backward");
      accumulate_into(in->grad_fn->grad_outputs[in->output_nr], gin[k]);
    } else {
      accumulate_into(in->grad, std::move(gin[k]));
    }
  }
  node.backward = nullptr;
  node.grad_outputs.clear();
  node.inputs.clear();
  node.released = true;
  return true;
}

void backward(const std::vector<Tensor>& outputs, const std::vector<Tensor>& grad_outputs) {
  TG_CHECK(outputs.size() == grad_outputs.size(), "backward: ", outputs.size(), " outputs but ",
           grad_outputs.size(), " gradients");
  NoGradGuard no_grad;  // backward functions compute with plain ops: nothing of it goes on the tape
  bool any = false;
  for (size_t i = 0; i < outputs.size(); ++i) {
    const Tensor& y = outputs[i];
    const Tensor& g = grad_outputs[i];
    TG_CHECK(g.defined() && g.shape() == y.shape() && g.dtype() == y.dtype() && g.device() == y.device(),
             "backward: gradient ", g.defined() ? g.dtype() : y.dtype(), " ",
             g.defined() ? to_string(g.shape()) : "undefined", " on ", g.defined() ? g.device() : y.device(),
             " does not match the output ", y.dtype(), " ", y.shape(), " on ", y.device());
    TensorImpl& impl = y.impl();
    if (impl.grad_fn) {
      TG_CHECK(!impl.grad_fn->released, "backward: the graph of this tensor (op '", impl.grad_fn->name,
               "') was already freed by an earlier backward; recompute the forward pass to differentiate again");
      accumulate_into(impl.grad_fn->grad_outputs[impl.output_nr], g);
      any = true;
    } else if (impl.requires_grad) {
      accumulate_into(impl.grad, g);
      any = true;
    }
  }
  TG_CHECK(any, "backward: the tensor does not require grad (no input of the computation requires grad, "
                "or it ran under NoGradGuard)");

  // Walk the tape from its end. A node runs when some gradient reached it. The walk holds every node
  // it may still reach: a node's only owner can be the tensor that a later node releases.
  auto& tape = g_tape.nodes;
  std::vector<std::shared_ptr<Node>> nodes;
  nodes.reserve(tape.size());
  for (auto& w : tape) nodes.push_back(w.lock());
  const auto final_at = g_hooks.empty() ? HookSchedule{} : hooked_leaves_final_at(nodes, outputs);
  for (size_t i = nodes.size(); i-- > 0;) {
    std::shared_ptr<Node> node = std::move(nodes[i]);
    if (node && !node->released && run_node(*node)) tape[i].reset();
    if (!final_at.at.empty())
      for (auto& leaf : final_at.at[i]) run_hooks(leaf);
  }
  for (auto& leaf : final_at.seeded) run_hooks(leaf);  // outputs that are hooked leaves used by no node
  std::erase_if(tape, [](const std::weak_ptr<Node>& w) { return w.expired(); });
}

}  // namespace tapegrad
