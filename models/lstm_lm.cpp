#include "tapegrad/models/lstm_lm.hpp"

#include "tapegrad/nn/init.hpp"
#include "tapegrad/ops.hpp"

namespace tapegrad::models {

namespace {
// The decoder of a tied model: its bias only; the weight is the encoder's.
class TiedDecoderBias : public nn::Module {
 public:
  TiedDecoderBias(int64_t vocab, DType dtype) : nn::Module("TiedLinear") {
    bias = register_parameter("bias", zeros({vocab}, dtype));
  }
  Tensor bias;
};
}  // namespace

LSTMLanguageModel::LSTMLanguageModel(const LMOptions& o, Generator& gen)
    : nn::Module("LSTMLanguageModel"), options_(o), dropout_gen_(o.dropout_seed) {
  TG_CHECK(o.vocab > 0 && o.emb > 0 && o.hidden > 0 && o.layers > 0, "LSTMLanguageModel: vocab ", o.vocab, ", emb ",
           o.emb, ", hidden ", o.hidden, " and layers ", o.layers, " must be positive");
  TG_CHECK(o.dropout >= 0.0 && o.dropout < 1.0, "LSTMLanguageModel: dropout must be in [0, 1), got ", o.dropout);
  TG_CHECK(!o.tie_weights || o.emb == o.hidden, "LSTMLanguageModel: tied weights need emb == hidden, got emb ", o.emb,
           " and hidden ", o.hidden);
  encoder = register_module("encoder", std::make_shared<nn::Embedding>(o.vocab, o.emb, gen));
  rnn = register_module("rnn", std::make_shared<nn::LSTM>(o.emb, o.hidden, o.layers, o.dropout, true, dropout_gen_));
  nn::init::uniform_(encoder->weight, -0.1, 0.1, gen);
  if (o.tie_weights) {
    auto d = std::make_shared<TiedDecoderBias>(o.vocab, DType::F32);
    decoder_bias = d->bias;
    decoder = register_module("decoder", d);
  } else {
    auto d = std::make_shared<nn::Linear>(o.hidden, o.vocab, true, gen);
    nn::init::uniform_(d->weight, -0.1, 0.1, gen);
    nn::init::constant_(d->bias, 0.0);
    decoder_bias = d->bias;
    decoder = register_module("decoder", d);
  }
}

Tensor LSTMLanguageModel::decoder_weight() const {
  if (options_.tie_weights) return encoder->weight;
  return static_cast<const nn::Linear&>(*decoder).weight;
}

// tokens [T, B] -> emb [T, B, E] -> rnn [T, B, H] -> logits [T*B, V]
LMOutput LSTMLanguageModel::forward(const Tensor& tokens, const nn::LSTMState& state) {
  TG_CHECK(tokens.defined() && tokens.dim() == 2 && tokens.dtype() == DType::I64,
           "LSTMLanguageModel: tokens must be i64 [T, B], got ",
           tokens.defined() ? to_string(tokens.shape()) : std::string("undefined"));
  const int64_t T = tokens.size(0), B = tokens.size(1);
  const double p = options_.dropout;
  const bool train = is_training();
  Tensor emb = dropout((*encoder)(tokens), p, train, dropout_gen_);
  nn::LSTMResult r = rnn->forward(emb, state);
  Tensor out = dropout(r.output, p, train, dropout_gen_).reshape({T * B, options_.hidden});
  return {linear(out, decoder_weight(), decoder_bias), r.state};
}

}  // namespace tapegrad::models
