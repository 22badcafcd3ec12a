#include "targets.hpp"

#include <sstream>

#include "tapegrad/tapegrad.hpp"
#include "tapegrad/datasets/cifar.hpp"
#include "tapegrad/datasets/idx.hpp"
#include "tapegrad/datasets/text.hpp"

namespace tapegrad::fuzz {

// Every target reads from memory (the readers' in-memory entry points share all their checks with the
// file ones): no file system in the loop, so a run reaches millions of inputs.

void idx(const uint8_t* data, size_t size) {
  for (uint32_t magic : {datasets::kIdxImagesMagic, datasets::kIdxLabelsMagic}) {
    try {
      const datasets::IdxArray a = datasets::parse_idx(data, size, magic, "input.idx");
      uint64_t count = 1;
      for (int64_t d : a.dims) count *= static_cast<uint64_t>(d);
      if (a.data.size() != count) __builtin_trap();  // accepted, yet not prod(dims) bytes
    } catch (const Error&) {
    }
  }
}

void cifar(const uint8_t* data, size_t size) {
  for (int64_t expected : {0, 2}) {
    try {
      const datasets::ImageDataset ds = datasets::parse_cifar10(data, size, "fuzz input", expected);
      const int64_t n = ds.size();
      if (n < 1 || n * datasets::kCifarRecordBytes != static_cast<int64_t>(size)) __builtin_trap();
      if (ds.images.shape() != Shape{n, datasets::kCifarPixels}) __builtin_trap();
      for (float v : ds.images.to_vector<float>())
        if (!(v >= 0.0f && v <= 1.0f)) __builtin_trap();
      for (int64_t y : ds.labels.to_vector<int64_t>())
        if (y < 0 || y >= datasets::kCifarClasses) __builtin_trap();
    } catch (const Error&) {
    }
  }
}

void safetensors(const uint8_t* data, size_t size) {
  TensorDict d;
  try {
    std::istringstream in(std::string(reinterpret_cast<const char*>(data), size));
    Metadata meta;
    d = read_safetensors(in, "input.safetensors", &meta);
    for (const auto& [name, t] : d) (void)t.numel();
  } catch (const Error&) {
    return;
  }
  try {
    nn::Linear model(2, 2);
    auto opt = optim::make("adam", model.parameters());
    apply_checkpoint(d, "input.safetensors", model, opt.get());
  } catch (const Error&) {
  }
}

void optim_spec(const uint8_t* data, size_t size) {
  const std::string spec(reinterpret_cast<const char*>(data), size);
  nn::Linear model(2, 2);
  std::string described;
  try {
    described = optim::make(spec, model.parameters())->describe();
  } catch (const Error&) {
    return;
  }
  // Not in a try: what describe() says, make() must take (an Error here fails the fuzzer and the replay).
  if (optim::make(described, model.parameters())->describe() != described) __builtin_trap();
}

void text_corpus(const uint8_t* data, size_t size) {
  if (size < 3) return;
  const std::string_view all(reinterpret_cast<const char*>(data) + 3, size - 3);
  const size_t n1 = all.size() * data[0] / 255, n2 = (all.size() - n1) * data[1] / 255;
  const int64_t batch = 1 + data[2] % 4, bptt = 1 + data[2] / 4 % 8;
  datasets::TextCorpus c;
  try {
    c = datasets::parse_corpus(all.substr(0, n1), all.substr(n1, n2), all.substr(n1 + n2));
  } catch (const Error&) {
    return;
  }
  // Accepted: every id is a vocabulary entry, and the vocabulary maps back to its ids.
  const int64_t V = c.vocab.size();
  for (const auto* ids : {&c.train, &c.valid, &c.test})
    for (int64_t id : *ids)
      if (id < 0 || id >= V) __builtin_trap();
  for (int64_t i = 0; i < V; ++i)
    if (c.vocab.id(c.vocab.words[static_cast<size_t>(i)]) != i) __builtin_trap();
  try {
    const Tensor src = datasets::batchify(c.train, batch, "train");
    int64_t targets = 0;
    for (int64_t i = 0; i < datasets::num_segments(src, bptt); ++i)
      targets += datasets::segment(src, i, bptt).target.numel();
    if (targets != (src.size(0) - 1) * batch) __builtin_trap();  // the segments cover every next word once
  } catch (const Error&) {
  }
}

Target target(const std::string& name) {
  if (name == "idx") return idx;
  if (name == "cifar") return cifar;
  if (name == "safetensors") return safetensors;
  if (name == "optim_spec") return optim_spec;
  if (name == "text_corpus") return text_corpus;
  return nullptr;
}

}  // namespace tapegrad::fuzz
