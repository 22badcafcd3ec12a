#include "tapegrad/datasets/loader.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>

namespace tapegrad::datasets {

Range shard_range(int64_t n, int rank, int world) {
  TG_CHECK(n >= 0 && world >= 1 && rank >= 0 && rank < world, "shard_range: rank ", rank, " of a world of ", world,
           " over ", n, " items");
  const int64_t base = n / world, extra = n % world, r = rank;
  const int64_t begin = r * base + std::min(r, extra);
  return {begin, begin + base + (r < extra ? 1 : 0)};
}

DataLoader::DataLoader(const ImageDataset& ds, LoaderOptions opt) : ds_(ds), opt_(opt), n_(ds.size()) {
  TG_CHECK(opt_.batch_size >= 1, "DataLoader: batch_size ", opt_.batch_size, " must be at least 1");
  TG_CHECK(opt_.world_size >= 1 && opt_.rank >= 0 && opt_.rank < opt_.world_size, "DataLoader: rank ", opt_.rank,
           " of a world of ", opt_.world_size);
  TG_CHECK(ds_.images.defined() && ds_.labels.defined() && ds_.images.dim() == 2 &&
               ds_.images.size(0) == n_ && ds_.images.dtype() == DType::F32 && ds_.labels.dtype() == DType::I64,
           "DataLoader: dataset ", ds_.name, " must hold F32 images [N, features] and I64 labels [N]");
  const bool spatial = opt_.image_shape || opt_.crop_padding != 0 || opt_.horizontal_flip || !opt_.channel_mean.empty();
  TG_CHECK(!spatial || ds_.channels * ds_.rows * ds_.cols == ds_.images.size(1), "DataLoader: dataset ", ds_.name,
           " holds images ", ds_.images.shape(), ", not [N, channels*rows*cols] = [N, ", ds_.channels, "*", ds_.rows,
           "*", ds_.cols, "]");
  TG_CHECK(opt_.crop_padding >= 0, "DataLoader: crop_padding ", opt_.crop_padding, " must be >= 0");
  const int64_t channels = spatial ? ds_.channels : 1;
  if (opt_.channel_mean.empty() && opt_.channel_std.empty()) {
    opt_.channel_mean.assign(static_cast<size_t>(channels), opt_.mean);
    opt_.channel_std.assign(static_cast<size_t>(channels), opt_.std);
  }
  TG_CHECK(static_cast<int64_t>(opt_.channel_mean.size()) == channels &&
               static_cast<int64_t>(opt_.channel_std.size()) == channels,
           "DataLoader: ", opt_.channel_mean.size(), " channel means and ", opt_.channel_std.size(),
           " channel stds for dataset ", ds_.name, " of ", channels, " channel(s)");
  for (int64_t c = 0; c < channels; ++c) {
    const double m = opt_.channel_mean[c], sd = opt_.channel_std[c];
    TG_CHECK(sd > 0.0 && std::isfinite(sd) && std::isfinite(m), "DataLoader: std ", sd, " (mean ", m,
             ") of channel ", c, " must be positive and finite");
    shift_.push_back(static_cast<float>(m));
    scale_.push_back(static_cast<float>(1.0 / sd));
  }
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

Augmentation DataLoader::augmentation(int64_t epoch, int64_t sample) const {
  Augmentation a{opt_.crop_padding, opt_.crop_padding, false};  // the identity: the window on the original
  if (opt_.crop_padding == 0 && !opt_.horizontal_flip) return a;
  // One 64-bit draw per (seed, epoch, sample); a stream apart from the shuffle's (the constant).
  const uint64_t z = epoch_seed(epoch_seed(opt_.seed ^ 0x5DEECE66Dull, epoch), sample);
  const auto span = static_cast<uint64_t>(2 * opt_.crop_padding + 1);
  if (opt_.crop_padding > 0) {
    a.dy = static_cast<int64_t>((z & 0xFFFFFF) % span);
    a.dx = static_cast<int64_t>(((z >> 24) & 0xFFFFFF) % span);
  }
  a.flip = opt_.horizontal_flip && ((z >> 63) & 1);
  return a;
}

void DataLoader::set_epoch(int64_t epoch) {
  order_ = order(epoch);
  epoch_ = epoch;
}

int64_t DataLoader::num_batches() const {
  const int64_t b = opt_.batch_size;
  return opt_.drop_last ? n_ / b : (n_ + b - 1) / b;
}

int64_t DataLoader::global_batch_size(int64_t b) const {
  TG_CHECK(b >= 0 && b < num_batches(), "DataLoader: batch ", b, " out of range [0, ", num_batches(), ")");
  return std::min(opt_.batch_size, n_ - b * opt_.batch_size);
}

Batch DataLoader::batch(int64_t b) const {
  const Range part = shard_range(global_batch_size(b), opt_.rank, opt_.world_size);
  const int64_t begin = b * opt_.batch_size + part.begin;
  const int64_t size = part.size();
  const int64_t features = ds_.images.size(1);
  const Shape shape = opt_.image_shape ? Shape{size, ds_.channels, ds_.rows, ds_.cols} : Shape{size, features};
  Batch out{empty(shape, DType::F32), empty({size}, DType::I64)};
  const float* src = ds_.images.data<float>();
  const int64_t* labels = ds_.labels.data<int64_t>();
  float* x = out.x.data<float>();
  int64_t* y = out.y.data<int64_t>();
  const bool augment = opt_.crop_padding > 0 || opt_.horizontal_flip;
  const int64_t channels = static_cast<int64_t>(scale_.size()), plane = features / channels;
  for (int64_t i = 0; i < size; ++i) {
    const int64_t s = order_[begin + i];
    y[i] = labels[s];
    const float* image = src + s * features;
    float* dst = x + i * features;
    if (!augment) {
      for (int64_t c = 0; c < channels; ++c)
        for (int64_t k = c * plane; k < (c + 1) * plane; ++k) dst[k] = (image[k] - shift_[c]) * scale_[c];
      continue;
    }
    // Output pixel (r, col) of channel c is padded(r + dy, col' + dx) with col' = flip ? W-1-col : col, i.e.
    // original (r + dy - p, col' + dx - p), or 0 outside the original.
    const Augmentation a = augmentation(epoch_, s);
    const int64_t h = ds_.rows, w = ds_.cols, p = opt_.crop_padding;
    for (int64_t c = 0; c < channels; ++c) {
      const float pad_value = (0.0f - shift_[c]) * scale_[c];
      for (int64_t r = 0; r < h; ++r) {
        const int64_t sr = r + a.dy - p;
        float* out_row = dst + (c * h + r) * w;
        if (sr < 0 || sr >= h) {
          std::fill_n(out_row, w, pad_value);
          continue;
        }
        const float* in_row = image + (c * h + sr) * w;
        for (int64_t col = 0; col < w; ++col) {
          const int64_t sc = (a.flip ? w - 1 - col : col) + a.dx - p;
          out_row[col] = (sc < 0 || sc >= w) ? pad_value : (in_row[sc] - shift_[c]) * scale_[c];
        }
      }
    }
  }
  return out;
}

}  // namespace tapegrad::datasets
