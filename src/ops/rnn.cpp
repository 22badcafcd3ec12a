// The recurrent ops: embedding lookup and one LSTM layer over a whole sequence. Both are what a GPU backend
// hands to its libraries (a gather / scatter-add, and cuDNN's RNN), so each has backend kernels for forward
// and backward (src/kernels.inc); the tape records one node per call.
#include "common.hpp"

namespace tapegrad {

// y [*, E] = weight[indices] (indices I64 [*], each in [0, V)), weight [V, E].
// dweight [V, E] = 0 except dweight[indices[n]] += g[n]: only the rows used receive gradient. Saves indices.
Tensor embedding(const Tensor& weight, const Tensor& indices) {
  check_float(weight, "embedding");
  TG_CHECK(weight.dim() == 2, "embedding: weight must be [num_embeddings, embedding_dim], got ", weight.shape());
  TG_CHECK(indices.defined() && indices.dtype() == DType::I64, "embedding: indices must be i64, got ",
           indices.defined() ? name(indices.dtype()) : "undefined", " ", indices.defined() ? to_string(indices.shape()) : "");
  check_same_device(weight, indices, "embedding");
  Shape out = indices.shape();
  out.push_back(weight.size(1));
  Tensor y = make_tensor(out, weight.dtype(), weight.device());
  backend::embedding_forward(weight, indices, y);  // checks the range of every index
  if (needs_grad({weight}))
    record("embedding", {weight}, {y}, [indices, ws = weight.shape()](const Grads& g) {
      Tensor dw = make_tensor(ws, g[0].dtype(), g[0].device());
      backend::embedding_backward(g[0], indices, dw);
      return Grads{dw};
    });
  return y;
}

// One layer, whole sequence. x [T, B, I]; h0, c0 [B, H] or undefined (zeros); w_ih [4H, I], w_hh [4H, H];
// b_ih, b_hh [4H] or both undefined. Gate order i, f, g, o (PyTorch's):
//   a_t = x_t w_ih^T + b_ih + h_{t-1} w_hh^T + b_hh;  i, f, o = sigmoid; g = tanh
//   c_t = f c_{t-1} + i g;  h_t = o tanh(c_t)
// -> y [T, B, H] (every h_t), h [B, H] = h_{T-1}, c [B, H] = c_{T-1}.
// Backward (backend::lstm_backward) saves x, h0, c0, the weights, y and the kernel's reserve (gates and cells).
LstmOutput lstm(const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh,
               const Tensor& b_ih, const Tensor& b_hh) {
  check_float(x, "lstm");
  TG_CHECK(x.dim() == 3 && x.size(0) > 0 && x.size(1) > 0, "lstm: input must be [T, B, I] with T, B > 0, got ",
           x.shape());
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2);
  TG_CHECK(w_hh.defined() && w_hh.dim() == 2 && w_hh.size(0) == 4 * w_hh.size(1) && w_hh.size(1) > 0,
           "lstm: weight_hh must be [4H, H], got ", w_hh.defined() ? to_string(w_hh.shape()) : "undefined");
  const int64_t H = w_hh.size(1);
  TG_CHECK(w_ih.defined() && (w_ih.shape() == Shape{4 * H, I}), "lstm: weight_ih ",
           w_ih.defined() ? to_string(w_ih.shape()) : "undefined", " does not fit input ", x.shape(),
           " and weight_hh ", w_hh.shape(), " (expected [", 4 * H, ", ", I, "])");
  TG_CHECK(b_ih.defined() == b_hh.defined(), "lstm: bias_ih and bias_hh must be both given or both undefined");
  for (const Tensor* t : {&w_ih, &w_hh, &b_ih, &b_hh, &h0, &c0}) {
    if (!t->defined()) continue;
    check_same_dtype(x, *t, "lstm");
    check_same_device(x, *t, "lstm");
  }
  if (b_ih.defined())
    TG_CHECK(b_ih.shape() == Shape{4 * H} && b_hh.shape() == Shape{4 * H}, "lstm: biases ", b_ih.shape(), " and ",
             b_hh.shape(), " must be [", 4 * H, "] (hidden size ", H, ")");
  for (const Tensor* s : {&h0, &c0})
    if (s->defined())
      TG_CHECK((s->shape() == Shape{B, H}), "lstm: initial state ", s->shape(), " does not fit input ", x.shape(),
               " and hidden size ", H, " (expected [", B, ", ", H, "])");

  LstmOutput out{make_tensor({T, B, H}, x.dtype(), x.device()), make_tensor({B, H}, x.dtype(), x.device()),
                make_tensor({B, H}, x.dtype(), x.device())};
  // Nothing recorded (evaluation): an empty reserve tells the backend that no backward follows (cuDNN's
  // inference mode); undefined: it allocates what backward needs.
  const bool record_it = needs_grad({x, h0, c0, w_ih, w_hh, b_ih, b_hh});
  Tensor reserve = record_it ? Tensor() : make_tensor({0}, x.dtype(), x.device());
  const backend::LstmWeights w{w_ih, w_hh, b_ih, b_hh};
  backend::lstm_forward(x, h0, c0, w, out.y, out.h, out.c, reserve);
  if (record_it) {
    const bool gx = x.requires_grad(), gh = h0.defined() && h0.requires_grad(), gc = c0.defined() && c0.requires_grad();
    const bool gwi = w_ih.requires_grad(), gwh = w_hh.requires_grad(),
               gb = b_ih.defined() && (b_ih.requires_grad() || b_hh.requires_grad());
    auto d = [](const Tensor& t) { return t.defined() ? t.detach() : Tensor(); };
    const backend::LstmWeights saved{d(w_ih), d(w_hh), d(b_ih), d(b_hh)};
    record("lstm", {x, h0, c0, w_ih, w_hh, b_ih, b_hh}, {out.y, out.h, out.c},
           [=, x = x.detach(), h0 = d(h0), c0 = d(c0), y = out.y.detach()](const Grads& g) {
             auto like = [](bool want, const Tensor& t) { return want ? new_like(t) : Tensor(); };
             Tensor dx = like(gx, x), dh0 = like(gh, h0), dc0 = like(gc, c0);
             backend::LstmWeights dw{like(gwi, saved.w_ih), like(gwh, saved.w_hh), like(gb, saved.b_ih),
                                     like(gb, saved.b_hh)};
             backend::lstm_backward(x, h0, c0, saved, y, reserve, g[0], g[1], g[2], dx, dh0, dc0, dw);
             return Grads{dx, dh0, dc0, dw.w_ih, dw.w_hh, dw.b_ih, dw.b_hh};
           });
  }
  return out;
}

// One GRU layer, composed of recorded ops (the tape differentiates it step by step; no backend kernel).
// x [T, B, I], h0 [B, H] or undefined; w_ih [3H, I], w_hh [3H, H], b_ih, b_hh [3H], gate rows r, z, n.
//   gi = x w_ih^T + b_ih [T, B, 3H] (one product for the sequence);  per step gh = h w_hh^T + b_hh [B, 3H]
//   r = sigmoid(gi_r + gh_r), z = sigmoid(gi_z + gh_z), n = tanh(gi_n + r gh_n), h = n + z (h - n)
GruOutput gru(const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh, const Tensor& b_ih,
              const Tensor& b_hh) {
  check_float(x, "gru");
  TG_CHECK(x.dim() == 3 && x.size(0) > 0 && x.size(1) > 0, "gru: input must be [T, B, I] with T, B > 0, got ",
           x.shape());
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2);
  TG_CHECK(w_hh.defined() && w_hh.dim() == 2 && w_hh.size(0) == 3 * w_hh.size(1) && w_hh.size(1) > 0,
           "gru: weight_hh must be [3H, H], got ", w_hh.defined() ? to_string(w_hh.shape()) : "undefined");
  const int64_t H = w_hh.size(1);
  TG_CHECK(w_ih.defined() && (w_ih.shape() == Shape{3 * H, I}), "gru: weight_ih ",
           w_ih.defined() ? to_string(w_ih.shape()) : "undefined", " does not fit input ", x.shape(),
           " and weight_hh ", w_hh.shape(), " (expected [", 3 * H, ", ", I, "])");
  TG_CHECK(b_ih.defined() == b_hh.defined(), "gru: bias_ih and bias_hh must be both given or both undefined");
  if (b_ih.defined())
    TG_CHECK(b_ih.shape() == Shape{3 * H} && b_hh.shape() == Shape{3 * H}, "gru: biases ", b_ih.shape(), " and ",
             b_hh.shape(), " must be [", 3 * H, "] (hidden size ", H, ")");
  if (h0.defined())
    TG_CHECK((h0.shape() == Shape{B, H}), "gru: initial state ", h0.shape(), " does not fit input ", x.shape(),
             " and hidden size ", H, " (expected [", B, ", ", H, "])");
  for (const Tensor* t : {&w_ih, &w_hh, &b_ih, &b_hh, &h0})
    if (t->defined()) check_same_dtype(x, *t, "gru");

  Tensor gi = linear(x, w_ih, b_ih);
  Tensor h = h0.defined() ? h0 : zeros({B, H}, x.dtype());
  std::vector<Tensor> ys;
  for (int64_t t = 0; t < T; ++t) {
    Tensor gh = linear(h, w_hh, b_hh), git = gi[t];
    auto part = [H](const Tensor& g, int64_t q) { return g.slice(1, q * H, (q + 1) * H); };
    Tensor r = sigmoid(part(git, 0) + part(gh, 0));
    Tensor z = sigmoid(part(git, 1) + part(gh, 1));
    Tensor n = tanh(part(git, 2) + r * part(gh, 2));
    h = n + z * (h - n);
    ys.push_back(h);
  }
  return {stack(ys, 0), h};
}

}  // namespace tapegrad
