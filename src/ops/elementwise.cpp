// Elementwise ops with broadcasting: forward and backward side by side.
#include "common.hpp"

namespace tapegrad {

using backend::Binary;
using backend::Unary;

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  size_t r = std::max(a.size(), b.size());
  Shape out(r);
  for (size_t k = 0; k < r; ++k) {
    int64_t da = k + a.size() >= r ? a[k + a.size() - r] : 1;
    int64_t db = k + b.size() >= r ? b[k + b.size() - r] : 1;
    TG_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", a, " and ", b, " cannot be broadcast together (dim ",
             k, ": ", da, " vs ", db, ")");
    out[k] = da == 1 ? db : da;
  }
  return out;
}

static Tensor binary_forward(Binary op, const char* name, const Tensor& a, const Tensor& b) {
  check_float(a, name);
  check_float(b, name);
  check_same_dtype(a, b, name);
  check_same_device(a, b, name);
  Tensor out = make_tensor(broadcast_shapes(a.shape(), b.shape(), name), a.dtype(), a.device());
  backend::binary(op, a, b, out);
  return out;
}

// out = a + b;  da = g, db = g (each summed to its input's shape)
Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(Binary::Add, "add", a, b);
  if (needs_grad({a, b}))
    record("add", {a, b}, {out}, [sa = a.shape(), sb = b.shape()](const Grads& g) {
      return Grads{reduce_to(g[0], sa), reduce_to(g[0], sb)};
    });
  return out;
}

// out = a - b;  da = g, db = -g
Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(Binary::Sub, "sub", a, b);
  if (needs_grad({a, b}))
    record("sub", {a, b}, {out}, [sa = a.shape(), sb = b.shape()](const Grads& g) {
      return Grads{reduce_to(g[0], sa), reduce_to(neg(g[0]), sb)};
    });
  return out;
}

// out = a * b;  da = g * b, db = g * a
Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(Binary::Mul, "mul", a, b);
  if (needs_grad({a, b})) {
    bool ga = a.requires_grad(), gb = b.requires_grad();
    record("mul", {a, b}, {out}, [ga, gb, a = a.detach(), b = b.detach()](const Grads& g) {
      return Grads{ga ? reduce_to(mul(g[0], b), a.shape()) : Tensor(),
                   gb ? reduce_to(mul(g[0], a), b.shape()) : Tensor()};
    });
  }
  return out;
}

// out = a / b;  da = g / b, db = -g * out / b
Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(Binary::Div, "div", a, b);
  if (needs_grad({a, b})) {
    bool ga = a.requires_grad(), gb = b.requires_grad();
    record("div", {a, b}, {out}, [ga, gb, sa = a.shape(), b = b.detach(), out = out.detach()](const Grads& g) {
      Tensor g_over_b = div(g[0], b);
      return Grads{ga ? reduce_to(g_over_b, sa) : Tensor(),
                   gb ? reduce_to(neg(mul(g_over_b, out)), b.shape()) : Tensor()};
    });
  }
  return out;
}

static Tensor affine_op(const char* name, const Tensor& x, double alpha, double beta) {
  check_float(x, name);
  Tensor y = new_like(x);
  backend::affine(x, alpha, beta, y);
  if (needs_grad({x}))
    record(name, {x}, {y}, [alpha](const Grads& g) {
      if (alpha == 1.0) return Grads{g[0]};
      Tensor gx = new_like(g[0]);
      backend::affine(g[0], alpha, 0.0, gx);
      return Grads{gx};
    });
  return y;
}

Tensor add(const Tensor& a, double b) { return affine_op("add_scalar", a, 1.0, b); }  // da = g
Tensor mul(const Tensor& a, double b) { return affine_op("mul_scalar", a, b, 0.0); }  // da = b g
Tensor neg(const Tensor& x) { return affine_op("neg", x, -1.0, 0.0); }               // dx = -g

// y = f(x); dx = g f'(x), from x (log, pow) or from y (the rest): only that one is saved.
static Tensor unary_op(Unary op, const char* name, const Tensor& x, double param = 0.0) {
  check_float(x, name);
  Tensor y = new_like(x);
  backend::unary(op, x, y, param);
  if (needs_grad({x})) {
    bool from_x = op == Unary::Log || op == Unary::Pow || op == Unary::Erf;
    Tensor saved = from_x ? x.detach() : y.detach();
    record(name, {x}, {y}, [op, param, from_x, saved](const Grads& g) {
      Tensor gx = new_like(g[0]);
      backend::unary_backward(op, g[0], from_x ? saved : Tensor(), from_x ? Tensor() : saved, gx, param);
      return Grads{gx};
    });
  }
  return y;
}

Tensor exp(const Tensor& x) { return unary_op(Unary::Exp, "exp", x); }          // dx = g y
Tensor log(const Tensor& x) { return unary_op(Unary::Log, "log", x); }          // dx = g / x
Tensor sqrt(const Tensor& x) { return unary_op(Unary::Sqrt, "sqrt", x); }       // dx = g / (2 y)
Tensor pow(const Tensor& x, double e) { return unary_op(Unary::Pow, "pow", x, e); }  // dx = g e x^(e-1)
Tensor tanh(const Tensor& x) { return unary_op(Unary::Tanh, "tanh", x); }       // dx = g (1 - y^2)
Tensor sigmoid(const Tensor& x) { return unary_op(Unary::Sigmoid, "sigmoid", x); }  // dx = g y (1 - y)
Tensor relu(const Tensor& x) { return unary_op(Unary::Relu, "relu", x); }       // dx = g [y > 0]
Tensor erf(const Tensor& x) { return unary_op(Unary::Erf, "erf", x); }          // dx = g 2/sqrt(pi) exp(-x^2)
// |x| = relu(x) + relu(-x);  dx = g sign(x), 0 at 0 (both relus are flat there)
Tensor abs(const Tensor& x) { return add(relu(x), relu(neg(x))); }

// a / b with a scalar a, as a shape-[] tensor on b's device;  db = -g out / b (div's)
Tensor operator/(double a, const Tensor& b) {
  check_float(b, "div");
  return div(scalar_like(b, a), b);
}

// ---- comparisons and where (no gradient through the mask) ------------------------------------

static Tensor compare(Binary op, const char* name, const Tensor& a, const Tensor& b) {
  TG_CHECK(a.defined() && b.defined(), name, ": undefined tensor");
  if (a.dtype() == DType::I64 || b.dtype() == DType::I64) {  // labels: exact in f64 below 2^53
    TG_CHECK(a.dtype() == b.dtype(), name, ": dtype mismatch: ", a.dtype(), " ", a.shape(), " vs ", b.dtype(), " ",
             b.shape());
    return compare(op, name, a.to(DType::F64), b.to(DType::F64)).to(DType::F32);
  }
  NoGradGuard no_grad;  // a mask is a constant
  return binary_forward(op, name, a.detach(), b.detach());
}
Tensor eq(const Tensor& a, const Tensor& b) { return compare(Binary::Eq, "eq", a, b); }
Tensor ne(const Tensor& a, const Tensor& b) { return compare(Binary::Ne, "ne", a, b); }
Tensor lt(const Tensor& a, const Tensor& b) { return compare(Binary::Lt, "lt", a, b); }
Tensor le(const Tensor& a, const Tensor& b) { return compare(Binary::Le, "le", a, b); }
Tensor gt(const Tensor& a, const Tensor& b) { return compare(Binary::Gt, "gt", a, b); }
Tensor ge(const Tensor& a, const Tensor& b) { return compare(Binary::Ge, "ge", a, b); }

// out = masked(a, c) + masked(b, !c), each exactly 0 off its side;  da = masked(g, c), db = masked(g, !c),
// each summed to its input's shape. Saves the two masks (in a's dtype).
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  check_float(a, "where");
  check_float(b, "where");
  TG_CHECK(cond.defined(), "where: undefined condition");
  broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");  // names all three
  Tensor c = cond.detach().to(a.dtype());
  Tensor not_c = eq(c, scalar_like(c, 0.0));
  Tensor on_a = binary_forward(Binary::Masked, "where", a, c), on_b = binary_forward(Binary::Masked, "where", b, not_c);
  Tensor out = binary_forward(Binary::Add, "where", on_a, on_b);  // the broadcast of all three
  if (needs_grad({a, b}))
    record("where", {a, b}, {out}, [c, not_c, sa = a.shape(), sb = b.shape()](const Grads& g) {
      return Grads{reduce_to(binary_forward(Binary::Masked, "where", g[0], c), sa),
                   reduce_to(binary_forward(Binary::Masked, "where", g[0], not_c), sb)};
    });
  return out;
}

// out = x broadcast to shape;  dx = g summed back to x's shape
Tensor expand(const Tensor& x, const Shape& shape) {
  TG_CHECK(broadcast_shapes(x.shape(), shape, "expand") == shape, "expand: shape ", x.shape(),
           " cannot be broadcast to ", shape);
  if (x.shape() == shape) return x;
  Tensor out = make_tensor(shape, x.dtype(), x.device());
  backend::expand(x, out);
  if (needs_grad({x}))
    record("expand", {x}, {out}, [sx = x.shape()](const Grads& g) { return Grads{reduce_to(g[0], sx)}; });
  return out;
}

}  // namespace tapegrad
