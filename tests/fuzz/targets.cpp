#include "targets.hpp"

#include <sstream>

#include "tapegrad/tapegrad.hpp"
#include "tapegrad/datasets/cifar.hpp"
#include "tapegrad/datasets/idx.hpp"

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

Target target(const std::string& name) {
  if (name == "idx") return idx;
  if (name == "cifar") return cifar;
  if (name == "safetensors") return safetensors;
  if (name == "optim_spec") return optim_spec;
  return nullptr;
}

}  // namespace tapegrad::fuzz
