// The CUDA runtime: the device, its stream, the caching allocator, pinned staging for copies.
#include "runtime.hpp"

#include <cuda_runtime.h>

#include <map>
#include <mutex>
#include <vector>

#include "common.hpp"
#include "cuda.hpp"

namespace tapegrad::cuda {

int device_count() {
  static const int n = [] {
    int c = 0;
    if (cudaGetDeviceCount(&c) != cudaSuccess) {
      cudaGetLastError();  // clear the sticky error: the CPU keeps working
      return 0;
    }
    return c;
  }();
  return n;
}

void require_device(const char* what) {
  if (device_count() > 0) return;
  int c = 0;
  cudaError_t e = cudaGetDeviceCount(&c);
  cudaGetLastError();
  TG_FAIL(what, ": no CUDA device (cudaGetDeviceCount: ", cudaGetErrorString(e), "); use the CPU");
}

cudaStream_t stream() {
  static cudaStream_t s = [] {
    require_device("cuda stream");
    // A blocking stream: work queued on the legacy default stream (by a library or a kernel that does not
    // take ours) is still ordered with it.
    cudaStream_t st;
    TG_CUDA_CHECK(cudaStreamCreate(&st));
    return st;
  }();
  return s;
}

namespace {

// Blocks rounded up (512 B; 2 MiB steps above 8 MiB so that near sizes share blocks), kept per size.
size_t bucket(size_t bytes) {
  size_t step = bytes > (size_t{8} << 20) ? (size_t{2} << 20) : 512;
  return (std::max<size_t>(bytes, 1) + step - 1) / step * step;
}

class Allocator {
 public:
  void* get(size_t bytes) {
    const size_t b = bucket(bytes);
    std::lock_guard<std::mutex> lock(mu_);
    auto& list = free_[b];
    if (!list.empty()) {
      void* p = list.back();
      list.pop_back();
      cached_ -= b;
      in_use_ += b;
      peak_ = std::max(peak_, in_use_);
      return p;
    }
    require_device("cuda allocation");
    void* p = nullptr;
    if (cudaMalloc(&p, b) != cudaSuccess) {
      cudaGetLastError();
      empty_cache();  // give the cached blocks back and try once more
      if (cudaMalloc(&p, b) != cudaSuccess) {
        cudaGetLastError();
        size_t free_b = 0, total = 0;
        cudaMemGetInfo(&free_b, &total);
        TG_FAIL("cuda: out of memory allocating ", bytes, " bytes (", in_use_, " in use by tensors, ", cached_,
                " cached, ", free_b, " free of ", total, " on the device)");
      }
    }
    in_use_ += b;
    peak_ = std::max(peak_, in_use_);
    return p;
  }
  void put(void* p, size_t bytes) {
    const size_t b = bucket(bytes);
    std::lock_guard<std::mutex> lock(mu_);
    free_[b].push_back(p);
    cached_ += b;
    in_use_ -= b;
  }
  MemoryStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    return {in_use_, cached_, peak_};
  }
  void reset_peak() {
    std::lock_guard<std::mutex> lock(mu_);
    peak_ = in_use_;
  }

 private:
  // Under mu_. The stream may still use freed blocks: wait for it before the driver takes them.
  void empty_cache() {
    cudaStreamSynchronize(stream());
    for (auto& [b, list] : free_)
      for (void* p : list) cudaFree(p);
    free_.clear();
    cached_ = 0;
  }
  std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;
  size_t in_use_ = 0, cached_ = 0, peak_ = 0;
};

Allocator& allocator() {
  static Allocator* a = new Allocator;  // never destroyed: tensors may outlive static destructors
  return *a;
}

// Pinned host buffers for host-to-device copies: the source is copied into one, the device copies from it
// asynchronously, and an event marks when the buffer may be reused.
class Staging {
 public:
  void to_device(void* dst, const void* src, size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    Buffer& s = take(bytes);
    std::memcpy(s.host, src, bytes);
    TG_CUDA_CHECK(cudaMemcpyAsync(dst, s.host, bytes, cudaMemcpyHostToDevice, stream()));
    TG_CUDA_CHECK(cudaEventRecord(s.done, stream()));
  }
  void to_host(void* dst, const void* src, size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    Buffer& s = take(bytes);
    TG_CUDA_CHECK(cudaMemcpyAsync(s.host, src, bytes, cudaMemcpyDeviceToHost, stream()));
    TG_CUDA_CHECK(cudaStreamSynchronize(stream()));  // the host reads it now
    std::memcpy(dst, s.host, bytes);
    throw_device_error();
  }

 private:
  struct Buffer {
    void* host = nullptr;
    size_t bytes = 0;
    cudaEvent_t done = nullptr;
  };
  // The next buffer of the ring, grown to bytes; waits only if the copy that last used it is still queued.
  Buffer& take(size_t bytes) {
    Buffer& s = ring_[next_];
    next_ = (next_ + 1) % ring_.size();
    if (!s.done) TG_CUDA_CHECK(cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming));
    TG_CUDA_CHECK(cudaEventSynchronize(s.done));
    if (s.bytes < bytes) {
      if (s.host) TG_CUDA_CHECK(cudaFreeHost(s.host));
      s.bytes = std::max(bytes, s.bytes * 2);
      TG_CUDA_CHECK(cudaMallocHost(&s.host, s.bytes));
    }
    return s;
  }
  std::mutex mu_;
  std::vector<Buffer> ring_ = std::vector<Buffer>(4);
  size_t next_ = 0;
};

Staging& staging() {
  static Staging* s = new Staging;
  return *s;
}

}  // namespace

void* allocate(size_t bytes) { return allocator().get(bytes); }
void release(void* p, size_t bytes) { allocator().put(p, bytes); }
MemoryStats memory_stats() { return allocator().stats(); }
void reset_peak() { allocator().reset_peak(); }

void copy(void* dst, bool dst_on_device, const void* src, bool src_on_device, size_t bytes) {
  if (bytes == 0) return;
  if (dst_on_device && src_on_device) {
    TG_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream()));
  } else if (dst_on_device) {
    staging().to_device(dst, src, bytes);
  } else if (src_on_device) {
    staging().to_host(dst, src, bytes);
  } else {
    std::memcpy(dst, src, bytes);
  }
}

void synchronize() {
  TG_CUDA_CHECK(cudaStreamSynchronize(stream()));
  throw_device_error();
}

}  // namespace tapegrad::cuda
