#include "tapegrad/datasets/loader.hpp"

#include <algorithm>
#include <numeric>
#include <utility>

namespace tapegrad::datasets {

DataLoader::DataLoader(const ImageDataset& ds, LoaderOptions opt) : ds_(ds), opt_(opt), n_(ds.size()) {
  TG_CHECK(opt_.batch_size >= 1, "DataLoader: batch_size ", opt_.batch_size, " must be at least 1");
  TG_CHECK(opt_.std > 0.0, "DataLoader: std ", opt_.std, " must be positive");
  TG_CHECK(ds_.images.defined() && ds_.labels.defined() && ds_.images.dim() == 2 &&
               ds_.images.size(0) == n_ && ds_.images.dtype() == DType::F32 && ds_.labels.dtype() == DType::I64,
           "DataLoader: dataset ", ds_.name, " must hold F32 images [N, features] and I64 labels [N]");
  set_epoch(0);
}

uint64_t DataLoader::epoch_seed(uint64_t seed, int64_t epoch) {
  // splitmix64 of the pair: nearby (seed, epoch) pairs give unrelated streams.
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(epoch) + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::vector<int64_t> DataLoader::order(int64_t epoch) const {
  TG_CHECK(epoch >= 0, "DataLoader: epoch ", epoch, " must be >= 0");
  std::vector<int64_t> idx(static_cast<size_t>(n_));
  std::iota(idx.begin(), idx.end(), int64_t{0});
  if (!opt_.shuffle) return idx;
  Generator gen(epoch_seed(opt_.seed, epoch));
  for (int64_t i = n_ - 1; i > 0; --i) std::swap(idx[i], idx[gen.randint(i + 1)]);
  return idx;
}

void DataLoader::set_epoch(int64_t epoch) {
  order_ = order(epoch);
  epoch_ = epoch;
}

int64_t DataLoader::num_batches() const {
  const int64_t b = opt_.batch_size;
  return opt_.drop_last ? n_ / b : (n_ + b - 1) / b;
}

Batch DataLoader::batch(int64_t b) const {
  TG_CHECK(b >= 0 && b < num_batches(), "DataLoader: batch ", b, " out of range [0, ", num_batches(), ")");
  const int64_t begin = b * opt_.batch_size;
  const int64_t size = std::min(opt_.batch_size, n_ - begin);
  const int64_t features = ds_.images.size(1);
  Batch out{empty({size, features}, DType::F32), empty({size}, DType::I64)};
  const float* src = ds_.images.data<float>();
  const int64_t* labels = ds_.labels.data<int64_t>();
  float* x = out.x.data<float>();
  int64_t* y = out.y.data<int64_t>();
  const float mean = static_cast<float>(opt_.mean), inv_std = static_cast<float>(1.0 / opt_.std);
  for (int64_t i = 0; i < size; ++i) {
    const int64_t s = order_[begin + i];
    const float* row = src + s * features;
    for (int64_t j = 0; j < features; ++j) x[i * features + j] = (row[j] - mean) * inv_std;
    y[i] = labels[s];
  }
  return out;
}

}  // namespace tapegrad::datasets
