// Datasets and the DataLoader: mini-batches (x, y) of any dataset, in a seeded order.
//
// A Dataset is N samples, each features x of one fixed shape and a target y (an I64 class index, or F32/F64
// values for regression, of one fixed shape). A user dataset implements size() and get(i); TensorDataset holds
// two tensors [N, ...]; an ImageDataset (MNIST, CIFAR-10) is normalised and augmented on the way out.
//
// The order of epoch e is a function of (seed, e) alone: the permutation is drawn from a Generator seeded
// with mix(seed, e). Nothing is carried from one epoch to the next, so a run resumed at epoch e sees the
// batches it would have seen, and two runs with the same seed see the same batches (what lets several
// optimizers be compared on the same data order). A sampler replaces that order (e.g. one rank's shard of it).
//
// Augmentation (training on CIFAR-10, as the paper's reference code kuangliu/pytorch-cifar does with
// torchvision): RandomCrop(size, padding=p) — the image framed by p zero pixels on each side, a window of
// the original size at a random offset (dy, dx) in [0, 2p]^2 — then RandomHorizontalFlip (probability 1/2),
// then Normalize per channel. The padding is zero before normalisation, so it reads -mean_c / std_c after.
// The offset and the flip of dataset sample i in epoch e are a function of (seed, e, i) alone: not of the
// batch it lands in, of the thread that computes it, or of what came before (resume stays exact).
//
// Data parallelism (dist.hpp): with rank r of a world of R, batch(b) is rank r's slice of the global batch b
// (shard_range): every rank draws the same permutation and takes a disjoint, contiguous part of each batch,
// so that the ranks' slices, concatenated in rank order, are the single-process batch of the same size.
//
// Text corpora are read as contiguous BPTT segments (text.hpp), not through this loader: a language model
// carries its hidden state from one segment to the next, which a shuffled order would break.
//
//   DataLoader loader(train, {.batch_size = 128, .seed = 1});   // or (std::make_shared<TensorDataset>(x, y), ...)
//   for (int64_t e = 0; e < epochs; ++e) {
//     loader.set_epoch(e);
//     for (int64_t b = 0; b < loader.num_batches(); ++b) { Batch batch = loader.batch(b); ... }
//   }
#pragma once

#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "tapegrad/datasets/idx.hpp"

namespace tapegrad::datasets {

// One sample: features x of any shape, target y (shape [] for a class index or a single value).
struct Example {
  Tensor x, y;
};

// Samples stacked along a new first dimension. From an ImageDataset: x F32 [B, features] (or
// [B, channels, rows, cols] with image_shape), (pixel - mean) / std, and y I64 [B].
struct Batch {
  Tensor x;  // [B, ...x]
  Tensor y;  // [B, ...y]
};

// What the loader draws from. Every sample has the shapes and dtypes of sample 0; the tensors are CPU tensors.
// The loader may call get_batch from a background thread (prefetch), so neither may change the dataset.
class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  virtual Example get(int64_t index) const = 0;
  // The samples `indices` (in [0, size()), at least one) of `epoch`, stacked. This default stacks get(i) and
  // throws when a sample's shape or dtype differs from the first's; a dataset overrides it to copy rows
  // directly or to augment per (epoch, sample).
  virtual Batch get_batch(const std::vector<int64_t>& indices, int64_t epoch) const;
  virtual std::string name() const { return "dataset"; }  // for messages
};

// Features x [N, ...] (F32, F64 or I64) and targets y [N] or [N, ...] (I64 classes, F32 or F64 values):
// sample i is row i of each. Keeps handles to the tensors (no copy).
class TensorDataset : public Dataset {
 public:
  TensorDataset(Tensor x, Tensor y, std::string name = "tensors");
  int64_t size() const override { return x_.size(0); }
  Example get(int64_t index) const override;
  Batch get_batch(const std::vector<int64_t>& indices, int64_t epoch) const override;
  std::string name() const override { return name_; }

 private:
  Tensor x_, y_;
  std::string name_;
};

struct LoaderOptions {
  int64_t batch_size = 128;
  bool shuffle = true;
  bool drop_last = false;  // drop the last, smaller batch
  uint64_t seed = 0;
  // For an ImageDataset only: x = (pixel - mean) / std.
  double mean = 0.0;
  double std = 1.0;
  // Per channel instead, when not empty: one value per channel of the dataset (replaces mean and std).
  std::vector<double> channel_mean = {}, channel_std = {};
  bool image_shape = false;      // x as [B, channels, rows, cols] (conv nets) instead of [B, features]
  int64_t crop_padding = 0;      // random crop with this zero padding (0: none)
  bool horizontal_flip = false;  // random horizontal flip, probability 1/2
  // The sample indices of epoch e, in order, instead of the seeded shuffle: e.g. one rank's shard of
  // random_permutation(N, seed, e) under data parallelism. Each index in [0, N); repeats are allowed.
  std::function<std::vector<int64_t>(int64_t epoch)> sampler = {};
  bool prefetch = false;  // assemble batch b + 1 on a background thread while batch b is used
  // Where batches are delivered: made on the host, then copied (x and y) to this device; with prefetch the
  // copy is made on the background thread too (CUDA: through pinned staging, asynchronously on the stream).
  Device device = Device::CPU;
  int rank = 0, world_size = 1;  // batch(b) is this rank's slice of the global batch b (of batch_size)
};

// Rank `rank`'s part [begin, end) of n items shared among `world` ranks: contiguous, in rank order, sizes
// differing by at most one (the first n % world ranks take one more); empty when n < world for the last ranks.
struct Range {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};
Range shard_range(int64_t n, int rank, int world);

// The augmentation drawn for one sample of one epoch: the crop window starts at (dy, dx) of the padded
// image (the original sits at (p, p)), then the window is mirrored left-right when flip.
struct Augmentation {
  int64_t dy = 0, dx = 0;
  bool flip = false;
};

// One thread uses a loader at a time. Copies share the dataset and start without a prefetched batch.
class DataLoader {
 public:
  // Any dataset; the image options (mean, std, per-channel statistics, image_shape, crop, flip) must be left
  // at their defaults: such a dataset shapes its own samples. Throws on batch_size < 1.
  DataLoader(std::shared_ptr<const Dataset> ds, LoaderOptions opt);
  // Images normalised and augmented as the options say. Keeps a handle to the dataset's tensors (no copy).
  // Throws on batch_size < 1, std <= 0, per-channel statistics of the wrong length, or a negative crop_padding.
  DataLoader(const ImageDataset& ds, LoaderOptions opt);
  ~DataLoader();
  DataLoader(const DataLoader& other);
  DataLoader& operator=(const DataLoader& other);

  // Selects the order of epoch e (0-based). Cheap; call it at the start of every epoch.
  void set_epoch(int64_t epoch);
  int64_t epoch() const { return epoch_; }
  uint64_t seed() const { return opt_.seed; }
  const LoaderOptions& options() const { return opt_; }
  const Dataset& dataset() const { return *ds_; }

  // The samples of the current epoch (the dataset's size unless a sampler says otherwise).
  int64_t num_samples() const { return static_cast<int64_t>(order_.size()); }
  int64_t num_batches() const;
  // The size of the global batch b (over all ranks).
  int64_t global_batch_size(int64_t b) const;
  // Batch b of the current epoch, b in [0, num_batches()): this rank's slice of it (all of it in a world of one).
  Batch batch(int64_t b) const;

  // The sample order of an epoch: sampler(epoch) when given, else identity without shuffle, else
  // random_permutation(N, seed, epoch).
  std::vector<int64_t> order(int64_t epoch) const;
  // A permutation of [0, n) drawn from Generator(epoch_seed(seed, epoch)) by Fisher-Yates.
  static std::vector<int64_t> random_permutation(int64_t n, uint64_t seed, int64_t epoch);
  static uint64_t epoch_seed(uint64_t seed, int64_t epoch);
  // The augmentation of dataset sample `sample` in `epoch` (identity when neither crop nor flip is on).
  Augmentation augmentation(int64_t epoch, int64_t sample) const;

 private:
  Batch assemble(int64_t b) const;
  void drop_prefetch() const;

  std::shared_ptr<const Dataset> ds_;
  LoaderOptions opt_;
  int64_t epoch_ = 0;
  std::vector<int64_t> order_;
  mutable std::future<Batch> next_;  // batch next_index_ of this epoch, being assembled (prefetch)
  mutable int64_t next_index_ = -1;
};

}  // namespace tapegrad::datasets
