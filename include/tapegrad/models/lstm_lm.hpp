// The word-level LSTM language model of the AdaBound paper's Penn Treebank experiment (Luo et al., ICLR 2019,
// section 5), in the shape of PyTorch's word_language_model example (the paper's code was never released):
//
//   tokens I64 [T, B] -> encoder (Embedding V x E) -> dropout -> rnn (LSTM E -> H, L layers, dropout between)
//     -> dropout -> decoder (Linear H -> V) -> logits [T*B, V]
//
// Parameters: encoder.weight [V, E], rnn.weight_ih_l0 [4H, E], rnn.weight_hh_l0 [4H, H], rnn.bias_ih_l0,
// rnn.bias_hh_l0 [4H], ... (one set per layer), decoder.weight [V, H], decoder.bias [V]. With tie_weights
// (needs E == H) the decoder uses encoder.weight and has only decoder.bias (PyTorch's state dict would list
// the shared tensor twice; here it appears once, as encoder.weight). Initialisation as the example:
// encoder.weight and decoder.weight ~ U(-0.1, 0.1), decoder.bias = 0, the LSTM PyTorch's default.
//
// Dropout masks come from the model's own generator (seeded by LMOptions::seed); its state belongs in a
// checkpoint for an exact resume (dropout_generator().state()).
#pragma once

#include <memory>

#include "tapegrad/nn/layers.hpp"
#include "tapegrad/nn/rnn.hpp"

namespace tapegrad::models {

struct LMOptions {
  int64_t vocab = 10000;
  int64_t emb = 200;
  int64_t hidden = 200;
  int64_t layers = 2;
  double dropout = 0.0;  // on the embedding, between LSTM layers and on the LSTM's output
  bool tie_weights = false;
  uint64_t dropout_seed = 0;
};

struct LMOutput {
  Tensor logits;         // [T*B, V]
  nn::LSTMState state;   // [L, B, H] each, with history: detach() it before carrying it on
};

class LSTMLanguageModel : public nn::Module {
 public:
  explicit LSTMLanguageModel(const LMOptions& options, Generator& init_gen = default_generator());
  LMOutput forward(const Tensor& tokens, const nn::LSTMState& state = {});
  LMOutput operator()(const Tensor& tokens, const nn::LSTMState& state = {}) { return forward(tokens, state); }

  const LMOptions& options() const { return options_; }
  Tensor decoder_weight() const;  // encoder.weight when tied
  Generator& dropout_generator() { return dropout_gen_; }

  std::shared_ptr<nn::Embedding> encoder;
  std::shared_ptr<nn::LSTM> rnn;
  std::shared_ptr<nn::Module> decoder;  // nn::Linear, or a module holding only "bias" when tied
  Tensor decoder_bias;

 private:
  LMOptions options_;
  Generator dropout_gen_;
};

}  // namespace tapegrad::models
