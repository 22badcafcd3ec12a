// CUDA twins of the optimizer kernels (contracts at the end of src/kernels.inc): a multi-tensor apply.
//
// The host cuts every tensor of the list into chunks of at most kChunk elements and writes one row per chunk
// (its pointers, already offset, and its length) into a table in device memory; one launch then runs one
// block per chunk, each block striding over its chunk. So one optimizer step of a group is one table upload
// and one launch, whatever the number of parameters. The per-element code is the CPU twin's, operation for
// operation (the same rounding of each scalar to T once, the same order), so f64 results agree with the CPU.
//
// Streams: everything is queued on the default stream; the table buffer is reused by the next call only
// after this call's kernel (stream order), and the upload from pageable host memory returns once the
// source is staged, so the host vector may go away. The table buffer is grown with cudaMalloc and kept
// (a few bytes per chunk); a caching device allocator can replace it without changing the interface.
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "../backend.hpp"

// The declarations these definitions must match (src/cuda/ will have one header that does this, as cpu.hpp).
namespace tapegrad::cuda {
using backend::Binary;
using backend::LstmWeights;
using backend::Unary;
using backend::Window2d;
#include "../kernels.inc"
}  // namespace tapegrad::cuda

namespace tapegrad::cuda {
namespace {

constexpr int64_t kChunk = 65536;  // elements per block
constexpr int kThreads = 256;

void check_cuda(cudaError_t e, const char* op) {
  TG_CHECK(e == cudaSuccess, op, ": CUDA error ", cudaGetErrorName(e), ": ", cudaGetErrorString(e));
}

// One chunk: up to five tensors' pointers at the chunk's first element, and its length.
template <class T>
struct Chunk {
  T* p;
  const T* g;
  T* s0;  // momentum buffer / sum / exp_avg
  T* s1;  // exp_avg_sq
  T* s2;  // max_exp_avg_sq, or nullptr
  int64_t n;
};

// torch.maximum: NaN when either is NaN (the CPU twin's max_nan).
template <class T>
__device__ inline T max_nan(T a, T b) {
  return (b > a || b != b) ? b : a;
}

template <class T>
__device__ inline T sqrt_t(T x) {
  return sqrt(x);
}

// The device table, grown as needed and kept.
void* table_buffer(size_t bytes) {
  static void* buffer = nullptr;
  static size_t capacity = 0;
  if (bytes > capacity) {
    if (buffer) check_cuda(cudaFree(buffer), "optimizer table");
    check_cuda(cudaMalloc(&buffer, bytes), "optimizer table");
    capacity = bytes;
  }
  return buffer;
}

// Cuts the tensors into chunks, uploads the table, launches kernel<<<chunks, kThreads>>>(table, scalars).
template <class T, class Kernel, class Scalars>
void apply(const char* op, std::vector<Tensor>& p, const std::vector<Tensor>& g, std::vector<Tensor>* s0,
           std::vector<Tensor>* s1, std::vector<Tensor>* s2, Kernel kernel, const Scalars& scalars) {
  auto at = [](std::vector<Tensor>* list, size_t k) -> T* {
    return list && !list->empty() ? static_cast<T*>((*list)[k].raw_data()) : nullptr;
  };
  std::vector<Chunk<T>> table;
  for (size_t k = 0; k < p.size(); ++k) {
    T* pp = static_cast<T*>(p[k].raw_data());
    const T* gp = static_cast<const T*>(g[k].raw_data());
    T *a = at(s0, k), *b = at(s1, k), *c = at(s2, k);
    for (int64_t off = 0; off < p[k].numel(); off += kChunk)
      table.push_back({pp + off, gp + off, a ? a + off : nullptr, b ? b + off : nullptr, c ? c + off : nullptr,
                       std::min(kChunk, p[k].numel() - off)});
  }
  if (table.empty()) return;
  const size_t bytes = table.size() * sizeof(Chunk<T>);
  auto* device_table = static_cast<Chunk<T>*>(table_buffer(bytes));
  check_cuda(cudaMemcpyAsync(device_table, table.data(), bytes, cudaMemcpyHostToDevice, 0), op);
  kernel<<<static_cast<unsigned>(table.size()), kThreads, 0, 0>>>(device_table, scalars);
  check_cuda(cudaGetLastError(), op);
}

// The scalars rounded to T once, on the host, as the CPU twin does.
template <class T>
struct Sgd {
  T wd, mom, one_m_damp, neg_lr;
  bool has_wd, momentum, first_step, nesterov;
};

template <class T>
__global__ void sgd_kernel(const Chunk<T>* table, Sgd<T> s) {
  const Chunk<T> c = table[blockIdx.x];
  for (int64_t i = threadIdx.x; i < c.n; i += blockDim.x) {
    T d = s.has_wd ? c.g[i] + s.wd * c.p[i] : c.g[i];
    if (s.momentum) {
      const T b = s.first_step ? d : c.s0[i] * s.mom + s.one_m_damp * d;
      c.s0[i] = b;
      d = s.nesterov ? d + s.mom * b : b;
    }
    c.p[i] = c.p[i] + s.neg_lr * d;
  }
}

template <class T>
struct Adagrad {
  T wd, eps, neg_clr;
  bool has_wd;
};

template <class T>
__global__ void adagrad_kernel(const Chunk<T>* table, Adagrad<T> s) {
  const Chunk<T> c = table[blockIdx.x];
  for (int64_t i = threadIdx.x; i < c.n; i += blockDim.x) {
    const T d = s.has_wd ? c.g[i] + s.wd * c.p[i] : c.g[i];
    const T acc = c.s0[i] + d * d;
    c.s0[i] = acc;
    c.p[i] = c.p[i] + s.neg_clr * d / (sqrt_t(acc) + s.eps);
  }
}

template <class T>
struct Adam {
  T b1, one_m_b1, b2, one_m_b2, eps, neg_step, bc2_sqrt, wd, decay;
  bool coupled_wd, decoupled_wd;
};

template <class T>
__global__ void adam_kernel(const Chunk<T>* table, Adam<T> s) {
  const Chunk<T> c = table[blockIdx.x];
  for (int64_t i = threadIdx.x; i < c.n; i += blockDim.x) {
    const T p0 = s.decoupled_wd ? c.p[i] * s.decay : c.p[i];
    const T d = s.coupled_wd ? c.g[i] + s.wd * p0 : c.g[i];
    const T mi = c.s0[i] * s.b1 + s.one_m_b1 * d;
    const T vi = c.s1[i] * s.b2 + s.one_m_b2 * d * d;
    c.s0[i] = mi;
    c.s1[i] = vi;
    T v = vi;
    if (c.s2) {  // AMSGrad
      v = max_nan(c.s2[i], vi);
      c.s2[i] = v;
    }
    c.p[i] = p0 + s.neg_step * mi / (sqrt_t(v) / s.bc2_sqrt + s.eps);
  }
}

template <class T>
struct AdaBound {
  T b1, one_m_b1, b2, one_m_b2, eps, step, lo, hi, wd;
  bool coupled_wd, decoupled_wd;
};

template <class T>
__global__ void adabound_kernel(const Chunk<T>* table, AdaBound<T> s) {
  const Chunk<T> c = table[blockIdx.x];
  for (int64_t i = threadIdx.x; i < c.n; i += blockDim.x) {
    const T p0 = c.p[i];
    const T d = s.coupled_wd ? c.g[i] + s.wd * p0 : c.g[i];
    const T mi = c.s0[i] * s.b1 + s.one_m_b1 * d;
    const T vi = c.s1[i] * s.b2 + s.one_m_b2 * d * d;
    c.s0[i] = mi;
    c.s1[i] = vi;
    T v = vi;
    if (c.s2) {  // AMSBound
      v = max_nan(c.s2[i], vi);
      c.s2[i] = v;
    }
    const T rate = min(max(s.step / (sqrt_t(v) + s.eps), s.lo), s.hi);
    const T p1 = p0 - rate * mi;
    c.p[i] = s.decoupled_wd ? p1 - s.wd * p0 : p1;
  }
}

// f32 or f64, as the CPU twin's dispatch_float.
template <class F>
void dispatch(DType d, const char* op, F&& f) {
  if (d == DType::F32) return f.template operator()<float>();
  if (d == DType::F64) return f.template operator()<double>();
  TG_FAIL(op, ": dtype ", d, " is not supported (expected f32 or f64)");
}

}  // namespace

void sgd_update(std::vector<Tensor>& p, const std::vector<Tensor>& g, std::vector<Tensor>& momentum_buffer,
                const backend::SgdScalars& s) {
  dispatch(p[0].dtype(), "sgd_update", [&]<class T>() {
    const Sgd<T> k{T(s.weight_decay), T(s.momentum), T(1.0 - s.dampening), T(-s.lr), s.weight_decay != 0,
                   !momentum_buffer.empty(), s.first_step, s.nesterov};
    apply<T>("sgd_update", p, g, &momentum_buffer, nullptr, nullptr, sgd_kernel<T>, k);
  });
}

void adagrad_update(std::vector<Tensor>& p, const std::vector<Tensor>& g, std::vector<Tensor>& sum,
                    const backend::AdagradScalars& s) {
  dispatch(p[0].dtype(), "adagrad_update", [&]<class T>() {
    const Adagrad<T> k{T(s.weight_decay), T(s.eps), T(-s.clr), s.weight_decay != 0};
    apply<T>("adagrad_update", p, g, &sum, nullptr, nullptr, adagrad_kernel<T>, k);
  });
}

void adam_update(std::vector<Tensor>& p, const std::vector<Tensor>& g, std::vector<Tensor>& exp_avg,
                 std::vector<Tensor>& exp_avg_sq, std::vector<Tensor>& max_exp_avg_sq,
                 const backend::AdamScalars& s) {
  dispatch(p[0].dtype(), "adam_update", [&]<class T>() {
    const Adam<T> k{T(s.beta1), T(1.0 - s.beta1), T(s.beta2), T(1.0 - s.beta2), T(s.eps), T(-s.step_size),
                    T(s.bias_correction2_sqrt), T(s.weight_decay), T(s.decay),
                    !s.decoupled && s.weight_decay != 0, s.decoupled && s.weight_decay != 0};
    apply<T>("adam_update", p, g, &exp_avg, &exp_avg_sq, &max_exp_avg_sq, adam_kernel<T>, k);
  });
}

void adabound_update(std::vector<Tensor>& p, const std::vector<Tensor>& g, std::vector<Tensor>& exp_avg,
                     std::vector<Tensor>& exp_avg_sq, std::vector<Tensor>& max_exp_avg_sq,
                     const backend::AdaBoundScalars& s) {
  dispatch(p[0].dtype(), "adabound_update", [&]<class T>() {
    const AdaBound<T> k{T(s.beta1), T(1.0 - s.beta1), T(s.beta2), T(1.0 - s.beta2), T(s.eps), T(s.step_size),
                        T(s.lower_bound), T(s.upper_bound), T(s.weight_decay),
                        !s.decoupled && s.weight_decay != 0, s.decoupled && s.weight_decay != 0};
    apply<T>("adabound_update", p, g, &exp_avg, &exp_avg_sq, &max_exp_avg_sq, adabound_kernel<T>, k);
  });
}

}  // namespace tapegrad::cuda
