#include "targets.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "tapegrad/tapegrad.hpp"
#include "tapegrad/datasets/cifar.hpp"
#include "tapegrad/datasets/idx.hpp"

namespace tapegrad::fuzz {

namespace {

// The input as a file the readers can open: one directory per process, removed at exit, and one file per
// target, rewritten for every input.
std::string& input_dir() {
  static std::string dir;
  return dir;
}

std::string as_file(const uint8_t* data, size_t size, const char* name) {
  std::string& dir = input_dir();
  if (dir.empty()) {
    dir = (std::filesystem::temp_directory_path() / ("tg_fuzz_" + std::to_string(::getpid()))).string();
    std::filesystem::create_directories(dir);
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(input_dir(), ec);
    });
  }
  const std::string path = dir + "/" + name;
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data),
                                                                 static_cast<std::streamsize>(size));
  return path;
}

}  // namespace

void idx(const uint8_t* data, size_t size) {
  const std::string path = as_file(data, size, "input.idx");
  for (uint32_t magic : {datasets::kIdxImagesMagic, datasets::kIdxLabelsMagic}) {
    try {
      const datasets::IdxArray a = datasets::read_idx(path, magic);
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
  const std::string path = as_file(data, size, "input.safetensors");
  try {
    Metadata meta;
    const TensorDict d = load_safetensors(path, &meta);
    for (const auto& [name, t] : d) (void)t.numel();
  } catch (const Error&) {
  }
  try {
    nn::Linear model(2, 2);
    auto opt = optim::make("adam", model.parameters());
    load_checkpoint(path, model, opt.get());
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
