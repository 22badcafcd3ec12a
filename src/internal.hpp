// Internal helpers shared by the core sources: storage, allocation, dtype dispatch.
#pragma once

#include <cstdlib>
#include <cstring>

#include "tapegrad/tensor.hpp"

namespace tapegrad {

struct Storage {
  void* data = nullptr;
  size_t bytes = 0;
  Device device = Device::CPU;
  Storage(size_t nbytes, Device dev);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

// Marks the running of a kernel on a device other than the CPU (the facade opens it): inside, raw_data()
// hands out that device's memory; outside, it throws.
struct KernelScope {
  KernelScope();
  ~KernelScope();
  KernelScope(const KernelScope&) = delete;
  KernelScope& operator=(const KernelScope&) = delete;
};

// bytes from src on src_dev to dst on dst_dev (host <-> CUDA: waits when the destination is the host).
void copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes);

// A new contiguous tensor with uninitialised data.
Tensor make_tensor(const Shape& s, DType d, Device dev = Device::CPU);
// A new tensor aliasing t's storage with another shape (same numel), no history.
Tensor alias(const Tensor& t, const Shape& s);

// Calls f.template operator()<T>() with T = float or double for the dtype; other dtypes throw naming op.
template <class F>
void dispatch_float(DType d, const char* op, F&& f) {
  switch (d) {
    case DType::F32: f.template operator()<float>(); return;
    case DType::F64: f.template operator()<double>(); return;
    default: TG_FAIL(op, ": dtype ", d, " is not supported (expected f32 or f64)");
  }
}
// Same, including I64.
template <class F>
void dispatch_all(DType d, F&& f) {
  switch (d) {
    case DType::F32: f.template operator()<float>(); return;
    case DType::F64: f.template operator()<double>(); return;
    case DType::I64: f.template operator()<int64_t>(); return;
  }
}

void check_float(const Tensor& t, const char* op);
void check_same_dtype(const Tensor& a, const Tensor& b, const char* op);
void check_same_device(const Tensor& a, const Tensor& b, const char* op);
int64_t normalize_dim(int64_t dim, int64_t ndim, const char* op);

}  // namespace tapegrad
