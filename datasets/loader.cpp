#include "tapegrad/datasets/loader.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <utility>

namespace tapegrad::datasets {

namespace {

Shape with_batch(int64_t b, const Shape& s) {
  Shape out{b};
  out.insert(out.end(), s.begin(), s.end());
  return out;
}

// The augmentation of one sample: one 64-bit draw per (seed, epoch, sample), a stream apart from the
// shuffle's (the constant).
Augmentation draw_augmentation(uint64_t seed, int64_t epoch, int64_t sample, int64_t padding, bool flip) {
  Augmentation a{padding, padding, false};  // the identity: the window on the original
  if (padding == 0 && !flip) return a;
  const uint64_t z = DataLoader::epoch_seed(DataLoader::epoch_seed(seed ^ 0x5DEECE66Dull, epoch), sample);
  const auto span = static_cast<uint64_t>(2 * padding + 1);
  if (padding > 0) {
    a.dy = static_cast<int64_t>((z & 0xFFFFFF) % span);
    a.dx = static_cast<int64_t>(((z >> 24) & 0xFFFFFF) % span);
  }
  a.flip = flip && ((z >> 63) & 1);
  return a;
}

// An ImageDataset as the loader sees it: normalised per channel, flat or [C, H, W], augmented per
// (seed, epoch, sample) from the loader's options.
class ImageSamples : public Dataset {
 public:
  ImageSamples(const ImageDataset& ds, const LoaderOptions& opt) : ds_(ds), opt_(opt) {
    TG_CHECK(ds_.images.defined() && ds_.labels.defined() && ds_.images.dim() == 2 &&
                 ds_.images.size(0) == ds_.size() && ds_.images.dtype() == DType::F32 &&
                 ds_.labels.dtype() == DType::I64,
             "DataLoader: dataset ", ds_.name, " must hold F32 images [N, features] and I64 labels [N]");
    const bool spatial =
        opt_.image_shape || opt_.crop_padding != 0 || opt_.horizontal_flip || !opt_.channel_mean.empty();
    TG_CHECK(!spatial || ds_.channels * ds_.rows * ds_.cols == ds_.images.size(1), "DataLoader: dataset ",
             ds_.name, " holds images ", ds_.images.shape(), ", not [N, channels*rows*cols] = [N, ", ds_.channels,
             "*", ds_.rows, "*", ds_.cols, "]");
    TG_CHECK(opt_.crop_padding >= 0, "DataLoader: crop_padding ", opt_.crop_padding, " must be >= 0");
    const int64_t channels = spatial ? ds_.channels : 1;
    std::vector<double> mean = opt_.channel_mean, sd = opt_.channel_std;
    if (mean.empty() && sd.empty()) {
      mean.assign(static_cast<size_t>(channels), opt_.mean);
      sd.assign(static_cast<size_t>(channels), opt_.std);
    }
    TG_CHECK(static_cast<int64_t>(mean.size()) == channels && static_cast<int64_t>(sd.size()) == channels,
             "DataLoader: ", mean.size(), " channel means and ", sd.size(), " channel stds for dataset ", ds_.name,
             " of ", channels, " channel(s)");
    for (int64_t c = 0; c < channels; ++c) {
      TG_CHECK(sd[c] > 0.0 && std::isfinite(sd[c]) && std::isfinite(mean[c]), "DataLoader: std ", sd[c],
               " (mean ", mean[c], ") of channel ", c, " must be positive and finite");
      shift_.push_back(static_cast<float>(mean[c]));
      scale_.push_back(static_cast<float>(1.0 / sd[c]));
    }
  }

  int64_t size() const override { return ds_.size(); }
  std::string name() const override { return ds_.name; }
  // Sample i without augmentation.
  Example get(int64_t index) const override {
    Batch b = assemble({index}, 0, false);
    return {b.x.reshape(Shape(b.x.shape().begin() + 1, b.x.shape().end())), b.y.reshape({})};
  }
  Batch get_batch(const std::vector<int64_t>& indices, int64_t epoch) const override {
    return assemble(indices, epoch, opt_.crop_padding > 0 || opt_.horizontal_flip);
  }

 private:
  Batch assemble(const std::vector<int64_t>& indices, int64_t epoch, bool augment) const {
    const auto size = static_cast<int64_t>(indices.size());
    const int64_t features = ds_.images.size(1);
    const Shape shape = opt_.image_shape ? Shape{size, ds_.channels, ds_.rows, ds_.cols} : Shape{size, features};
    Batch out{empty(shape, DType::F32), empty({size}, DType::I64)};
    const float* src = ds_.images.data<float>();
    const int64_t* labels = ds_.labels.data<int64_t>();
    float* x = out.x.data<float>();
    int64_t* y = out.y.data<int64_t>();
    const int64_t channels = static_cast<int64_t>(scale_.size()), plane = features / channels;
    for (int64_t i = 0; i < size; ++i) {
      const int64_t s = indices[i];
      TG_CHECK(s >= 0 && s < ds_.size(), "DataLoader: sample ", s, " outside dataset ", ds_.name, " of ",
               ds_.size());
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
      const Augmentation a = draw_augmentation(opt_.seed, epoch, s, opt_.crop_padding, opt_.horizontal_flip);
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

  ImageDataset ds_;
  LoaderOptions opt_;
  std::vector<float> scale_, shift_;  // per channel: x = (pixel - shift) * scale
};

}  // namespace

Range shard_range(int64_t n, int rank, int world) {
  TG_CHECK(n >= 0 && world >= 1 && rank >= 0 && rank < world, "shard_range: rank ", rank, " of a world of ", world,
           " over ", n, " items");
  const int64_t base = n / world, extra = n % world, r = rank;
  const int64_t begin = r * base + std::min(r, extra);
  return {begin, begin + base + (r < extra ? 1 : 0)};
}

// ---- Dataset, TensorDataset ----

Batch Dataset::get_batch(const std::vector<int64_t>& indices, int64_t) const {
  TG_CHECK(!indices.empty(), "Dataset ", name(), ": get_batch of no samples");
  Batch out;
  for (size_t i = 0; i < indices.size(); ++i) {
    const int64_t s = indices[i];
    TG_CHECK(s >= 0 && s < size(), "Dataset ", name(), ": sample ", s, " outside [0, ", size(), ")");
    const Example e = get(s);
    TG_CHECK(e.x.defined() && e.y.defined() && e.x.device() == Device::CPU && e.y.device() == Device::CPU,
             "Dataset ", name(), ": sample ", s, " must give defined CPU tensors x and y");
    if (i == 0) {
      const auto b = static_cast<int64_t>(indices.size());
      out = {empty(with_batch(b, e.x.shape()), e.x.dtype()), empty(with_batch(b, e.y.shape()), e.y.dtype())};
    }
    const Tensor* parts[2] = {&e.x, &e.y};
    Tensor* dst[2] = {&out.x, &out.y};
    for (int k = 0; k < 2; ++k) {
      const Shape want(dst[k]->shape().begin() + 1, dst[k]->shape().end());
      TG_CHECK(parts[k]->shape() == want && parts[k]->dtype() == dst[k]->dtype(), "Dataset ", name(), ": sample ",
               s, " gives ", k == 0 ? "x " : "y ", parts[k]->shape(), " ", parts[k]->dtype(), ", sample ",
               indices[0], " gave ", want, " ", dst[k]->dtype(), ": every sample must have the same shapes");
      const size_t bytes = static_cast<size_t>(parts[k]->numel()) * size_of(parts[k]->dtype());
      std::memcpy(static_cast<char*>(dst[k]->raw_data()) + i * bytes, parts[k]->raw_data(), bytes);
    }
  }
  return out;
}

TensorDataset::TensorDataset(Tensor x, Tensor y, std::string name)
    : x_(std::move(x)), y_(std::move(y)), name_(std::move(name)) {
  TG_CHECK(x_.defined() && y_.defined() && x_.dim() >= 1 && y_.dim() >= 1 && x_.size(0) == y_.size(0),
           "TensorDataset ", name_, ": features ", x_.defined() ? to_string(x_.shape()) : "(undefined)",
           " and targets ", y_.defined() ? to_string(y_.shape()) : "(undefined)",
           " must both be [N, ...] with the same N");
  TG_CHECK(x_.device() == Device::CPU && y_.device() == Device::CPU, "TensorDataset ", name_,
           ": features on ", x_.device(), " and targets on ", y_.device(), ": the loader reads CPU tensors");
}

Example TensorDataset::get(int64_t index) const {
  const Batch b = get_batch({index}, 0);
  return {b.x.reshape(Shape(b.x.shape().begin() + 1, b.x.shape().end())),
          b.y.reshape(Shape(b.y.shape().begin() + 1, b.y.shape().end()))};
}

Batch TensorDataset::get_batch(const std::vector<int64_t>& indices, int64_t) const {
  TG_CHECK(!indices.empty(), "TensorDataset ", name_, ": get_batch of no samples");
  const auto b = static_cast<int64_t>(indices.size());
  Batch out{empty(with_batch(b, Shape(x_.shape().begin() + 1, x_.shape().end())), x_.dtype()),
            empty(with_batch(b, Shape(y_.shape().begin() + 1, y_.shape().end())), y_.dtype())};
  const std::pair<const Tensor*, Tensor*> pairs[2] = {{&x_, &out.x}, {&y_, &out.y}};
  for (const auto& [src, dst] : pairs) {
    const size_t row = static_cast<size_t>(src->numel() / std::max<int64_t>(size(), 1)) * size_of(src->dtype());
    const char* from = static_cast<const char*>(src->raw_data());
    char* to = static_cast<char*>(dst->raw_data());
    for (int64_t i = 0; i < b; ++i) {
      const int64_t s = indices[i];
      TG_CHECK(s >= 0 && s < size(), "TensorDataset ", name_, ": sample ", s, " outside [0, ", size(), ")");
      std::memcpy(to + i * row, from + s * row, row);
    }
  }
  return out;
}

// ---- DataLoader ----

DataLoader::DataLoader(std::shared_ptr<const Dataset> ds, LoaderOptions opt) : ds_(std::move(ds)), opt_(opt) {
  TG_CHECK(ds_ != nullptr, "DataLoader: no dataset");
  TG_CHECK(opt_.batch_size >= 1, "DataLoader: batch_size ", opt_.batch_size, " must be at least 1");
  TG_CHECK(opt_.world_size >= 1 && opt_.rank >= 0 && opt_.rank < opt_.world_size, "DataLoader: rank ", opt_.rank,
           " of a world of ", opt_.world_size);
  const LoaderOptions plain;
  TG_CHECK(opt_.mean == plain.mean && opt_.std == plain.std && opt_.channel_mean.empty() &&
               opt_.channel_std.empty() && !opt_.image_shape && opt_.crop_padding == 0 && !opt_.horizontal_flip,
           "DataLoader: dataset ", ds_->name(), ": mean, std, channel_mean, channel_std, image_shape, "
           "crop_padding and horizontal_flip apply to an ImageDataset; any other dataset shapes its own samples");
  set_epoch(0);
}

DataLoader::DataLoader(const ImageDataset& ds, LoaderOptions opt) : opt_(opt) {
  TG_CHECK(opt_.batch_size >= 1, "DataLoader: batch_size ", opt_.batch_size, " must be at least 1");
  TG_CHECK(opt_.world_size >= 1 && opt_.rank >= 0 && opt_.rank < opt_.world_size, "DataLoader: rank ", opt_.rank,
           " of a world of ", opt_.world_size);
  ds_ = std::make_shared<ImageSamples>(ds, opt_);
  set_epoch(0);
}

DataLoader::~DataLoader() { drop_prefetch(); }

// The background task of `other` reads other's members, so it is waited for, and not copied.
DataLoader::DataLoader(const DataLoader& other) { *this = other; }

DataLoader& DataLoader::operator=(const DataLoader& other) {
  if (this == &other) return *this;
  drop_prefetch();
  other.drop_prefetch();
  ds_ = other.ds_;
  opt_ = other.opt_;
  epoch_ = other.epoch_;
  order_ = other.order_;
  return *this;
}

uint64_t DataLoader::epoch_seed(uint64_t seed, int64_t epoch) {
  // splitmix64 of the pair: nearby (seed, epoch) pairs give unrelated streams.
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(epoch) + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::vector<int64_t> DataLoader::random_permutation(int64_t n, uint64_t seed, int64_t epoch) {
  TG_CHECK(n >= 0 && epoch >= 0, "DataLoader: a permutation of ", n, " samples for epoch ", epoch,
           ": both must be >= 0");
  std::vector<int64_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), int64_t{0});
  Generator gen(epoch_seed(seed, epoch));
  for (int64_t i = n - 1; i > 0; --i) std::swap(idx[i], idx[gen.randint(i + 1)]);
  return idx;
}

std::vector<int64_t> DataLoader::order(int64_t epoch) const {
  TG_CHECK(epoch >= 0, "DataLoader: epoch ", epoch, " must be >= 0");
  const int64_t n = ds_->size();
  if (opt_.sampler) {
    std::vector<int64_t> idx = opt_.sampler(epoch);
    for (const int64_t s : idx)
      TG_CHECK(s >= 0 && s < n, "DataLoader: the sampler gave sample ", s, " for epoch ", epoch,
               ", outside dataset ", ds_->name(), " of ", n);
    return idx;
  }
  if (opt_.shuffle) return random_permutation(n, opt_.seed, epoch);
  std::vector<int64_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), int64_t{0});
  return idx;
}

Augmentation DataLoader::augmentation(int64_t epoch, int64_t sample) const {
  return draw_augmentation(opt_.seed, epoch, sample, opt_.crop_padding, opt_.horizontal_flip);
}

void DataLoader::set_epoch(int64_t epoch) {
  std::vector<int64_t> next = order(epoch);
  drop_prefetch();
  order_ = std::move(next);
  epoch_ = epoch;
}

int64_t DataLoader::num_batches() const {
  const int64_t n = num_samples(), b = opt_.batch_size;
  return opt_.drop_last ? n / b : (n + b - 1) / b;
}

int64_t DataLoader::global_batch_size(int64_t b) const {
  TG_CHECK(b >= 0 && b < num_batches(), "DataLoader: batch ", b, " out of range [0, ", num_batches(), ")");
  return std::min(opt_.batch_size, num_samples() - b * opt_.batch_size);
}

// This rank's slice of the global batch b.
Batch DataLoader::assemble(int64_t b) const {
  const Range part = shard_range(global_batch_size(b), opt_.rank, opt_.world_size);
  const int64_t begin = b * opt_.batch_size + part.begin, end = b * opt_.batch_size + part.end;
  Batch out = ds_->get_batch(std::vector<int64_t>(order_.begin() + begin, order_.begin() + end), epoch_);
  if (opt_.device != Device::CPU) out = {out.x.to(opt_.device), out.y.to(opt_.device)};
  return out;
}

void DataLoader::drop_prefetch() const {
  if (next_.valid()) next_.wait();  // it reads order_: let it finish before anything changes
  next_ = {};
  next_index_ = -1;
}

Batch DataLoader::batch(int64_t b) const {
  TG_CHECK(b >= 0 && b < num_batches(), "DataLoader: batch ", b, " out of range [0, ", num_batches(), ")");
  if (!opt_.prefetch) return assemble(b);
  Batch out;
  if (next_index_ == b) {
    next_index_ = -1;
    out = next_.get();  // rethrows what the background task threw
  } else {
    drop_prefetch();
    out = assemble(b);
  }
  if (b + 1 < num_batches()) {
    next_ = std::async(std::launch::async, [this, b] { return assemble(b + 1); });
    next_index_ = b + 1;
  }
  return out;
}

}  // namespace tapegrad::datasets
