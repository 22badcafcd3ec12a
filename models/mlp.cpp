#include "tapegrad/models/mlp.hpp"

#include "tapegrad/ops.hpp"

namespace tapegrad::models {

MLP::MLP(int64_t in, int64_t hidden, int64_t out, Generator& gen) : nn::Layer("MLP") {
  TG_CHECK(in > 0 && hidden > 0 && out > 0, "MLP: sizes in=", in, " hidden=", hidden, " out=", out,
           " must be positive");
  fc1 = register_module("fc1", std::make_shared<nn::Linear>(in, hidden, true, gen));
  fc2 = register_module("fc2", std::make_shared<nn::Linear>(hidden, out, true, gen));
}

Tensor MLP::forward(const Tensor& x) {
  const Tensor flat = x.dim() > 2 ? x.flatten(1) : x;
  TG_CHECK(flat.dim() == 2 && flat.size(1) == fc1->in_features, "MLP: input ", to_string(x.shape()), " does not have ",
           fc1->in_features, " features per sample (expected [N, ", fc1->in_features, "])");
  return fc2->forward(relu(fc1->forward(flat)));
}

}  // namespace tapegrad::models
