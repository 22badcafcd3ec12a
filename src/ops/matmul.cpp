// Matrix products: matmul (2-D and batched) and linear (the fused x W^T + b of the Linear layer).
#include "common.hpp"

namespace tapegrad {

// c[i] = op(a[i]) op(b[i]) for a batch, a stride of 0 sharing an operand. Shapes of the results only.
static Tensor bmm(const Tensor& a, bool ta, int64_t sa, const Tensor& b, bool tb, int64_t sb, int64_t batch,
                  int64_t m, int64_t n, int64_t k, const Shape& out_shape) {
  Tensor c = make_tensor(out_shape, a.dtype(), a.device());
  backend::gemm(ta, tb, batch, m, n, k, 1.0, a, sa, b, sb, 0.0, c);
  return c;
}

// 2-D:     a [M,K] b [K,N] -> [M,N];       da = g b^T, db = a^T g
// batched: a [B,M,K] b [B,K,N] -> [B,M,N]; per batch as above
// a [B,M,K] with b [K,N]: one 2-D product of [B*M,K]; a [M,K] with b [B,K,N]: a shared, da summed over B
Tensor matmul(const Tensor& a, const Tensor& b) {
  check_float(a, "matmul");
  check_float(b, "matmul");
  check_same_dtype(a, b, "matmul");
  check_same_device(a, b, "matmul");
  TG_CHECK(a.dim() >= 2 && a.dim() <= 3 && b.dim() >= 2 && b.dim() <= 3, "matmul: ", a.shape(), " x ", b.shape(),
           ": expected 2-D or 3-D operands");
  int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  TG_CHECK(b.size(-2) == K, "matmul: ", a.shape(), " x ", b.shape(), ": inner dims differ (", K, " vs ", b.size(-2),
           ")");
  if (a.dim() == 3 && b.dim() == 2) return matmul(a.reshape({a.size(0) * M, K}), b).reshape({a.size(0), M, N});
  int64_t B = a.dim() == 3 ? a.size(0) : b.dim() == 3 ? b.size(0) : 1;
  if (a.dim() == 3 && b.dim() == 3)
    TG_CHECK(a.size(0) == b.size(0), "matmul: ", a.shape(), " x ", b.shape(), ": batch sizes differ");
  int64_t sa = a.dim() == 3 ? M * K : 0, sb = b.dim() == 3 ? K * N : 0;
  Shape out_shape = B > 1 || a.dim() == 3 || b.dim() == 3 ? Shape{B, M, N} : Shape{M, N};
  Tensor c = bmm(a, false, sa, b, false, sb, B, M, N, K, out_shape);
  if (needs_grad({a, b})) {
    bool ga = a.requires_grad(), gb = b.requires_grad();
    record("matmul", {a, b}, {c}, [=, a = a.detach(), b = b.detach()](const Grads& g) {
      Tensor da, db;
      // A shared operand (stride 0) of a batched product gets per-batch gradients, then their sum.
      if (ga) {  // da = g b^T
        da = bmm(g[0], false, M * N, b, true, sb, B, M, K, N, !sa && B > 1 ? Shape{B, M, K} : a.shape());
        da = reduce_to(da, a.shape());
      }
      if (gb) {  // db = a^T g
        db = bmm(a, true, sa, g[0], false, M * N, B, K, N, M, !sb && B > 1 ? Shape{B, K, N} : b.shape());
        db = reduce_to(db, b.shape());
      }
      return Grads{da, db};
    });
  }
  return c;
}

// y [N,out] = x [N,in] W^T + b;  dx = g W, dW = g^T x, db = sum over rows of g.
// x [*, in] with other ranks: the leading dims flattened into N, and back (reshapes, recorded).
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_float(x, "linear");
  check_float(weight, "linear");
  check_same_dtype(x, weight, "linear");
  check_same_device(x, weight, "linear");
  TG_CHECK(weight.dim() == 2, "linear: weight must be [out, in], got ", weight.shape());
  int64_t out_f = weight.size(0), in_f = weight.size(1);
  if (x.dim() != 2 && x.dim() >= 1 && x.size(-1) == in_f) {
    Shape out = x.shape();
    out.back() = out_f;
    return linear(x.reshape({-1, in_f}), weight, bias).reshape(out);
  }
  TG_CHECK(x.dim() == 2 && x.size(1) == in_f, "linear: input ", x.shape(), " does not fit weight ", weight.shape(),
           " (expected [*, ", in_f, "])");
  if (bias.defined()) {
    check_same_dtype(x, bias, "linear");
    TG_CHECK(bias.shape() == Shape{out_f}, "linear: bias ", bias.shape(), " does not fit weight ", weight.shape(),
             " (expected [", out_f, "])");
  }
  int64_t N = x.size(0);
  Tensor y = make_tensor({N, out_f}, x.dtype(), x.device());
  backend::linear_forward(x, weight, bias, y);
  if (needs_grad({x, weight, bias})) {
    bool gx = x.requires_grad(), gw = weight.requires_grad(), gb = bias.defined() && bias.requires_grad();
    record("linear", {x, weight, bias}, {y},
           [=, x = x.detach(), w = weight.detach(), bshape = bias.defined() ? bias.shape() : Shape{}](const Grads& g) {
             Tensor dx, dw, db;
             if (gx) dx = bmm(g[0], false, 0, w, false, 0, 1, N, in_f, out_f, {N, in_f});
             if (gw) dw = bmm(g[0], true, 0, x, false, 0, 1, out_f, in_f, N, {out_f, in_f});
             if (gb) {
               db = make_tensor(bshape, g[0].dtype(), g[0].device());
               backend::sum_rows(g[0], db);
             }
             return Grads{dx, dw, db};
           });
  }
  return y;
}

}  // namespace tapegrad
