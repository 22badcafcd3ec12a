// Reductions: sum, mean, max (over everything or some dims) and argmax.
#include <algorithm>

#include "common.hpp"

namespace tapegrad {

namespace {
// The reduced dims as a sorted, unique, non-negative list; the keepdim shape; the final shape.
struct ReduceDims {
  std::vector<int64_t> dims;
  Shape keep, out;
  ReduceDims(const Shape& s, std::vector<int64_t> d, bool keepdim, const char* op) {
    int64_t r = static_cast<int64_t>(s.size());
    for (int64_t& x : d) x = normalize_dim(x, r, op);
    std::sort(d.begin(), d.end());
    TG_CHECK(std::adjacent_find(d.begin(), d.end()) == d.end(), op, ": a dim is repeated in the dims of ", s);
    dims = d;
    keep = s;
    for (int64_t x : d) keep[x] = 1;
    for (int64_t k = 0; k < r; ++k)
      if (keepdim || !std::binary_search(d.begin(), d.end(), k)) out.push_back(keep[k]);
  }
};
}  // namespace

// out = sum of all elements (shape []);  dx = g broadcast to x's shape
Tensor sum(const Tensor& x) {
  check_float(x, "sum");
  Tensor out = make_tensor({}, x.dtype(), x.device());
  backend::sum_to(x, out);
  if (needs_grad({x}))
    record("sum", {x}, {out}, [sx = x.shape()](const Grads& g) { return Grads{expand(g[0], sx)}; });
  return out;
}

// out = x summed over dims;  dx = g (with the reduced dims back as 1) broadcast to x's shape
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  check_float(x, "sum");
  ReduceDims rd(x.shape(), dims, keepdim, "sum");
  Tensor out = make_tensor(rd.keep, x.dtype(), x.device());
  backend::sum_to(x, out);
  out = alias(out, rd.out);
  if (needs_grad({x}))
    record("sum", {x}, {out}, [sx = x.shape(), keep = rd.keep](const Grads& g) {
      return Grads{expand(alias(g[0], keep), sx)};
    });
  return out;
}

Tensor mean(const Tensor& x) {
  TG_CHECK(x.numel() > 0, "mean: empty tensor of shape ", x.shape());
  return mul(sum(x), 1.0 / static_cast<double>(x.numel()));
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  Tensor s = sum(x, dims, keepdim);
  TG_CHECK(s.numel() > 0 && x.numel() > 0, "mean: empty tensor of shape ", x.shape());
  return mul(s, static_cast<double>(s.numel()) / static_cast<double>(x.numel()));
}

// values = max of x over dim d (kept as size 1);  dx = g at the first maximal position, 0 elsewhere
static Tensor max_dim(const Tensor& x, int64_t d) {
  Around a(x.shape(), d);
  Shape keep = x.shape();
  keep[d] = 1;
  Tensor values = make_tensor(keep, x.dtype(), x.device());
  Tensor index = make_tensor(keep, DType::I64, x.device());
  backend::max_dim(x, a.outer, a.n, a.inner, values, index);
  if (needs_grad({x}))
    record("max", {x}, {values}, [a, sx = x.shape(), index](const Grads& g) {
      Tensor gx = make_tensor(sx, g[0].dtype(), g[0].device());
      backend::max_dim_backward(g[0], index, a.outer, a.n, a.inner, gx);
      return Grads{gx};
    });
  return values;
}

Tensor max(const Tensor& x) {
  check_float(x, "max");
  TG_CHECK(x.numel() > 0, "max: empty tensor of shape ", x.shape());
  return max_dim(x.reshape({x.numel()}), 0).reshape({});
}

Tensor max(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  check_float(x, "max");
  TG_CHECK(x.numel() > 0, "max: empty tensor of shape ", x.shape());
  ReduceDims rd(x.shape(), dims, keepdim, "max");
  Tensor y = x;
  for (int64_t d : rd.dims) y = max_dim(y, d);
  return y.reshape(rd.out);
}

Tensor argmax(const Tensor& x, int64_t dim) {
  check_float(x, "argmax");
  int64_t d = normalize_dim(dim, x.dim(), "argmax");
  TG_CHECK(x.numel() > 0, "argmax: empty tensor of shape ", x.shape());
  Around a(x.shape(), d);
  Shape out_shape = x.shape();
  out_shape.erase(out_shape.begin() + d);
  Tensor out = make_tensor(out_shape, DType::I64, x.device());
  backend::argmax(x, a.outer, a.n, a.inner, out);
  return out;
}

}  // namespace tapegrad
