// Tensor: a handle to contiguous row-major storage with a shape, a dtype and a device.
//
// Handles share their implementation (copying a Tensor copies the handle, not the data); views made
// by reshape()/view()/detach() share the storage itself. Every tensor is contiguous: transpose, permute
// and slicing along an inner dimension produce new storage. F32 and F64 are the float dtypes (F64 serves
// gradient checks and exact comparisons); I64 holds indices and labels and takes no arithmetic.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "tapegrad/error.hpp"

namespace tapegrad {

enum class DType { F32, F64, I64 };
// Test is for tests only: the CPU kernels under their own tag and memory, so that a tensor that silently
// lands on the CPU (or host code reading device memory) fails a test on machines without a GPU.
enum class Device { CPU, CUDA, Test };

using Shape = std::vector<int64_t>;

const char* name(DType d);
const char* name(Device d);
size_t size_of(DType d);
int64_t numel(const Shape& s);
std::string to_string(const Shape& s);  // "[3, 4]"
std::ostream& operator<<(std::ostream& os, DType d);
std::ostream& operator<<(std::ostream& os, Device d);
Device device_from_name(const std::string& s);  // "cpu", "cuda", "test"; anything else throws
bool cuda_available();                          // a CUDA build with at least one GPU
void synchronize(Device d);                     // waits for d's queued work (CUDA); a no-op elsewhere
// CUDA f32 matrix products are exact FP32 unless TF32 tensor cores (about 1e-3 relative) are allowed.
void set_allow_tf32(bool on);
bool allow_tf32();
// cuDNN: only deterministic algorithms (bit-identical GPU runs, exact resume); the CPU always is.
void set_deterministic(bool on);
bool deterministic();
// The bytes handed out to tensors on a device (the CUDA caching allocator's, the CPU's block cache's): now, at most
// since the last reset_peak_memory (benchmarks: peak memory), and freed blocks the allocator keeps for reuse.
// 0 for CUDA without a GPU.
struct MemoryUse {
  size_t in_use = 0, peak = 0, cached = 0;
};
MemoryUse memory_use(Device d);
void reset_peak_memory(Device d);
// The CPU's algorithm for f32 3x3 stride-1 convolutions: Winograd's F(4x4, 3x3) (about 4x fewer multiplications,
// errors about 10x those of the direct products) where it measured faster (Auto), nowhere (Direct) or wherever it
// applies (Winograd). Initially from TG_CONV (auto | direct | winograd; unset: auto).
enum class ConvAlgorithm { Auto, Direct, Winograd };
void set_conv_algorithm(ConvAlgorithm a);
ConvAlgorithm conv_algorithm();  // throws for an unknown TG_CONV when no set_conv_algorithm came first

// What a factory makes: a dtype and a device. Converts from either, so that zeros(s), zeros(s, DType::F64),
// zeros(s, Device::CUDA) and zeros(s, {DType::F64, Device::CUDA}) all read as they should.
struct TensorOptions {
  DType dtype = DType::F32;
  Device device = Device::CPU;
  TensorOptions() = default;
  TensorOptions(DType d, Device dev = Device::CPU) : dtype(d), device(dev) {}
  TensorOptions(Device dev) : device(dev) {}
};

template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::F32; }
template <> constexpr DType dtype_of<double>() { return DType::F64; }
template <> constexpr DType dtype_of<int64_t>() { return DType::I64; }

// A seeded pseudo-random source. Same seed, same numbers, on every platform (the distributions are
// computed here, not by the standard library, whose normal distribution is implementation-defined).
class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : engine_(seed) {}
  void seed(uint64_t s) { engine_.seed(s); }
  uint64_t next_u64() { return engine_(); }
  double uniform();                    // [0, 1)
  double uniform(double lo, double hi);
  double normal(double mean = 0.0, double std = 1.0);
  int64_t randint(int64_t n);          // [0, n)
  // The engine state, for checkpoints (exact resume of data order and dropout masks).
  std::string state() const;
  void set_state(const std::string& s);

 private:
  std::mt19937_64 engine_;
};

Generator& default_generator();
void manual_seed(uint64_t seed);

struct Storage;
struct Node;

// One entry of Tensor::index(): an integer picks one position and drops the dim (negative counts from the
// end); a Slice keeps the dim with the positions [start, stop), clamped to the dim as Python's a[start:stop]
// (negative values count from the end). Slice() is the whole dim.
struct Slice {
  int64_t start = 0, stop = INT64_MAX;
  Slice() = default;
  Slice(int64_t start_, int64_t stop_ = INT64_MAX) : start(start_), stop(stop_) {}
};
struct TensorIndex {
  TensorIndex(int64_t i) : index(i) {}
  TensorIndex(int i) : index(i) {}
  TensorIndex(Slice s) : is_slice(true), slice(s) {}
  bool is_slice = false;
  int64_t index = 0;
  Slice slice;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // in elements
  Shape shape;
  DType dtype = DType::F32;
  Device device = Device::CPU;
  uint64_t id = 0;  // stable identity: never reused in a process
  bool requires_grad = false;        // meaningful on leaves
  std::shared_ptr<TensorImpl> grad;  // accumulated gradient of a leaf
  std::shared_ptr<Node> grad_fn;     // the node that produced this tensor (non-leaves)
  int output_nr = 0;                 // which output of grad_fn this is
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  int64_t dim() const { return static_cast<int64_t>(impl().shape.size()); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t numel() const { return tapegrad::numel(impl().shape); }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().device; }
  uint64_t id() const { return impl().id; }

  // Raw element access: CPU tensors only (and the kernels of other devices). Throws when T does not match
  // the dtype or the tensor is elsewhere: copy it with cpu() first.
  template <class T> T* data() { check_access(dtype_of<T>()); return static_cast<T*>(raw_data()); }
  template <class T> const T* data() const { check_access(dtype_of<T>()); return static_cast<const T*>(raw_data()); }
  void* raw_data() const;
  template <class T = double> std::vector<T> to_vector() const;  // converts from the dtype; waits for the device
  double item() const;  // a one-element tensor's value; waits for the device

  // Autograd.
  bool requires_grad() const;
  Tensor& requires_grad_(bool on = true);  // leaves only
  bool is_leaf() const { return impl().grad_fn == nullptr; }
  Tensor grad() const;           // undefined until backward reaches this leaf
  void set_grad(const Tensor& g);
  void zero_grad();              // drops the gradient (set to undefined)
  void backward() const;                         // a one-element tensor
  void backward(const Tensor& gradient) const;   // any shape, gradient of the same shape
  Tensor detach() const;  // same storage, no history, requires_grad false

  // Shape and copies (recorded on the tape, so gradients flow through them).
  Tensor reshape(const Shape& s) const;  // one dim may be -1
  Tensor view(const Shape& s) const { return reshape(s); }
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor t() const { return transpose(0, 1); }
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end) const;  // [start, end) along dim
  Tensor clone() const;
  Tensor to(DType d) const;
  Tensor to(Device d) const;  // a copy on d (this tensor when already there); gradients flow back
  Tensor cpu() const { return to(Device::CPU); }
  Tensor cuda() const { return to(Device::CUDA); }

  // In-place, outside autograd (optimizers, init, loading): the storage changes, the history does not.
  Tensor& copy_(const Tensor& src);  // same numel; converts dtype, copies across devices
  Tensor& fill_(double value);

  // ---- Indexing and method forms (src/tensor_api.cpp) ---------------------------------------------------
  // The functions of ops.hpp as methods, recorded on the tape as those are. Indexing copies (as slice()).
  Tensor operator[](int64_t i) const { return select(0, i); }  // t[i]: the i-th entry of dim 0, that dim dropped
  Tensor select(int64_t dim, int64_t i) const;                 // negative i counts from the end
  Tensor index(const std::vector<TensorIndex>& idx) const;     // t.index({Slice(1, 3), 0}): leading dims, rest kept
  Tensor unsqueeze(int64_t dim) const;                         // a size-1 dim inserted at dim (shares storage)
  Tensor squeeze() const;                                      // every size-1 dim dropped (shares storage)
  Tensor squeeze(int64_t dim) const;                           // that dim dropped if it has size 1
  Tensor expand(const Shape& s) const;

  Tensor sum() const;
  Tensor sum(int64_t dim, bool keepdim = false) const;
  Tensor sum(const std::vector<int64_t>& dims, bool keepdim = false) const;
  Tensor mean() const;
  Tensor mean(int64_t dim, bool keepdim = false) const;
  Tensor mean(const std::vector<int64_t>& dims, bool keepdim = false) const;
  Tensor max() const;
  Tensor max(int64_t dim, bool keepdim = false) const;
  Tensor argmax(int64_t dim) const;

  Tensor exp() const;
  Tensor log() const;
  Tensor sqrt() const;
  Tensor abs() const;
  Tensor pow(double exponent) const;
  Tensor tanh() const;
  Tensor sigmoid() const;
  Tensor relu() const;
  Tensor softmax(int64_t dim) const;
  Tensor log_softmax(int64_t dim) const;
  Tensor matmul(const Tensor& other) const;

  // Comparisons, broadcasting: masks of 1 and 0 in the inputs' float dtype (f32 for i64 inputs), no gradient.
  Tensor eq(const Tensor& o) const;
  Tensor ne(const Tensor& o) const;
  Tensor lt(const Tensor& o) const;
  Tensor le(const Tensor& o) const;
  Tensor gt(const Tensor& o) const;
  Tensor ge(const Tensor& o) const;
  Tensor eq(double v) const;
  Tensor ne(double v) const;
  Tensor lt(double v) const;
  Tensor le(double v) const;
  Tensor gt(double v) const;
  Tensor ge(double v) const;

  // In place, for tensors outside a graph (accumulators, statistics, parameters under NoGradGuard): an Error
  // when recording is on and either side requires grad. The other side broadcasts to this tensor's shape.
  // A tensor saved by an earlier op for its backward must not be changed before that backward runs.
  Tensor& operator+=(const Tensor& o);
  Tensor& operator-=(const Tensor& o);
  Tensor& operator*=(const Tensor& o);
  Tensor& operator/=(const Tensor& o);
  Tensor& operator+=(double v);
  Tensor& operator-=(double v);
  Tensor& operator*=(double v);
  Tensor& operator/=(double v);
  // ---------------------------------------------------------------------------------------------------------

  TensorImpl& impl() const;
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }

 private:
  void check_access(DType want) const;
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// Factories: F32 on the CPU unless the options say otherwise. Random numbers are drawn on the host, so
// every device gets the same values from the same generator state.
Tensor empty(const Shape& s, TensorOptions o = {});
Tensor zeros(const Shape& s, TensorOptions o = {});
Tensor ones(const Shape& s, TensorOptions o = {});
Tensor full(const Shape& s, double value, TensorOptions o = {});
Tensor zeros_like(const Tensor& t);  // t's shape, dtype and device
Tensor ones_like(const Tensor& t);
Tensor arange(double start, double end, double step = 1.0, TensorOptions o = {});
Tensor arange(int64_t n, TensorOptions o = {});
Tensor rand(const Shape& s, Generator& g = default_generator(), TensorOptions o = {});   // U[0,1)
Tensor rand(const Shape& s, TensorOptions o);
Tensor randn(const Shape& s, Generator& g = default_generator(), TensorOptions o = {});  // N(0,1)
Tensor randn(const Shape& s, TensorOptions o);
Tensor randint(int64_t high, const Shape& s, Generator& g = default_generator(), Device dev = Device::CPU);  // I64 [0, high)
Tensor randint(int64_t high, const Shape& s, Device dev);
Tensor from_vector(const std::vector<float>& v, const Shape& s, Device dev = Device::CPU);
Tensor from_vector(const std::vector<double>& v, const Shape& s, Device dev = Device::CPU);
Tensor from_vector(const std::vector<int64_t>& v, const Shape& s, Device dev = Device::CPU);
// from_vector({1.0, 2.0}, {2}): the literal's type picks the dtype (double: F64, float: F32, integers: I64).
template <class T>
Tensor from_vector(std::initializer_list<T> v, const Shape& s, Device dev = Device::CPU) {
  if constexpr (std::is_integral_v<T>) return from_vector(std::vector<int64_t>(v.begin(), v.end()), s, dev);
  else return from_vector(std::vector<T>(v), s, dev);
}
Tensor scalar(double value, TensorOptions o = {});  // shape []

// Concatenation along dim (recorded on the tape).
Tensor concat(const std::vector<Tensor>& ts, int64_t dim);

// Turns off recording in its scope (evaluation, optimizer steps). Nests.
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};
bool grad_enabled();

}  // namespace tapegrad
