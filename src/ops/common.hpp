// Helpers shared by the op files.
#pragma once

#include "../backend.hpp"
#include "../internal.hpp"
#include "tapegrad/autograd.hpp"
#include "tapegrad/ops.hpp"

namespace tapegrad {

// A new tensor with t's shape, dtype and device.
inline Tensor new_like(const Tensor& t) { return make_tensor(t.shape(), t.dtype(), t.device()); }

// A shape-[] tensor holding v, with t's dtype and device (scalar operands of broadcasting ops).
inline Tensor scalar_like(const Tensor& t, double v) {
  Tensor s = make_tensor({}, t.dtype(), t.device());
  backend::fill(s, v);
  return s;
}

// g summed down to `shape` (the inverse of broadcasting); g itself when the shapes already agree.
inline Tensor reduce_to(const Tensor& g, const Shape& shape) {
  if (g.shape() == shape) return g;
  Tensor out = make_tensor(shape, g.dtype(), g.device());
  backend::sum_to(g, out);
  return out;
}

// Views a tensor as [outer, n, inner] around dim d.
struct Around {
  int64_t outer = 1, n = 1, inner = 1;
  Around(const Shape& s, int64_t d) {
    for (int64_t k = 0; k < static_cast<int64_t>(s.size()); ++k)
      (k < d ? outer : k == d ? n : inner) *= s[k];
  }
};

}  // namespace tapegrad
