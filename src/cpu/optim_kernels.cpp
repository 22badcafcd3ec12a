// CPU twins of the optimizer kernels (contracts at the end of src/kernels.inc). Plain loops, no Eigen, so
// that this file can be compiled once per ISA level.
//
// Each update is one plain loop over [begin, end) of one tensor that the compiler vectorises (`omp simd`,
// restrict pointers, no calls but sqrt/min/max, every scalar hoisted and rounded to T once). The whole list
// of tensors is one index space: above kGrain elements in all it is cut into one contiguous block per
// OpenMP thread (one fork/join per step, however many tensors); below it the fork/join would cost more than
// the loops. Float results do not depend on the thread count (the update is elementwise).
//
// std::sqrt vectorises only when the compiler need not set errno: build with -fno-math-errno
// (unlike -ffast-math it changes no result: NaN and Inf behave as IEEE says, only errno stays unset).
// Without it every loop below runs scalar, about 2x under memory bandwidth.
#if defined(__GNUC__) && !defined(__clang__) && !defined(__NO_MATH_ERRNO__)
#warning "optim kernels: compile with -fno-math-errno or sqrt does not vectorise (see the comment above)"
#endif
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "../internal.hpp"
#include "cpu.hpp"
#include "parallel.hpp"

namespace tapegrad::cpu {
namespace {

// torch.maximum: the larger of a and b, NaN when either is NaN. Takes values, not references (as
// std::max does), so that it compiles to a select and the loop vectorises.
template <class T>
inline T max_nan(T a, T b) {
  return (b > a || b != b) ? b : a;
}

template <class T>
void sgd_loop(T* __restrict p, const T* __restrict g, T* __restrict buf, int64_t begin, int64_t end,
              const backend::SgdScalars& s) {
  const T wd = T(s.weight_decay), mom = T(s.momentum), one_m_damp = T(1.0 - s.dampening), neg_lr = T(-s.lr);
  const bool has_wd = s.weight_decay != 0;
  if (buf == nullptr) {  // plain SGD
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) {
      const T d = has_wd ? g[i] + wd * p[i] : g[i];
      p[i] = p[i] + neg_lr * d;
    }
  } else if (s.first_step) {  // torch: buf = clone(d)
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) {
      const T d = has_wd ? g[i] + wd * p[i] : g[i];
      buf[i] = d;
      p[i] = p[i] + neg_lr * (s.nesterov ? d + mom * d : d);
    }
  } else if (s.nesterov) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) {
      const T d = has_wd ? g[i] + wd * p[i] : g[i];
      const T b = buf[i] * mom + one_m_damp * d;
      buf[i] = b;
      p[i] = p[i] + neg_lr * (d + mom * b);
    }
  } else {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) {
      const T d = has_wd ? g[i] + wd * p[i] : g[i];
      const T b = buf[i] * mom + one_m_damp * d;
      buf[i] = b;
      p[i] = p[i] + neg_lr * b;
    }
  }
}

template <class T>
void adagrad_loop(T* __restrict p, const T* __restrict g, T* __restrict sum, int64_t begin, int64_t end,
                  const backend::AdagradScalars& s) {
  const T wd = T(s.weight_decay), eps = T(s.eps), neg_clr = T(-s.clr);
  const bool has_wd = s.weight_decay != 0;
#pragma omp simd
  for (int64_t i = begin; i < end; ++i) {
    const T d = has_wd ? g[i] + wd * p[i] : g[i];
    const T acc = sum[i] + d * d;
    sum[i] = acc;
    p[i] = p[i] + neg_clr * d / (std::sqrt(acc) + eps);
  }
}

// vmax == nullptr: Adam; else AMSGrad (the maximum of the raw second moments).
template <class T>
void adam_loop(T* __restrict p, const T* __restrict g, T* __restrict m, T* __restrict v, T* __restrict vmax,
               int64_t begin, int64_t end, const backend::AdamScalars& s) {
  const T b1 = T(s.beta1), one_m_b1 = T(1.0 - s.beta1), b2 = T(s.beta2), one_m_b2 = T(1.0 - s.beta2);
  const T eps = T(s.eps), neg_step = T(-s.step_size), bc2_sqrt = T(s.bias_correction2_sqrt);
  const T wd = T(s.weight_decay), decay = T(s.decay);
  const bool coupled_wd = !s.decoupled && s.weight_decay != 0, decoupled_wd = s.decoupled && s.weight_decay != 0;
  if (vmax == nullptr) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) {
      const T p0 = decoupled_wd ? p[i] * decay : p[i];
      const T d = coupled_wd ? g[i] + wd * p0 : g[i];
      const T mi = m[i] * b1 + one_m_b1 * d;
      const T vi = v[i] * b2 + one_m_b2 * d * d;
      m[i] = mi;
      v[i] = vi;
      p[i] = p0 + neg_step * mi / (std::sqrt(vi) / bc2_sqrt + eps);
    }
  } else {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) {
      const T p0 = decoupled_wd ? p[i] * decay : p[i];
      const T d = coupled_wd ? g[i] + wd * p0 : g[i];
      const T mi = m[i] * b1 + one_m_b1 * d;
      const T vi = v[i] * b2 + one_m_b2 * d * d;
      const T vm = max_nan(vmax[i], vi);
      m[i] = mi;
      v[i] = vi;
      vmax[i] = vm;
      p[i] = p0 + neg_step * mi / (std::sqrt(vm) / bc2_sqrt + eps);
    }
  }
}

// vmax == nullptr: AdaBound; else AMSBound. eps is added to sqrt(v) without bias correction, which
// lives in step_size instead (Luolc/AdaBound).
template <class T>
void adabound_loop(T* __restrict p, const T* __restrict g, T* __restrict m, T* __restrict v, T* __restrict vmax,
                   int64_t begin, int64_t end, const backend::AdaBoundScalars& s) {
  const T b1 = T(s.beta1), one_m_b1 = T(1.0 - s.beta1), b2 = T(s.beta2), one_m_b2 = T(1.0 - s.beta2);
  const T eps = T(s.eps), step = T(s.step_size), lo = T(s.lower_bound), hi = T(s.upper_bound), wd = T(s.weight_decay);
  const bool coupled_wd = !s.decoupled && s.weight_decay != 0, decoupled_wd = s.decoupled && s.weight_decay != 0;
  if (vmax == nullptr) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) {
      const T p0 = p[i];
      const T d = coupled_wd ? g[i] + wd * p0 : g[i];
      const T mi = m[i] * b1 + one_m_b1 * d;
      const T vi = v[i] * b2 + one_m_b2 * d * d;
      m[i] = mi;
      v[i] = vi;
      const T rate = std::min(std::max(step / (std::sqrt(vi) + eps), lo), hi);
      const T p1 = p0 - rate * mi;
      p[i] = decoupled_wd ? p1 - wd * p0 : p1;
    }
  } else {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) {
      const T p0 = p[i];
      const T d = coupled_wd ? g[i] + wd * p0 : g[i];
      const T mi = m[i] * b1 + one_m_b1 * d;
      const T vi = v[i] * b2 + one_m_b2 * d * d;
      const T vm = max_nan(vmax[i], vi);
      m[i] = mi;
      v[i] = vi;
      vmax[i] = vm;
      const T rate = std::min(std::max(step / (std::sqrt(vm) + eps), lo), hi);
      const T p1 = p0 - rate * mi;
      p[i] = decoupled_wd ? p1 - wd * p0 : p1;
    }
  }
}

// Calls loop(k, begin, end) on ranges of tensor k that together cover every element of every tensor of p,
// the list seen as one index space split by parallel_for.
template <class Loop>
void for_each_range(const std::vector<Tensor>& p, Loop&& loop) {
  std::vector<int64_t> start(p.size() + 1, 0);
  for (size_t k = 0; k < p.size(); ++k) start[k + 1] = start[k] + p[k].numel();
  parallel_for(start.back(), [&](int64_t b, int64_t e) {
    size_t k = static_cast<size_t>(std::upper_bound(start.begin(), start.end(), b) - start.begin()) - 1;
    for (; k < p.size() && start[k] < e; ++k) {
      const int64_t lo = std::max(b, start[k]) - start[k], hi = std::min(e, start[k + 1]) - start[k];
      if (lo < hi) loop(k, lo, hi);
    }
  });
}

template <class T>
T* state_or_null(std::vector<Tensor>& state, size_t k) {
  return state.empty() ? nullptr : state[k].data<T>();
}

}  // namespace

void sgd_update(std::vector<Tensor>& p, const std::vector<Tensor>& g, std::vector<Tensor>& momentum_buffer,
                const backend::SgdScalars& s) {
  dispatch_float(p[0].dtype(), "sgd_update", [&]<class T>() {
    for_each_range(p, [&](size_t k, int64_t b, int64_t e) {
      sgd_loop<T>(p[k].data<T>(), g[k].data<T>(), state_or_null<T>(momentum_buffer, k), b, e, s);
    });
  });
}

void adagrad_update(std::vector<Tensor>& p, const std::vector<Tensor>& g, std::vector<Tensor>& sum,
                    const backend::AdagradScalars& s) {
  dispatch_float(p[0].dtype(), "adagrad_update", [&]<class T>() {
    for_each_range(p, [&](size_t k, int64_t b, int64_t e) {
      adagrad_loop<T>(p[k].data<T>(), g[k].data<T>(), sum[k].data<T>(), b, e, s);
    });
  });
}

void adam_update(std::vector<Tensor>& p, const std::vector<Tensor>& g, std::vector<Tensor>& exp_avg,
                 std::vector<Tensor>& exp_avg_sq, std::vector<Tensor>& max_exp_avg_sq,
                 const backend::AdamScalars& s) {
  dispatch_float(p[0].dtype(), "adam_update", [&]<class T>() {
    for_each_range(p, [&](size_t k, int64_t b, int64_t e) {
      adam_loop<T>(p[k].data<T>(), g[k].data<T>(), exp_avg[k].data<T>(), exp_avg_sq[k].data<T>(),
                   state_or_null<T>(max_exp_avg_sq, k), b, e, s);
    });
  });
}

void adabound_update(std::vector<Tensor>& p, const std::vector<Tensor>& g, std::vector<Tensor>& exp_avg,
                     std::vector<Tensor>& exp_avg_sq, std::vector<Tensor>& max_exp_avg_sq,
                     const backend::AdaBoundScalars& s) {
  dispatch_float(p[0].dtype(), "adabound_update", [&]<class T>() {
    for_each_range(p, [&](size_t k, int64_t b, int64_t e) {
      adabound_loop<T>(p[k].data<T>(), g[k].data<T>(), exp_avg[k].data<T>(), exp_avg_sq[k].data<T>(),
                       state_or_null<T>(max_exp_avg_sq, k), b, e, s);
    });
  });
}

}  // namespace tapegrad::cpu
