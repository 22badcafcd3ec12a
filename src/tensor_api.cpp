// The Tensor methods of the indexing block in tensor.hpp: indexing, size-1 dims, the ops of ops.hpp as
// methods, comparisons and the in-place operators. Indexing composes slice() and reshape(), so the tape
// records it as those.
#include <algorithm>

#include "ops/common.hpp"

namespace tapegrad {

// y = x[..., i, ...] with dim removed (a copy of the slice, reshaped);  dx = g in the slice, 0 elsewhere
Tensor Tensor::select(int64_t dim_, int64_t i) const {
  TG_CHECK(this->dim() > 0, "select: a 0-dim tensor cannot be indexed");
  int64_t d = normalize_dim(dim_, this->dim(), "select");
  int64_t n = shape()[d];
  TG_CHECK(i >= -n && i < n, "select: index ", i, " is out of range for dim ", d, " of size ", n, " (shape ",
           shape(), ")");
  if (i < 0) i += n;
  Shape out = shape();
  out.erase(out.begin() + d);
  return slice(d, i, i + 1).reshape(out);
}

Tensor Tensor::index(const std::vector<TensorIndex>& idx) const {
  TG_CHECK(static_cast<int64_t>(idx.size()) <= dim(), "index: ", idx.size(), " indices for a tensor of shape ",
           shape());
  Tensor y = *this;
  int64_t d = 0;  // the dim of y that the next index applies to
  for (const TensorIndex& ix : idx) {
    if (!ix.is_slice) {
      y = y.select(d, ix.index);
      continue;
    }
    int64_t n = y.size(d);
    auto clamp = [n](int64_t v) { return std::clamp<int64_t>(v < 0 ? v + n : v, 0, n); };
    int64_t start = clamp(ix.slice.start), stop = std::max(start, clamp(ix.slice.stop));
    if (start != 0 || stop != n) y = y.slice(d, start, stop);
    ++d;
  }
  return y;
}

Tensor Tensor::unsqueeze(int64_t dim_) const {
  Shape s = shape();
  s.insert(s.begin() + normalize_dim(dim_, dim() + 1, "unsqueeze"), 1);
  return reshape(s);
}

Tensor Tensor::squeeze() const {
  Shape s;
  for (int64_t n : shape())
    if (n != 1) s.push_back(n);
  return reshape(s);
}

Tensor Tensor::squeeze(int64_t dim_) const {
  if (dim() == 0) return *this;
  int64_t d = normalize_dim(dim_, dim(), "squeeze");
  if (shape()[d] != 1) return *this;
  Shape s = shape();
  s.erase(s.begin() + d);
  return reshape(s);
}

Tensor Tensor::expand(const Shape& s) const { return tapegrad::expand(*this, s); }

Tensor Tensor::sum() const { return tapegrad::sum(*this); }
Tensor Tensor::sum(int64_t d, bool keepdim) const { return tapegrad::sum(*this, {d}, keepdim); }
Tensor Tensor::sum(const std::vector<int64_t>& dims, bool keepdim) const { return tapegrad::sum(*this, dims, keepdim); }
Tensor Tensor::mean() const { return tapegrad::mean(*this); }
Tensor Tensor::mean(int64_t d, bool keepdim) const { return tapegrad::mean(*this, {d}, keepdim); }
Tensor Tensor::mean(const std::vector<int64_t>& dims, bool keepdim) const {
  return tapegrad::mean(*this, dims, keepdim);
}
Tensor Tensor::max() const { return tapegrad::max(*this); }
Tensor Tensor::max(int64_t d, bool keepdim) const { return tapegrad::max(*this, {d}, keepdim); }
Tensor Tensor::argmax(int64_t d) const { return tapegrad::argmax(*this, d); }

Tensor Tensor::exp() const { return tapegrad::exp(*this); }
Tensor Tensor::log() const { return tapegrad::log(*this); }
Tensor Tensor::sqrt() const { return tapegrad::sqrt(*this); }
Tensor Tensor::abs() const { return tapegrad::abs(*this); }
Tensor Tensor::pow(double e) const { return tapegrad::pow(*this, e); }
Tensor Tensor::tanh() const { return tapegrad::tanh(*this); }
Tensor Tensor::sigmoid() const { return tapegrad::sigmoid(*this); }
Tensor Tensor::relu() const { return tapegrad::relu(*this); }
Tensor Tensor::softmax(int64_t d) const { return tapegrad::softmax(*this, d); }
Tensor Tensor::log_softmax(int64_t d) const { return tapegrad::log_softmax(*this, d); }
Tensor Tensor::matmul(const Tensor& o) const { return tapegrad::matmul(*this, o); }

Tensor Tensor::eq(const Tensor& o) const { return tapegrad::eq(*this, o); }
Tensor Tensor::ne(const Tensor& o) const { return tapegrad::ne(*this, o); }
Tensor Tensor::lt(const Tensor& o) const { return tapegrad::lt(*this, o); }
Tensor Tensor::le(const Tensor& o) const { return tapegrad::le(*this, o); }
Tensor Tensor::gt(const Tensor& o) const { return tapegrad::gt(*this, o); }
Tensor Tensor::ge(const Tensor& o) const { return tapegrad::ge(*this, o); }
// Against a scalar of this tensor's dtype; i64 tensors compare in f64 (exact below 2^53) and give f32 masks.
static Tensor compare_scalar(const Tensor& t, double v, Tensor (*f)(const Tensor&, const Tensor&)) {
  if (t.dtype() != DType::I64) return f(t, scalar_like(t, v));
  Tensor x = t.to(DType::F64);
  return f(x, scalar_like(x, v)).to(DType::F32);
}
Tensor Tensor::eq(double v) const { return compare_scalar(*this, v, tapegrad::eq); }
Tensor Tensor::ne(double v) const { return compare_scalar(*this, v, tapegrad::ne); }
Tensor Tensor::lt(double v) const { return compare_scalar(*this, v, tapegrad::lt); }
Tensor Tensor::le(double v) const { return compare_scalar(*this, v, tapegrad::le); }
Tensor Tensor::gt(double v) const { return compare_scalar(*this, v, tapegrad::gt); }
Tensor Tensor::ge(double v) const { return compare_scalar(*this, v, tapegrad::ge); }

// this = this op o, outside the tape: refused when the change would have to be differentiated.
static Tensor& in_place(Tensor& t, const Tensor& o, const char* op, Tensor (*f)(const Tensor&, const Tensor&)) {
  TG_CHECK(!grad_enabled() || (!t.requires_grad() && !o.requires_grad()), op, ": in-place update of a tensor ",
           t.shape(), " that is part of a graph (", t.requires_grad() ? "it" : "the other operand",
           " requires grad); write y = y ", op[8], " x instead, or run it under NoGradGuard");
  TG_CHECK(broadcast_shapes(t.shape(), o.shape(), op) == t.shape(), op, ": ", o.shape(),
           " does not broadcast to the updated tensor's shape ", t.shape());
  NoGradGuard no_grad;
  return t.copy_(f(t, o));
}
Tensor& Tensor::operator+=(const Tensor& o) { return in_place(*this, o, "operator+=", tapegrad::add); }
Tensor& Tensor::operator-=(const Tensor& o) { return in_place(*this, o, "operator-=", tapegrad::sub); }
Tensor& Tensor::operator*=(const Tensor& o) { return in_place(*this, o, "operator*=", tapegrad::mul); }
Tensor& Tensor::operator/=(const Tensor& o) { return in_place(*this, o, "operator/=", tapegrad::div); }
Tensor& Tensor::operator+=(double v) { return *this += scalar_like(*this, v); }
Tensor& Tensor::operator-=(double v) { return *this -= scalar_like(*this, v); }
Tensor& Tensor::operator*=(double v) { return *this *= scalar_like(*this, v); }
Tensor& Tensor::operator/=(double v) { return *this /= scalar_like(*this, v); }

}  // namespace tapegrad
