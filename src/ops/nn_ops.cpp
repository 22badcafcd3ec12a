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

static Tensor reduce(const Tensor& per_element, Reduction r) { return r == Reduction::Mean ? mean(per_element) : sum(per_element); }

static void check_pair(const Tensor& input, const Tensor& target, const char* op) {
  check_float(input, op);
  check_float(target, op);
  TG_CHECK(input.shape() == target.shape(), op, ": input ", input.shape(), " and target ", target.shape(),
           " differ in shape");
}

// loss = reduce_i -log_probs[i, label_i]: a one-hot mask [N, C] times the input, summed (composed).
Tensor nll_loss(const Tensor& log_probs, const Tensor& labels, Reduction r) {
  check_float(log_probs, "nll_loss");
  TG_CHECK(log_probs.dim() == 2, "nll_loss: input must be [N, C] (log-probabilities), got ", log_probs.shape());
  TG_CHECK(labels.defined() && labels.dtype() == DType::I64, "nll_loss: labels must be i64, got ",
           labels.defined() ? name(labels.dtype()) : "undefined");
  const int64_t N = log_probs.size(0), C = log_probs.size(1);
  TG_CHECK(labels.shape() == Shape{N}, "nll_loss: labels ", labels.shape(), " do not fit input ", log_probs.shape(),
           " (expected [", N, "])");
  TG_CHECK(N > 0 || r == Reduction::Sum, "nll_loss: mean over an empty batch, input ", log_probs.shape());
  auto lv = labels.to_vector<int64_t>();
  for (size_t i = 0; i < lv.size(); ++i)
    TG_CHECK(lv[i] >= 0 && lv[i] < C, "nll_loss: label ", lv[i], " at index ", i, " is out of range [0, ", C, ")");
  Tensor onehot = eq(arange(C, DType::I64).reshape({1, C}), labels.reshape({N, 1})).to(log_probs.dtype());
  Tensor picked = -sum(log_probs * onehot);
  return r == Reduction::Mean ? picked * (1.0 / static_cast<double>(N)) : picked;
}

// l = relu(x) - x y + log(1 + exp(-|x|))  (= -(y log s + (1 - y) log(1 - s)), s = sigmoid(x), without overflow)
// dx = g (s - y), dy = -g x. One node for the elementwise loss (composing would differentiate |x| at 0 wrongly),
// then the reduction. Saves x and y.
Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target, Reduction r) {
  check_pair(logits, target, "binary_cross_entropy_with_logits");
  check_same_dtype(logits, target, "binary_cross_entropy_with_logits");
  Tensor l;
  {
    NoGradGuard no_grad;
    l = relu(logits) - logits * target + log(exp(-abs(logits)) + 1.0);
  }
  if (needs_grad({logits, target}))
    record("binary_cross_entropy_with_logits", {logits, target}, {l},
           [x = logits.detach(), y = target.detach(), gx = logits.requires_grad(), gy = target.requires_grad()](
               const Grads& g) { return Grads{gx ? g[0] * (sigmoid(x) - y) : Tensor(), gy ? -(g[0] * x) : Tensor()}; });
  return reduce(l, r);
}

// loss = reduce |input - target|;  gradient sign(d) g, 0 where d = 0 (abs)
Tensor l1_loss(const Tensor& input, const Tensor& target, Reduction r) {
  check_pair(input, target, "l1_loss");
  return reduce(abs(input - target), r);
}

// where(|d| < beta, 0.5 d^2 / beta, |d| - 0.5 beta): each side differentiated where it is chosen
Tensor smooth_l1_loss(const Tensor& input, const Tensor& target, Reduction r, double beta) {
  check_pair(input, target, "smooth_l1_loss");
  TG_CHECK(beta >= 0, "smooth_l1_loss: beta must be >= 0, got ", beta);
  if (beta == 0) return l1_loss(input, target, r);
  Tensor d = input - target, ad = abs(d);
  return reduce(where(ad.lt(beta), d * d * (0.5 / beta), ad - 0.5 * beta), r);
}

Tensor huber_loss(const Tensor& input, const Tensor& target, Reduction r, double delta) {
  check_pair(input, target, "huber_loss");
  TG_CHECK(delta > 0, "huber_loss: delta must be > 0, got ", delta);
  Tensor d = input - target, ad = abs(d);
  return reduce(where(ad.lt(delta), d * d * 0.5, (ad - 0.5 * delta) * delta), r);
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
