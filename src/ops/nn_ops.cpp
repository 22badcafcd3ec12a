// Softmax, log-softmax, the losses and dropout.
#include "common.hpp"

namespace tapegrad {

static Tensor softmax_op(const Tensor& x, int64_t dim, bool log, const char* name) {
  check_float(x, name);
  int64_t d = normalize_dim(dim, x.dim(), name);
  Around a(x.shape(), d);
  Tensor y = new_like(x);
  backend::softmax(x, a.outer, a.n, a.inner, log, y);
  if (needs_grad({x}))
    record(name, {x}, {y}, [a, log, y = y.detach()](const Grads& g) {
      Tensor gx = new_like(g[0]);
      backend::softmax_backward(g[0], y, a.outer, a.n, a.inner, log, gx);
      return Grads{gx};
    });
  return y;
}

// y = exp(x) / sum exp(x) along dim;  dx = y (g - sum(g y))
Tensor softmax(const Tensor& x, int64_t dim) { return softmax_op(x, dim, false, "softmax"); }
// y = x - logsumexp(x) along dim;      dx = g - softmax(x) sum(g)
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_op(x, dim, true, "log_softmax"); }

// loss = reduce_i (logsumexp(logits_i) - logits_i[label_i]);  dlogits_i = (softmax(logits_i) - onehot_i) g f
// with f = 1/N for the mean. Fused: forward saves the logits and lse_i = logsumexp(logits_i) [N], backward
// recomputes the softmax as it writes the gradient (one pass, no [N, C] softmax kept between the two).
Tensor cross_entropy(const Tensor& logits, const Tensor& labels, Reduction r) {
  check_float(logits, "cross_entropy");
  TG_CHECK(logits.dim() == 2, "cross_entropy: logits must be [N, C], got ", logits.shape());
  TG_CHECK(labels.dtype() == DType::I64, "cross_entropy: labels must be i64, got ", labels.dtype());
  TG_CHECK(labels.shape() == Shape{logits.size(0)}, "cross_entropy: labels ", labels.shape(),
           " do not fit logits ", logits.shape(), " (expected [", logits.size(0), "])");
  check_same_device(logits, labels, "cross_entropy");
  int64_t N = logits.size(0);
  TG_CHECK(N > 0 || r == Reduction::Sum, "cross_entropy: mean over an empty batch, logits ", logits.shape());
  Tensor per_sample = make_tensor({N}, logits.dtype(), logits.device());
  Tensor lse = make_tensor({N}, logits.dtype(), logits.device());
  backend::cross_entropy(logits, labels, per_sample, lse);
  double factor = r == Reduction::Mean ? 1.0 / static_cast<double>(N) : 1.0;
  Tensor loss = make_tensor({}, logits.dtype(), logits.device());
  backend::sum_to(per_sample, loss);
  if (factor != 1.0) backend::affine(loss, factor, 0.0, loss);
  if (needs_grad({logits}))
    record("cross_entropy", {logits}, {loss}, [factor, x = logits.detach(), lse, labels](const Grads& g) {
      Tensor gx = new_like(x);
      backend::cross_entropy_backward(x, lse, labels, g[0], factor, gx);
      return Grads{gx};
    });
  return loss;
}

// loss = reduce (input - target)^2: composed of recorded ops.
Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction r) {
  TG_CHECK(input.shape() == target.shape(), "mse_loss: input ", input.shape(), " and target ", target.shape(),
           " differ in shape");
  Tensor d = sub(input, target);
  Tensor sq = mul(d, d);
  return r == Reduction::Mean ? mean(sq) : sum(sq);
}

// y = x * mask, mask = 0 (probability p) or 1/(1-p): the gradient flows through mul.
Tensor dropout(const Tensor& x, double p, bool training, Generator& gen) {
  check_float(x, "dropout");
  TG_CHECK(p >= 0.0 && p < 1.0, "dropout: p must be in [0, 1), got ", p);
  if (!training || p == 0.0) return x;
  Tensor mask = new_like(x);
  backend::dropout_mask(p, gen.next_u64(), mask);  // one draw per mask: the key of its counter-based stream
  return mul(x, mask);
}

}  // namespace tapegrad
