// CUDA twins of the optimizer kernels (contracts at the end of src/kernels.inc): a multi-tensor apply.
//
// The host writes one row per tensor (its five pointers, its length and its first block) into a table that
// travels as the kernel's argument (up to 32 KiB on sm_70+ with CUDA >= 12.1: kMaxTensors rows), so one
// optimizer step of a group is one launch for up to kMaxTensors tensors of any size (more tensors: one
// launch per kMaxTensors), with no upload, no allocation and no host synchronisation. Each block finds its
// tensor by binary search over the first blocks and strides over one chunk of kChunk elements of it. The
// per-element code is the CPU twin's, operation for operation (each scalar rounded to T once, on the host,
// the same order), so results agree with the CPU (bit for bit when compiled with --fmad=false, as the CPU
// baseline has no FMA; with FMA contraction within the golden tolerances).
//
// All launches go on the backend's one stream (common.hpp); nothing here waits for the device.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "common.hpp"
#include "cuda.hpp"

namespace tapegrad::cuda {
namespace {

constexpr int64_t kChunk = 65536;  // elements per block
constexpr int kThreads = 256;

// One tensor of the list: up to five pointers (p, g, three states) and its length.
template <class T>
struct Row {
  T* p;
  const T* g;
  T* s0;  // momentum buffer / sum / exp_avg
  T* s1;  // exp_avg_sq
  T* s2;  // max_exp_avg_sq, or nullptr
  int64_t n;
};

constexpr int kMaxTensors = 560;  // 560 * (48 + 4) bytes + the scalars < 32 KiB of kernel arguments

// The table of one launch: rows, and the first block of each (first[count] = the grid size).
template <class T>
struct Table {
  Row<T> row[kMaxTensors];
  int32_t first[kMaxTensors + 1];
  int32_t count;
};

// The row of block b and the [begin, end) of its chunk.
template <class T>
__device__ inline const Row<T>& locate(const Table<T>& t, int64_t& begin, int64_t& end) {
  const int32_t b = static_cast<int32_t>(blockIdx.x);
  int32_t lo = 0, hi = t.count - 1;  // the last row whose first block <= b
  while (lo < hi) {
    const int32_t mid = (lo + hi + 1) / 2;
    if (t.first[mid] <= b) lo = mid;
    else hi = mid - 1;
  }
  const Row<T>& r = t.row[lo];
  begin = static_cast<int64_t>(b - t.first[lo]) * kChunk;
  end = begin + kChunk < r.n ? begin + kChunk : r.n;
  return r;
}

// torch.maximum: NaN when either is NaN (the CPU twin's max_nan).
template <class T>
__device__ inline T max_nan(T a, T b) {
  return (b > a || b != b) ? b : a;
}

template <class T>
__device__ inline T sqrt_t(T x) {
  return sqrt(x);
}

// Fills tables of up to kMaxTensors rows and launches kernel<<<blocks, kThreads>>>(table, scalars) for each.
template <class T, class Kernel, class Scalars>
void apply(const char* op, std::vector<Tensor>& p, const std::vector<Tensor>& g, std::vector<Tensor>* s0,
           std::vector<Tensor>* s1, std::vector<Tensor>* s2, Kernel kernel, const Scalars& scalars) {
  auto at = [](std::vector<Tensor>* list, size_t k) -> T* { return list && !list->empty() ? ptr<T>((*list)[k]) : nullptr; };
  Table<T> table;
  table.count = 0;
  int64_t blocks = 0;
  auto launch = [&] {
    if (table.count == 0) return;
    table.first[table.count] = static_cast<int32_t>(blocks);
    kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream()>>>(table, scalars);
    TG_CUDA_CHECK(cudaGetLastError());
    table.count = 0;
    blocks = 0;
  };
  for (size_t k = 0; k < p.size(); ++k) {
    const int64_t n = p[k].numel(), chunks = (n + kChunk - 1) / kChunk;
    if (n == 0) continue;
    TG_CHECK(chunks < (int64_t{1} << 30), op, ": tensor ", k, " has ", n, " elements, too many for one launch");
    if (table.count == kMaxTensors || blocks + chunks >= (int64_t{1} << 31) - 1) launch();
    table.row[table.count] = {ptr<T>(p[k]), ptr<T>(g[k]), at(s0, k), at(s1, k), at(s2, k), n};
    table.first[table.count] = static_cast<int32_t>(blocks);
    ++table.count;
    blocks += chunks;
  }
  launch();
}

// The scalars rounded to T once, on the host, as the CPU twin does.
template <class T>
struct Sgd {
  T wd, mom, one_m_damp, neg_lr;
  bool has_wd, momentum, first_step, nesterov;
};

template <class T>
__global__ void sgd_kernel(const __grid_constant__ Table<T> table, const Sgd<T> s) {
  int64_t begin, end;
  const Row<T>& c = locate(table, begin, end);
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
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
__global__ void adagrad_kernel(const __grid_constant__ Table<T> table, const Adagrad<T> s) {
  int64_t begin, end;
  const Row<T>& c = locate(table, begin, end);
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
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
__global__ void adam_kernel(const __grid_constant__ Table<T> table, const Adam<T> s) {
  int64_t begin, end;
  const Row<T>& c = locate(table, begin, end);
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
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
__global__ void adabound_kernel(const __grid_constant__ Table<T> table, const AdaBound<T> s) {
  int64_t begin, end;
  const Row<T>& c = locate(table, begin, end);
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
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
