// Shape ops: reshape, flatten, transpose, permute, slice, concat. All recorded.
#include <numeric>

#include "common.hpp"

namespace tapegrad {

// y = x with a new shape (shares storage);  dx = g reshaped back
Tensor Tensor::reshape(const Shape& s) const {
  Shape shape = s;
  int64_t known = 1, infer = -1;
  for (size_t k = 0; k < shape.size(); ++k) {
    if (shape[k] == -1) {
      TG_CHECK(infer < 0, "reshape: ", shape, " has more than one -1");
      infer = static_cast<int64_t>(k);
    } else {
      TG_CHECK(shape[k] >= 0, "reshape: invalid shape ", shape);
      known *= shape[k];
    }
  }
  if (infer >= 0) {
    TG_CHECK(known > 0 && numel() % known == 0, "reshape: cannot reshape ", this->shape(), " into ", s);
    shape[infer] = numel() / known;
  }
  TG_CHECK(tapegrad::numel(shape) == numel(), "reshape: cannot reshape ", this->shape(), " (", numel(),
           " elements) into ", s);
  Tensor y = alias(*this, shape);
  if (needs_grad({*this}))
    record("reshape", {*this}, {y}, [sx = this->shape()](const Grads& g) { return Grads{g[0].reshape(sx)}; });
  return y;
}

Tensor Tensor::flatten(int64_t start_dim, int64_t end_dim) const {
  if (dim() == 0) return reshape({1});
  int64_t s = normalize_dim(start_dim, dim(), "flatten"), e = normalize_dim(end_dim, dim(), "flatten");
  TG_CHECK(s <= e, "flatten: start_dim ", start_dim, " after end_dim ", end_dim, " for shape ", shape());
  Shape out(shape().begin(), shape().begin() + s);
  out.push_back(std::accumulate(shape().begin() + s, shape().begin() + e + 1, int64_t{1}, std::multiplies<>()));
  out.insert(out.end(), shape().begin() + e + 1, shape().end());
  return reshape(out);
}

// y = x with dims permuted (a copy);  dx = g permuted by the inverse
Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  TG_CHECK(static_cast<int64_t>(dims.size()) == dim(), "permute: ", dims.size(), " dims given for shape ", shape());
  std::vector<int64_t> d(dims.size()), inverse(dims.size());
  std::vector<bool> seen(dims.size(), false);
  Shape out(dims.size());
  for (size_t k = 0; k < dims.size(); ++k) {
    d[k] = normalize_dim(dims[k], dim(), "permute");
    TG_CHECK(!seen[d[k]], "permute: dim ", dims[k], " repeated for shape ", shape());
    seen[d[k]] = true;
    inverse[d[k]] = static_cast<int64_t>(k);
    out[k] = shape()[d[k]];
  }
  Tensor y = make_tensor(out, dtype(), device());
  backend::permute(*this, d, y);
  if (needs_grad({*this}))
    record("permute", {*this}, {y}, [inverse](const Grads& g) { return Grads{g[0].permute(inverse)}; });
  return y;
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  TG_CHECK(dim() >= 2, "transpose: needs at least 2 dims, got shape ", shape());
  std::vector<int64_t> dims(static_cast<size_t>(dim()));
  std::iota(dims.begin(), dims.end(), 0);
  std::swap(dims[normalize_dim(d0, dim(), "transpose")], dims[normalize_dim(d1, dim(), "transpose")]);
  return permute(dims);
}

// y = x[..., start:end, ...] along dim (a copy);  dx = zeros with g written into the slice
Tensor Tensor::slice(int64_t dim_, int64_t start, int64_t end) const {
  int64_t d = normalize_dim(dim_, dim(), "slice");
  int64_t n = shape()[d];
  TG_CHECK(0 <= start && start <= end && end <= n, "slice: range [", start, ", ", end, ") out of bounds for dim ", d,
           " of shape ", shape());
  Around a(shape(), d);
  Shape out = shape();
  out[d] = end - start;
  Tensor y = make_tensor(out, dtype(), device());
  backend::copy_block_from(*this, a.outer, n, start, a.inner, y, end - start);
  if (needs_grad({*this}))
    record("slice", {*this}, {y}, [a, start, sx = shape()](const Grads& g) {
      Tensor gx = zeros(sx, {g[0].dtype(), g[0].device()});
      backend::copy_block(g[0], a.outer, g[0].numel() / (a.outer * a.inner), a.inner, gx, a.n, start);
      return Grads{gx};
    });
  return y;
}

// y = the tensors joined along dim;  each dx = its slice of g
Tensor concat(const std::vector<Tensor>& ts, int64_t dim) {
  TG_CHECK(!ts.empty(), "concat: no tensors given");
  const Tensor& t0 = ts[0];
  int64_t d = normalize_dim(dim, t0.dim(), "concat");
  Shape out = t0.shape();
  out[d] = 0;
  for (const Tensor& t : ts) {
    check_same_dtype(t0, t, "concat");
    check_same_device(t0, t, "concat");
    bool fits = t.dim() == t0.dim();
    for (int64_t k = 0; fits && k < t.dim(); ++k) fits = k == d || t.shape()[k] == t0.shape()[k];
    TG_CHECK(fits, "concat: shapes ", t0.shape(), " and ", t.shape(), " differ outside dim ", d);
    out[d] += t.shape()[d];
  }
  Tensor y = make_tensor(out, t0.dtype(), t0.device());
  Around a(out, d);
  std::vector<int64_t> starts;
  int64_t at = 0;
  for (const Tensor& t : ts) {
    starts.push_back(at);
    backend::copy_block(t, a.outer, t.shape()[d], a.inner, y, a.n, at);
    at += t.shape()[d];
  }
  if (needs_grad(ts)) {
    std::vector<int64_t> sizes;
    for (const Tensor& t : ts) sizes.push_back(t.shape()[d]);
    record("concat", ts, {y}, [d, starts, sizes](const Grads& g) {
      Grads gs;
      for (size_t i = 0; i < starts.size(); ++i) gs.push_back(g[0].slice(d, starts[i], starts[i] + sizes[i]));
      return gs;
    });
  }
  return y;
}

// y = the tensors (one shape) joined along a new dim;  each dx = its slice of g (through concat)
Tensor stack(const std::vector<Tensor>& ts, int64_t dim) {
  TG_CHECK(!ts.empty(), "stack: no tensors given");
  int64_t d = normalize_dim(dim, ts[0].dim() + 1, "stack");
  std::vector<Tensor> parts;
  for (const Tensor& t : ts) {
    TG_CHECK(t.shape() == ts[0].shape(), "stack: shapes ", ts[0].shape(), " and ", t.shape(), " differ");
    parts.push_back(t.unsqueeze(d));
  }
  return concat(parts, d);
}

void set_num_threads(int n) { backend::set_num_threads(n); }
int num_threads() { return backend::num_threads(); }

}  // namespace tapegrad
