// The recurrent layers: Embedding and a multi-layer LSTM, with PyTorch's parameter names, shapes and
// initialisation, so that state dicts line up with torch.nn.Embedding / torch.nn.LSTM.
#pragma once

#include <vector>

#include "tapegrad/nn/module.hpp"

namespace tapegrad::nn {

// indices I64 [*] -> [*, embedding_dim]. weight [num_embeddings, embedding_dim] ~ N(0, 1) (PyTorch's init).
// The gradient reaches only the rows used.
class Embedding : public Layer {
 public:
  Embedding(int64_t num_embeddings, int64_t embedding_dim, Generator& gen = default_generator(),
            DType dtype = DType::F32);
  Tensor forward(const Tensor& indices) override;
  int64_t num_embeddings, embedding_dim;
  Tensor weight;
};

// The state of a multi-layer LSTM: h, c [num_layers, B, H]. Undefined tensors stand for zeros.
struct LSTMState {
  Tensor h, c;
};

struct LSTMResult {
  Tensor output;  // [T, B, H]: the last layer's h_t at every step
  LSTMState state;  // the final (h, c) of every layer, [num_layers, B, H]
};

// A stack of num_layers LSTM layers (ops.hpp: lstm), sequence-first input x [T, B, input_size].
// Parameters per layer k, registered in this order: weight_ih_l<k> [4H, in_k] (in_0 = input_size, else H),
// weight_hh_l<k> [4H, H], bias_ih_l<k> [4H], bias_hh_l<k> [4H] (when bias), all ~ U(-1/sqrt(H), 1/sqrt(H))
// as in PyTorch. Gate order i, f, g, o. In training, dropout with probability `dropout` is applied to the
// output of every layer but the last (PyTorch's semantics), with masks from `gen`, which must outlive the
// module. The final state comes back with its history; to carry it into the next segment of a truncated
// BPTT, detach it (what the language model does).
class LSTM : public Module {
 public:
  LSTM(int64_t input_size, int64_t hidden_size, int64_t num_layers = 1, double dropout = 0.0, bool bias = true,
       Generator& gen = default_generator(), DType dtype = DType::F32);
  LSTMResult forward(const Tensor& x, const LSTMState& state = {});
  LSTMResult operator()(const Tensor& x, const LSTMState& state = {}) { return forward(x, state); }

  int64_t input_size, hidden_size, num_layers;
  double dropout;
  std::vector<Tensor> weight_ih, weight_hh, bias_ih, bias_hh;  // per layer (biases empty without bias)

 private:
  Generator* gen_;
};

struct GRUResult {
  Tensor output;  // [T, B, H]: the last layer's h_t at every step
  Tensor h;       // the final h of every layer, [num_layers, B, H]
};

// A stack of num_layers GRU layers (ops.hpp: gru), sequence-first x [T, B, input_size], initial state h
// [num_layers, B, H] or undefined (zeros). Parameters per layer k, registered in this order: weight_ih_l<k>
// [3H, in_k], weight_hh_l<k> [3H, H], bias_ih_l<k> [3H], bias_hh_l<k> [3H] (when bias), all ~ U(-1/sqrt(H),
// 1/sqrt(H)); gate rows r, z, n, as torch.nn.GRU. Dropout between layers in training, as LSTM.
class GRU : public Module {
 public:
  GRU(int64_t input_size, int64_t hidden_size, int64_t num_layers = 1, double dropout = 0.0, bool bias = true,
      Generator& gen = default_generator(), DType dtype = DType::F32);
  GRUResult forward(const Tensor& x, const Tensor& h = Tensor());
  GRUResult operator()(const Tensor& x, const Tensor& h = Tensor()) { return forward(x, h); }

  int64_t input_size, hidden_size, num_layers;
  double dropout;
  std::vector<Tensor> weight_ih, weight_hh, bias_ih, bias_hh;  // per layer (biases empty without bias)

 private:
  Generator* gen_;
};

}  // namespace tapegrad::nn
