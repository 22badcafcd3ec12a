// Tensor handles, storage, factories and the generator.
#include "tapegrad/tensor.hpp"

#include <atomic>
#include <cmath>
#include <mutex>
#include <unordered_map>
#include <list>
#include <vector>
#include <cstdlib>
#include <ostream>
#include <sstream>

#include <omp.h>

#include "backend.hpp"
#include "internal.hpp"
#include "tapegrad_config.h"
#if TG_CUDA
#include "cuda/runtime.hpp"
#endif
#include "tapegrad/autograd.hpp"
#include "tapegrad/ops.hpp"

namespace tapegrad {

// ---- names, shapes ----------------------------------------------------------------------------

const char* name(DType d) {
  switch (d) {
    case DType::F32: return "f32";
    case DType::F64: return "f64";
    case DType::I64: return "i64";
  }
  return "?";
}
const char* name(Device d) {
  switch (d) {
    case Device::CPU: return "cpu";
    case Device::CUDA: return "cuda";
    case Device::Test: return "test";
  }
  return "?";
}

Device device_from_name(const std::string& s) {
  for (Device d : {Device::CPU, Device::CUDA, Device::Test})
    if (s == name(d)) return d;
  TG_FAIL("unknown device '", s, "' (expected cpu, cuda or test)");
}

bool cuda_available() {
#if TG_CUDA
  return cuda::device_count() > 0;
#else
  return false;
#endif
}

static std::atomic<bool> g_allow_tf32{false};
void set_allow_tf32(bool on) { g_allow_tf32 = on; }
bool allow_tf32() { return g_allow_tf32; }
static std::atomic<bool> g_deterministic{false};
void set_deterministic(bool on) { g_deterministic = on; }
bool deterministic() { return g_deterministic; }


void synchronize(Device d) {
#if TG_CUDA
  if (d == Device::CUDA) cuda::synchronize();
#else
  (void)d;
#endif
}
size_t size_of(DType d) { return d == DType::F32 ? 4 : 8; }

int64_t numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

std::string to_string(const Shape& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}
std::ostream& operator<<(std::ostream& os, const Shape& s) { return os << to_string(s); }
std::ostream& operator<<(std::ostream& os, DType d) { return os << name(d); }
std::ostream& operator<<(std::ostream& os, Device d) { return os << name(d); }

void check_float(const Tensor& t, const char* op) {
  TG_CHECK(t.defined(), op, ": undefined tensor");
  TG_CHECK(t.dtype() != DType::I64, op, ": dtype i64 is not supported (expected f32 or f64), shape ", t.shape());
}
void check_same_dtype(const Tensor& a, const Tensor& b, const char* op) {
  TG_CHECK(a.dtype() == b.dtype(), op, ": dtype mismatch: ", a.dtype(), " ", a.shape(), " vs ", b.dtype(), " ",
           b.shape());
}
void check_same_device(const Tensor& a, const Tensor& b, const char* op) {
  TG_CHECK(a.device() == b.device(), op, ": device mismatch: ", a.device(), " vs ", b.device());
}
int64_t normalize_dim(int64_t dim, int64_t ndim, const char* op) {
  int64_t d = dim < 0 ? dim + ndim : dim;
  TG_CHECK(d >= 0 && d < std::max<int64_t>(ndim, 1), op, ": dim ", dim, " out of range for a tensor of ", ndim,
           " dims");
  return d;
}

// ---- storage --------------------------------------------------------------------------------

namespace {

// Freed CPU blocks, kept by size for the next tensor of that size. A training step allocates the same
// sizes every time, and memory fresh from the OS costs a page fault per 4 KiB page (measured here: a
// 128x784x256 linear layer ran 6x slower on fresh memory). A size not in the cache first releases the least
// recently freed blocks, as many bytes as it asks for, so that blocks of sizes no longer asked for are not held
// beside new ones: the footprint stays the most bytes ever in use at once, not that plus the cache. At most
// kCacheBytes are kept.
class BlockCache {
 public:
  static BlockCache& instance() {
    static BlockCache* c = new BlockCache;  // never destroyed: tensors may outlive static destructors
    return *c;
  }
  void* get(size_t bytes) {
    std::vector<void*> release;
    {
      std::lock_guard<std::mutex> lock(mu_);
      in_use_ += bytes;
      peak_ = std::max(peak_, in_use_);
      auto it = free_.find(bytes);
      if (it != free_.end()) {
        void* p = it->second->ptr;
        lru_.erase(it->second);
        free_.erase(it);
        cached_ -= bytes;
        return p;
      }
      for (size_t freed = 0; freed < bytes && !lru_.empty();) {  // oldest first
        const Block& b = lru_.back();
        for (auto [i, e] = free_.equal_range(b.bytes); i != e; ++i)
          if (i->second == std::prev(lru_.end())) { free_.erase(i); break; }
        release.push_back(b.ptr);
        freed += b.bytes;
        cached_ -= b.bytes;
        lru_.pop_back();
      }
    }
    for (void* p : release) std::free(p);
    return std::aligned_alloc(64, bytes);
  }
  void put(void* p, size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      in_use_ -= bytes;
      if (cached_ + bytes <= kCacheBytes) {
        lru_.push_front({p, bytes});
        free_.emplace(bytes, lru_.begin());
        cached_ += bytes;
        return;
      }
    }
    std::free(p);
  }
  MemoryUse use() {
    std::lock_guard<std::mutex> lock(mu_);
    return {in_use_, peak_, cached_};
  }
  void reset_peak() {
    std::lock_guard<std::mutex> lock(mu_);
    peak_ = in_use_;
  }

 private:
  struct Block {
    void* ptr;
    size_t bytes;
  };
  static constexpr size_t kCacheBytes = size_t{1} << 30;
  std::mutex mu_;
  std::list<Block> lru_;  // most recently freed first
  std::unordered_multimap<size_t, std::list<Block>::iterator> free_;
  size_t cached_ = 0, in_use_ = 0, peak_ = 0;
};

// 64-byte aligned (AVX-512); large sizes rounded to whole pages so that near sizes share blocks.
size_t rounded(size_t nbytes) {
  size_t align = nbytes >= (size_t{1} << 16) ? 4096 : 64;
  return (std::max<size_t>(nbytes, 1) + align - 1) / align * align;
}

}  // namespace

// The test device has its own cache: its blocks never serve a CPU tensor, nor the other way round.
static BlockCache& cache_of(Device dev) {
  static BlockCache* test = new BlockCache;
  return dev == Device::Test ? *test : BlockCache::instance();
}

// Bytes in tensors now and at most since reset_peak_memory: the CUDA caching allocator's, or the CPU's (or
// the test device's) block cache's.
MemoryUse memory_use(Device d) {
#if TG_CUDA
  if (d == Device::CUDA && cuda_available()) {
    const cuda::MemoryStats s = cuda::memory_stats();
    return {s.in_use, s.peak, s.cached};
  }
#endif
  return d == Device::CUDA ? MemoryUse{} : cache_of(d).use();
}
void reset_peak_memory(Device d) {
#if TG_CUDA
  if (d == Device::CUDA && cuda_available()) cuda::reset_peak();
#endif
  if (d != Device::CUDA) cache_of(d).reset_peak();
}

Storage::Storage(size_t nbytes, Device dev) : bytes(nbytes), device(dev) {
  if (dev == Device::CUDA) {
#if TG_CUDA
    data = cuda::allocate(nbytes);
    return;
#else
    TG_FAIL("allocation of ", nbytes, " bytes on cuda: this build has no CUDA backend (configure with -Dcuda=enabled)");
#endif
  }
  data = cache_of(dev).get(rounded(nbytes));
  TG_CHECK(data != nullptr, "out of memory allocating ", nbytes, " bytes on ", dev);
}
Storage::~Storage() {
#if TG_CUDA
  if (device == Device::CUDA) {
    cuda::release(data, bytes);
    return;
  }
#endif
  cache_of(device).put(data, rounded(bytes));
}

namespace {
thread_local int g_kernel_depth = 0;
}
KernelScope::KernelScope() { ++g_kernel_depth; }
KernelScope::~KernelScope() { --g_kernel_depth; }

void copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes) {
  if (bytes == 0) return;
#if TG_CUDA
  if (dst_dev == Device::CUDA || src_dev == Device::CUDA) {
    // The test device is host memory under another tag: it travels like the CPU's.
    return cuda::copy(dst, dst_dev == Device::CUDA, src, src_dev == Device::CUDA, bytes);
  }
#endif
  TG_CHECK(dst_dev != Device::CUDA && src_dev != Device::CUDA, "copy from ", src_dev, " to ", dst_dev,
           ": this build has no CUDA backend");
  std::memcpy(dst, src, bytes);
}

static std::atomic<uint64_t> next_id{1};

Tensor make_tensor(const Shape& s, DType d, Device dev) {
  for (int64_t x : s) TG_CHECK(x >= 0, "tensor shape ", s, " has a negative dimension");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(static_cast<size_t>(numel(s)) * size_of(d), dev);
  impl->shape = s;
  impl->dtype = d;
  impl->device = dev;
  impl->id = next_id++;
  return Tensor(std::move(impl));
}

Tensor alias(const Tensor& t, const Shape& s) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = t.impl().storage;
  impl->offset = t.impl().offset;
  impl->shape = s;
  impl->dtype = t.dtype();
  impl->device = t.device();
  impl->id = next_id++;
  return Tensor(std::move(impl));
}

// ---- Tensor ---------------------------------------------------------------------------------

TensorImpl& Tensor::impl() const {
  TG_CHECK(impl_ != nullptr, "use of an undefined tensor");
  return *impl_;
}

int64_t Tensor::size(int64_t d) const { return shape()[normalize_dim(d, dim(), "size")]; }

// Host code reads only host memory: other devices' memory is open to the kernels that the facade runs
// (KernelScope; OpenMP workers inside them), and to nothing else.
void* Tensor::raw_data() const {
  auto& i = impl();
  TG_CHECK(i.device == Device::CPU || g_kernel_depth > 0 || omp_in_parallel(), "raw_data/data(): the tensor ",
           i.shape, " is on ", i.device, ", not the CPU; copy it with cpu() first");
  return static_cast<char*>(i.storage->data) + i.offset * static_cast<int64_t>(size_of(i.dtype));
}

void Tensor::check_access(DType want) const {
  TG_CHECK(dtype() == want, "data<", name(want), ">() on a tensor of dtype ", dtype(), ", shape ", shape());
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  if (device() != Device::CPU) return detach().to(Device::CPU).to_vector<T>();
  std::vector<T> out(static_cast<size_t>(numel()));
  dispatch_all(dtype(), [&]<class S>() {
    const S* p = static_cast<const S*>(raw_data());
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<T>(p[i]);
  });
  return out;
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;

double Tensor::item() const {
  TG_CHECK(numel() == 1, "item(): expected a one-element tensor, got shape ", shape());
  return to_vector<double>()[0];
}

bool Tensor::requires_grad() const { return impl().requires_grad || impl().grad_fn != nullptr; }

Tensor& Tensor::requires_grad_(bool on) {
  TG_CHECK(is_leaf(), "requires_grad_: only leaf tensors can change requires_grad (this one comes from ",
           impl().grad_fn->name, ")");
  TG_CHECK(!on || dtype() != DType::I64, "requires_grad_: an i64 tensor cannot require grad, shape ", shape());
  impl().requires_grad = on;
  return *this;
}

Tensor Tensor::grad() const { return impl().grad ? Tensor(impl().grad) : Tensor(); }

void Tensor::set_grad(const Tensor& g) {
  if (g.defined()) {
    TG_CHECK(g.shape() == shape() && g.dtype() == dtype(), "set_grad: gradient ", g.dtype(), " ", g.shape(),
             " does not match tensor ", dtype(), " ", shape());
  }
  impl().grad = g.impl_ptr();
}

void Tensor::zero_grad() { impl().grad.reset(); }

void Tensor::backward() const {
  TG_CHECK(numel() == 1, "backward: the tensor has shape ", shape(),
           "; a non-scalar needs an explicit gradient: backward(gradient)");
  tapegrad::backward({*this}, {ones(shape(), {dtype(), device()})});
}

void Tensor::backward(const Tensor& gradient) const { tapegrad::backward({*this}, {gradient}); }

Tensor Tensor::detach() const { return alias(*this, shape()); }

Tensor Tensor::clone() const {
  Tensor y = make_tensor(shape(), dtype(), device());
  backend::convert(*this, y);
  if (needs_grad({*this})) record("clone", {*this}, {y}, [](const Grads& g) { return Grads{g[0]}; });
  return y;
}

Tensor Tensor::to(DType d) const {
  if (d == dtype()) return *this;
  Tensor y = make_tensor(shape(), d, device());
  backend::convert(*this, y);
  if (d != DType::I64 && needs_grad({*this})) {
    DType from = dtype();
    record("to", {*this}, {y}, [from](const Grads& g) { return Grads{g[0].to(from)}; });
  }
  return y;
}

Tensor Tensor::to(Device d) const {
  if (d == device()) return *this;
  Tensor y = make_tensor(shape(), dtype(), d);
  copy_bytes(static_cast<char*>(y.impl().storage->data), d,
             static_cast<const char*>(impl().storage->data) + impl().offset * static_cast<int64_t>(size_of(dtype())),
             device(), static_cast<size_t>(numel()) * size_of(dtype()));
  if (needs_grad({*this})) {
    Device from = device();
    record("to", {*this}, {y}, [from](const Grads& g) { return Grads{g[0].to(from)}; });
  }
  return y;
}

Tensor& Tensor::copy_(const Tensor& src) {
  TG_CHECK(src.numel() == numel(), "copy_: source shape ", src.shape(), " does not match destination shape ",
           shape());
  if (src.device() != device()) {
    NoGradGuard no_grad;
    return copy_(src.detach().to(device()));  // explicit: copy_ is the one op that moves data in place
  }
  backend::convert(src, *this);
  return *this;
}

Tensor& Tensor::fill_(double value) {
  backend::fill(*this, value);
  return *this;
}

// ---- factories ------------------------------------------------------------------------------

Tensor empty(const Shape& s, TensorOptions o) { return make_tensor(s, o.dtype, o.device); }
Tensor zeros(const Shape& s, TensorOptions o) { return full(s, 0.0, o); }
Tensor ones(const Shape& s, TensorOptions o) { return full(s, 1.0, o); }
Tensor full(const Shape& s, double value, TensorOptions o) {
  Tensor t = make_tensor(s, o.dtype, o.device);
  backend::fill(t, value);
  return t;
}
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), {t.dtype(), t.device()}); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), {t.dtype(), t.device()}); }
Tensor scalar(double value, TensorOptions o) { return full({}, value, o); }

// Values made on the host, then moved to the options' device.
template <class F>
static Tensor on_host(const Shape& s, DType d, Device dev, F fill) {
  Tensor t = make_tensor(s, d);
  fill(t);
  return t.to(dev);
}

Tensor arange(double start, double end, double step, TensorOptions o) {
  TG_CHECK(step != 0 && std::isfinite(start) && std::isfinite(end) && std::isfinite(step),
           "arange: invalid range start=", start, " end=", end, " step=", step);
  int64_t n = std::max<int64_t>(0, static_cast<int64_t>(std::ceil((end - start) / step)));
  return on_host({n}, o.dtype, o.device, [&](Tensor& t) {
    dispatch_all(o.dtype, [&]<class T>() {
      T* p = t.data<T>();
      for (int64_t i = 0; i < n; ++i) p[i] = static_cast<T>(start + static_cast<double>(i) * step);
    });
  });
}
Tensor arange(int64_t n, TensorOptions o) { return arange(0.0, static_cast<double>(n), 1.0, o); }

Tensor rand(const Shape& s, Generator& g, TensorOptions o) {
  return on_host(s, o.dtype, o.device, [&](Tensor& t) {
    dispatch_float(o.dtype, "rand", [&]<class T>() {
      T* p = t.data<T>();
      for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<T>(g.uniform());
    });
  });
}
Tensor rand(const Shape& s, TensorOptions o) { return rand(s, default_generator(), o); }

Tensor randn(const Shape& s, Generator& g, TensorOptions o) {
  return on_host(s, o.dtype, o.device, [&](Tensor& t) {
    dispatch_float(o.dtype, "randn", [&]<class T>() {
      T* p = t.data<T>();
      for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<T>(g.normal());
    });
  });
}
Tensor randn(const Shape& s, TensorOptions o) { return randn(s, default_generator(), o); }

Tensor randint(int64_t high, const Shape& s, Generator& g, Device dev) {
  TG_CHECK(high > 0, "randint: high must be positive, got ", high);
  return on_host(s, DType::I64, dev, [&](Tensor& t) {
    int64_t* p = t.data<int64_t>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = g.randint(high);
  });
}
Tensor randint(int64_t high, const Shape& s, Device dev) { return randint(high, s, default_generator(), dev); }

template <class T>
static Tensor from_vector_impl(const std::vector<T>& v, const Shape& s, Device dev) {
  TG_CHECK(static_cast<int64_t>(v.size()) == numel(s), "from_vector: ", v.size(), " values do not fill shape ", s,
           " (", numel(s), " elements)");
  return on_host(s, dtype_of<T>(), dev, [&](Tensor& t) {
    if (!v.empty()) std::memcpy(t.raw_data(), v.data(), v.size() * sizeof(T));
  });
}
Tensor from_vector(const std::vector<float>& v, const Shape& s, Device dev) { return from_vector_impl(v, s, dev); }
Tensor from_vector(const std::vector<double>& v, const Shape& s, Device dev) { return from_vector_impl(v, s, dev); }
Tensor from_vector(const std::vector<int64_t>& v, const Shape& s, Device dev) { return from_vector_impl(v, s, dev); }

// ---- generator ------------------------------------------------------------------------------

double Generator::uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }
double Generator::uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }

double Generator::normal(double mean, double std) {
  // Box-Muller; one value per call keeps the stream simple to reason about (and to checkpoint).
  double u1 = 1.0 - uniform();  // (0, 1]
  double u2 = uniform();
  return mean + std * std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

int64_t Generator::randint(int64_t n) {
  TG_CHECK(n > 0, "randint: n must be positive, got ", n);
  // Rejection sampling: unbiased.
  uint64_t un = static_cast<uint64_t>(n);
  uint64_t limit = UINT64_MAX - UINT64_MAX % un;
  uint64_t x;
  do x = engine_();
  while (x >= limit);
  return static_cast<int64_t>(x % un);
}

std::string Generator::state() const {
  std::ostringstream os;
  os << engine_;
  return os.str();
}
void Generator::set_state(const std::string& s) {
  std::istringstream is(s);
  std::mt19937_64 e;
  is >> e;
  TG_CHECK(!is.fail(), "Generator::set_state: malformed state string");
  engine_ = e;
}

Generator& default_generator() {
  static Generator g(0);
  return g;
}
void manual_seed(uint64_t seed) { default_generator().seed(seed); }

}  // namespace tapegrad
