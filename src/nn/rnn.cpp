// Embedding, LSTM, clip_grad_norm.
#include "tapegrad/nn/rnn.hpp"

#include <cmath>
#include <string>

#include "../backend.hpp"
#include "../internal.hpp"
#include "tapegrad/nn/init.hpp"
#include "tapegrad/nn/utils.hpp"
#include "tapegrad/ops.hpp"

namespace tapegrad::nn {

Embedding::Embedding(int64_t num, int64_t dim, Generator& gen, DType dtype)
    : Layer("Embedding"), num_embeddings(num), embedding_dim(dim) {
  TG_CHECK(num > 0 && dim > 0, "Embedding: num_embeddings and embedding_dim must be positive, got ", num, " and ",
           dim);
  weight = register_parameter("weight", empty({num, dim}, dtype));
  init::normal_(weight, 0.0, 1.0, gen);
}

Tensor Embedding::forward(const Tensor& indices) { return embedding(weight, indices); }

LSTM::LSTM(int64_t in, int64_t hidden, int64_t layers, double p, bool bias, Generator& gen, DType dtype)
    : Module("LSTM"), input_size(in), hidden_size(hidden), num_layers(layers), dropout(p), gen_(&gen) {
  TG_CHECK(in > 0 && hidden > 0 && layers > 0, "LSTM: input_size, hidden_size and num_layers must be positive, got ",
           in, ", ", hidden, ", ", layers);
  TG_CHECK(p >= 0.0 && p < 1.0, "LSTM: dropout must be in [0, 1), got ", p);
  const double bound = 1.0 / std::sqrt(static_cast<double>(hidden));
  auto param = [&](const std::string& name, const Shape& s) {
    Tensor t = register_parameter(name, empty(s, dtype));
    init::uniform_(t, -bound, bound, gen);
    return t;
  };
  for (int64_t k = 0; k < layers; ++k) {
    const std::string l = "_l" + std::to_string(k);
    weight_ih.push_back(param("weight_ih" + l, {4 * hidden, k == 0 ? in : hidden}));
    weight_hh.push_back(param("weight_hh" + l, {4 * hidden, hidden}));
    if (bias) {
      bias_ih.push_back(param("bias_ih" + l, {4 * hidden}));
      bias_hh.push_back(param("bias_hh" + l, {4 * hidden}));
    }
  }
}

LSTMResult LSTM::forward(const Tensor& x, const LSTMState& state) {
  TG_CHECK(x.defined() && x.dim() == 3 && x.size(2) == input_size, "LSTM: input ",
           x.defined() ? to_string(x.shape()) : "undefined", " does not fit input_size ", input_size,
           " (expected [T, B, ", input_size, "])");
  const int64_t B = x.size(1), H = hidden_size, L = num_layers;
  for (const Tensor* s : {&state.h, &state.c})
    if (s->defined())
      TG_CHECK((s->shape() == Shape{L, B, H}), "LSTM: initial state ", s->shape(), " does not fit ", L,
               " layers, batch ", B, " and hidden size ", H, " (expected [", L, ", ", B, ", ", H, "])");
  auto layer_of = [&](const Tensor& s, int64_t k) {  // [L, B, H] -> layer k's [B, H]
    if (!s.defined()) return Tensor();
    return (L == 1 ? s : s.slice(0, k, k + 1)).reshape({B, H});
  };
  Tensor h = x;
  std::vector<Tensor> hs, cs;
  for (int64_t k = 0; k < L; ++k) {
    if (k > 0) h = tapegrad::dropout(h, dropout, is_training(), *gen_);
    const bool bias = !bias_ih.empty();
    LstmOutput o = lstm(h, layer_of(state.h, k), layer_of(state.c, k), weight_ih[k], weight_hh[k],
                        bias ? bias_ih[k] : Tensor(), bias ? bias_hh[k] : Tensor());
    h = o.y;
    hs.push_back(o.h.reshape({1, B, H}));
    cs.push_back(o.c.reshape({1, B, H}));
  }
  return {h, {L == 1 ? hs[0] : concat(hs, 0), L == 1 ? cs[0] : concat(cs, 0)}};
}

GRU::GRU(int64_t in, int64_t hidden, int64_t layers, double p, bool bias, Generator& gen, DType dtype)
    : Module("GRU"), input_size(in), hidden_size(hidden), num_layers(layers), dropout(p), gen_(&gen) {
  TG_CHECK(in > 0 && hidden > 0 && layers > 0, "GRU: input_size, hidden_size and num_layers must be positive, got ",
           in, ", ", hidden, ", ", layers);
  TG_CHECK(p >= 0.0 && p < 1.0, "GRU: dropout must be in [0, 1), got ", p);
  const double bound = 1.0 / std::sqrt(static_cast<double>(hidden));
  auto param = [&](const std::string& name, const Shape& s) {
    Tensor t = register_parameter(name, empty(s, dtype));
    init::uniform_(t, -bound, bound, gen);
    return t;
  };
  for (int64_t k = 0; k < layers; ++k) {
    const std::string l = "_l" + std::to_string(k);
    weight_ih.push_back(param("weight_ih" + l, {3 * hidden, k == 0 ? in : hidden}));
    weight_hh.push_back(param("weight_hh" + l, {3 * hidden, hidden}));
    if (bias) {
      bias_ih.push_back(param("bias_ih" + l, {3 * hidden}));
      bias_hh.push_back(param("bias_hh" + l, {3 * hidden}));
    }
  }
}

GRUResult GRU::forward(const Tensor& x, const Tensor& h0) {
  TG_CHECK(x.defined() && x.dim() == 3 && x.size(2) == input_size, "GRU: input ",
           x.defined() ? to_string(x.shape()) : "undefined", " does not fit input_size ", input_size,
           " (expected [T, B, ", input_size, "])");
  const int64_t B = x.size(1), H = hidden_size, L = num_layers;
  if (h0.defined())
    TG_CHECK((h0.shape() == Shape{L, B, H}), "GRU: initial state ", h0.shape(), " does not fit ", L, " layers, batch ",
             B, " and hidden size ", H, " (expected [", L, ", ", B, ", ", H, "])");
  Tensor y = x;
  std::vector<Tensor> hs;
  for (int64_t k = 0; k < L; ++k) {
    if (k > 0) y = tapegrad::dropout(y, dropout, is_training(), *gen_);
    const bool bias = !bias_ih.empty();
    GruOutput o = gru(y, h0.defined() ? h0[k] : Tensor(), weight_ih[k], weight_hh[k], bias ? bias_ih[k] : Tensor(),
                      bias ? bias_hh[k] : Tensor());
    y = o.y;
    hs.push_back(o.h);
  }
  return {y, stack(hs, 0)};
}

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  TG_CHECK(max_norm > 0 && std::isfinite(max_norm), "clip_grad_norm: max_norm must be > 0 and finite, got ",
           max_norm);
  NoGradGuard no_grad;
  // The sum stays on the gradients' device; the host waits once, for the total.
  Tensor sum;
  for (const Tensor& p : params) {
    const Tensor g = p.grad();
    if (!g.defined()) continue;
    Tensor part = make_tensor({}, DType::F64, g.device());
    backend::sum_squares(g, part);
    sum = sum.defined() ? add(sum, part) : part;
  }
  const double total = sum.defined() ? std::sqrt(sum.item()) : 0.0;
  const double coef = max_norm / (total + 1e-6);
  if (std::isfinite(total) && coef < 1.0)
    for (const Tensor& p : params) {
      Tensor g = p.grad();
      if (g.defined()) backend::affine(g, coef, 0.0, g);
    }
  return total;
}

}  // namespace tapegrad::nn
