// Convolution, batch normalisation and pooling over NCHW tensors. These are the ops a GPU backend hands
// to cuDNN, so each has hand-written backend kernels for forward and backward (src/kernels.inc).
#include "common.hpp"

namespace tapegrad {

namespace {

// The window geometry for x [N, C, H, W], or an Error naming op and the shapes.
backend::Window2d window(const char* op, const Tensor& x, int64_t K, int64_t R, int64_t S, int64_t stride,
                         int64_t padding, const Shape& wshape) {
  TG_CHECK(x.dim() == 4, op, ": input must be [N, C, H, W], got ", x.shape());
  TG_CHECK(stride >= 1, op, ": stride must be >= 1, got ", stride, " (input ", x.shape(), ")");
  TG_CHECK(padding >= 0, op, ": padding must be >= 0, got ", padding, " (input ", x.shape(), ")");
  backend::Window2d g;
  g.N = x.size(0), g.C = x.size(1), g.H = x.size(2), g.W = x.size(3);
  g.K = K, g.R = R, g.S = S;
  g.stride_h = g.stride_w = stride;
  g.pad_h = g.pad_w = padding;
  std::string weight_desc = wshape.empty() ? "" : " (weight " + to_string(wshape) + ")";
  TG_CHECK(R >= 1 && S >= 1 && g.H + 2 * padding >= R && g.W + 2 * padding >= S, op, ": kernel ", R, "x", S,
           weight_desc, " does not fit input ", x.shape(), " with padding ", padding);
  g.P = (g.H + 2 * padding - R) / stride + 1;
  g.Q = (g.W + 2 * padding - S) / stride + 1;
  return g;
}

}  // namespace

// y [N,K,P,Q] = sum over c, r, s of x_pad[n, c, p stride + r, q stride + s] w[k, c, r, s] + bias[k]
// x [N,C,H,W], w [K,C,R,S], bias [K];  P = (H + 2 padding - R) / stride + 1
// dx = conv2d_backward_input(g, w), dw, dbias = conv2d_backward_weight(g, x). Saves x and w.
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t stride, int64_t padding) {
  check_float(x, "conv2d");
  check_float(weight, "conv2d");
  check_same_dtype(x, weight, "conv2d");
  check_same_device(x, weight, "conv2d");
  TG_CHECK(weight.dim() == 4, "conv2d: weight must be [out_channels, in_channels, kH, kW], got ", weight.shape());
  TG_CHECK(x.dim() == 4 && x.size(1) == weight.size(1), "conv2d: input ", x.shape(), " does not fit weight ",
           weight.shape(), " (expected [N, ", weight.size(1), ", H, W])");
  if (bias.defined()) {
    check_same_dtype(x, bias, "conv2d");
    TG_CHECK(bias.shape() == Shape{weight.size(0)}, "conv2d: bias ", bias.shape(), " does not fit weight ",
             weight.shape(), " (expected [", weight.size(0), "])");
  }
  backend::Window2d g =
      window("conv2d", x, weight.size(0), weight.size(2), weight.size(3), stride, padding, weight.shape());
  Tensor y = make_tensor({g.N, g.K, g.P, g.Q}, x.dtype(), x.device());
  backend::conv2d_forward(x, weight, bias, g, y);
  if (needs_grad({x, weight, bias})) {
    bool gx = x.requires_grad(), gw = weight.requires_grad(), gb = bias.defined() && bias.requires_grad();
    record("conv2d", {x, weight, bias}, {y}, [=, x = x.detach(), w = weight.detach()](const Grads& gy) {
      Tensor dx, dw, db;
      if (gx) {
        dx = new_like(x);
        backend::conv2d_backward_input(gy[0], w, g, dx);
      }
      if (gw || gb) {
        Tensor dw_out = new_like(w);  // computed together with db (one pass); dropped when not needed
        if (gb) db = make_tensor({g.K}, w.dtype(), w.device());
        backend::conv2d_backward_weight(gy[0], x, g, dw_out, db);
        if (gw) dw = dw_out;
      }
      return Grads{dx, dw, db};
    });
  }
  return y;
}

namespace {

// The checks batch_norm and batch_norm_relu share, naming op: x [N, C, ...] float; each defined one of
// running_mean, running_var, weight, bias is [C] of x's dtype and device; the running pair is both or none.
void check_batch_norm(const char* op, const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                      const Tensor& weight, const Tensor& bias, bool training, double eps) {
  check_float(x, op);
  TG_CHECK(x.dim() >= 2, op, ": input must be [N, C, ...], got ", x.shape());
  int64_t C = x.size(1);
  auto check_channel = [&](const Tensor& t, const char* what) {
    if (!t.defined()) return;
    check_same_dtype(x, t, op);
    check_same_device(x, t, op);
    TG_CHECK(t.shape() == Shape{C}, op, ": ", what, " ", t.shape(), " does not fit input ", x.shape(),
             " (expected [", C, "])");
  };
  check_channel(running_mean, "running_mean");
  check_channel(running_var, "running_var");
  check_channel(weight, "weight");
  check_channel(bias, "bias");
  TG_CHECK(running_mean.defined() == running_var.defined(), op,
           ": running_mean and running_var must be both given or both undefined");
  TG_CHECK(eps > 0, op, ": eps must be > 0, got ", eps);
  if (training)
    TG_CHECK(x.numel() / std::max<int64_t>(C, 1) > 1, op, ": expected more than 1 value per channel in training, got input ",
             x.shape());
  else
    TG_CHECK(running_mean.defined(), op, ": evaluation needs running_mean and running_var (input ", x.shape(), ")");
}

// What backward needs in evaluation, where the statistics are constants: mean = running_mean,
// invstd = (running_var + eps)^-1/2.
void running_stats(const Tensor& running_mean, const Tensor& running_var, double eps, Tensor& mean, Tensor& invstd) {
  backend::convert(running_mean, mean);
  backend::affine(running_var, 1.0, eps, invstd);
  backend::unary(backend::Unary::Pow, invstd, invstd, -0.5);
}

}  // namespace

// x [N, C, *]; per channel c over the other dims:
//   training:   y = (x - mean_B) / sqrt(var_B + eps) * weight + bias (biased var_B); running stats, when
//               given, move by momentum towards (mean_B, unbiased var_B), in place and outside the tape.
//   evaluation: y = (x - running_mean) / sqrt(running_var + eps) * weight + bias.
// Saves x, mean, invstd; backward is one fused pass (batch_norm_backward).
Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, bool training, double momentum, double eps) {
  check_batch_norm("batch_norm", x, running_mean, running_var, weight, bias, training, eps);
  int64_t C = x.size(1);
  Tensor y = new_like(x);
  Tensor mean = make_tensor({C}, x.dtype(), x.device()), invstd = make_tensor({C}, x.dtype(), x.device());
  if (training) {
    Tensor rm = running_mean, rv = running_var;
    backend::batch_norm_forward_training(x, weight, bias, eps, momentum, rm, rv, y, mean, invstd);
  } else {
    backend::batch_norm_forward_inference(x, weight, bias, running_mean, running_var, eps, y);
  }
  if (needs_grad({x, weight, bias})) {
    if (!training) running_stats(running_mean, running_var, eps, mean, invstd);
    bool gx = x.requires_grad(), gw = weight.defined() && weight.requires_grad(),
         gb = bias.defined() && bias.requires_grad();
    record("batch_norm", {x, weight, bias}, {y},
           [=, x = x.detach(), w = weight.defined() ? weight.detach() : Tensor()](const Grads& g) {
             Tensor dx = gx ? new_like(x) : Tensor();
             Tensor dw = gw ? new_like(w) : Tensor();
             Tensor db = gb ? new_like(mean) : Tensor();
             backend::batch_norm_backward(g[0], x, w, mean, invstd, training, dx, dw, db);
             return Grads{dx, dw, db};
           });
  }
  return y;
}

// y = relu(batch_norm(x, ...) + residual) (residual undefined: relu(batch_norm(x, ...))), one node, one pass
// over y forward. Saves x, y, mean, invstd (y is the next layer's input, kept anyway: no more memory than
// batch_norm alone). Backward: g = gy where y > 0 (relu's convention: 0 at 0), dresidual = g, and dx, dweight,
// dbias are batch_norm's from g, in one fused pass (batch_norm_relu_backward).
Tensor batch_norm_relu(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                       const Tensor& bias, bool training, double momentum, double eps, const Tensor& residual) {
  check_batch_norm("batch_norm_relu", x, running_mean, running_var, weight, bias, training, eps);
  if (residual.defined()) {
    check_same_dtype(x, residual, "batch_norm_relu");
    check_same_device(x, residual, "batch_norm_relu");
    TG_CHECK(residual.shape() == x.shape(), "batch_norm_relu: residual ", residual.shape(), " does not fit input ",
             x.shape(), " (expected the same shape; no broadcasting)");
  }
  int64_t C = x.size(1);
  Tensor y = new_like(x);
  Tensor mean = make_tensor({C}, x.dtype(), x.device()), invstd = make_tensor({C}, x.dtype(), x.device());
  if (training) {
    Tensor rm = running_mean, rv = running_var;
    backend::batch_norm_relu_forward_training(x, weight, bias, residual, eps, momentum, rm, rv, y, mean, invstd);
  } else {
    backend::batch_norm_relu_forward_inference(x, weight, bias, residual, running_mean, running_var, eps, y);
  }
  if (needs_grad({x, weight, bias, residual})) {
    if (!training) running_stats(running_mean, running_var, eps, mean, invstd);
    bool gx = x.requires_grad(), gw = weight.defined() && weight.requires_grad(),
         gb = bias.defined() && bias.requires_grad(), gr = residual.defined() && residual.requires_grad();
    record("batch_norm_relu", {x, weight, bias, residual}, {y},
           [=, x = x.detach(), y = y.detach(), w = weight.defined() ? weight.detach() : Tensor()](const Grads& g) {
             Tensor dx = gx ? new_like(x) : Tensor();
             Tensor dw = gw ? new_like(w) : Tensor();
             Tensor db = gb ? new_like(mean) : Tensor();
             Tensor dr = gr ? new_like(x) : Tensor();
             backend::batch_norm_relu_backward(g[0], y, x, w, mean, invstd, training, dx, dw, db, dr);
             return Grads{dx, dw, db, dr};
           });
  }
  return y;
}

// y [N,C,P,Q] = max over the window (padding is -inf);  dx[argmax] += g. Saves the argmax indices.
Tensor max_pool2d(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding) {
  check_float(x, "max_pool2d");
  if (stride == 0) stride = kernel;
  TG_CHECK(kernel >= 1 && 2 * padding <= kernel, "max_pool2d: padding ", padding, " must be at most half of kernel ",
           kernel, " (input ", x.shape(), ")");
  backend::Window2d g = window("max_pool2d", x, x.dim() == 4 ? x.size(1) : 0, kernel, kernel, stride, padding, {});
  Tensor y = make_tensor({g.N, g.C, g.P, g.Q}, x.dtype(), x.device());
  Tensor idx = make_tensor(y.shape(), DType::I64, x.device());
  backend::max_pool2d_forward(x, g, y, idx);
  if (needs_grad({x}))
    record("max_pool2d", {x}, {y}, [g, idx, xs = x.shape()](const Grads& gy) {
      Tensor dx = make_tensor(xs, gy[0].dtype(), gy[0].device());
      backend::max_pool2d_backward(gy[0], idx, g, dx);
      return Grads{dx};
    });
  return y;
}

// y [N,C,P,Q] = mean over the window (padding counts as zeros, divisor kernel^2);  dx = g / kernel^2 spread
Tensor avg_pool2d(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding) {
  check_float(x, "avg_pool2d");
  if (stride == 0) stride = kernel;
  TG_CHECK(kernel >= 1 && 2 * padding <= kernel, "avg_pool2d: padding ", padding, " must be at most half of kernel ",
           kernel, " (input ", x.shape(), ")");
  backend::Window2d g = window("avg_pool2d", x, x.dim() == 4 ? x.size(1) : 0, kernel, kernel, stride, padding, {});
  Tensor y = make_tensor({g.N, g.C, g.P, g.Q}, x.dtype(), x.device());
  backend::avg_pool2d_forward(x, g, y);
  if (needs_grad({x}))
    record("avg_pool2d", {x}, {y}, [g, xs = x.shape()](const Grads& gy) {
      Tensor dx = make_tensor(xs, gy[0].dtype(), gy[0].device());
      backend::avg_pool2d_backward(gy[0], g, dx);
      return Grads{dx};
    });
  return y;
}

// y [N,C,oh,ow]: the mean of each of oh x ow equal tiles (H, W multiples of oh, ow), as PyTorch's
// adaptive_avg_pool2d does for those sizes; other sizes are an error, not a silent approximation.
Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h, int64_t out_w) {
  check_float(x, "adaptive_avg_pool2d");
  TG_CHECK(x.dim() == 4, "adaptive_avg_pool2d: input must be [N, C, H, W], got ", x.shape());
  TG_CHECK(out_h >= 1 && out_w >= 1 && x.size(2) % out_h == 0 && x.size(3) % out_w == 0,
           "adaptive_avg_pool2d: output ", out_h, "x", out_w, " must divide the input plane of ", x.shape());
  int64_t kh = x.size(2) / out_h, kw = x.size(3) / out_w;
  backend::Window2d g = window("adaptive_avg_pool2d", x, x.size(1), kh, kw, 1, 0, {});
  g.stride_h = kh, g.stride_w = kw, g.P = out_h, g.Q = out_w;
  Tensor y = make_tensor({g.N, g.C, g.P, g.Q}, x.dtype(), x.device());
  backend::avg_pool2d_forward(x, g, y);
  if (needs_grad({x}))
    record("adaptive_avg_pool2d", {x}, {y}, [g, xs = x.shape()](const Grads& gy) {
      Tensor dx = make_tensor(xs, gy[0].dtype(), gy[0].device());
      backend::avg_pool2d_backward(gy[0], g, dx);
      return Grads{dx};
    });
  return y;
}

Tensor global_avg_pool2d(const Tensor& x) {
  TG_CHECK(x.dim() == 4, "global_avg_pool2d: input must be [N, C, H, W], got ", x.shape());
  return adaptive_avg_pool2d(x, 1, 1);
}

}  // namespace tapegrad
