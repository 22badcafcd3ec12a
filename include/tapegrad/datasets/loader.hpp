// DataLoader: mini-batches (x, y) of an ImageDataset, in a seeded order, augmented and normalised on the
// way out.
//
// The order of epoch e is a function of (seed, e) alone: the permutation is drawn from a Generator seeded
// with mix(seed, e). Nothing is carried from one epoch to the next, so a run resumed at epoch e sees the
// batches it would have seen, and two runs with the same seed see the same batches (what lets several
// optimizers be compared on the same data order).
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
//   DataLoader loader(train, {.batch_size = 128, .seed = 1});
//   for (int64_t e = 0; e < epochs; ++e) {
//     loader.set_epoch(e);
//     for (int64_t b = 0; b < loader.num_batches(); ++b) { Batch batch = loader.batch(b); ... }
//   }
#pragma once

#include <cstdint>
#include <vector>

#include "tapegrad/datasets/idx.hpp"

namespace tapegrad::datasets {

struct Batch {
  Tensor x;  // F32 [B, features] (or [B, channels, rows, cols] with image_shape), (pixel - mean) / std
  Tensor y;  // I64 [B]
};

struct LoaderOptions {
  int64_t batch_size = 128;
  bool shuffle = true;
  bool drop_last = false;  // drop the last, smaller batch
  uint64_t seed = 0;
  double mean = 0.0;       // x = (pixel - mean) / std
  double std = 1.0;
  // Per channel instead, when not empty: one value per channel of the dataset (replaces mean and std).
  std::vector<double> channel_mean = {}, channel_std = {};
  bool image_shape = false;      // x as [B, channels, rows, cols] (conv nets) instead of [B, features]
  int64_t crop_padding = 0;      // random crop with this zero padding (0: none)
  bool horizontal_flip = false;  // random horizontal flip, probability 1/2
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

class DataLoader {
 public:
  // Keeps a handle to the dataset's tensors (no copy). Throws on batch_size < 1, std <= 0, per-channel
  // statistics of the wrong length, or a negative crop_padding.
  DataLoader(const ImageDataset& ds, LoaderOptions opt);

  // Selects the order of epoch e (0-based). Cheap; call it at the start of every epoch.
  void set_epoch(int64_t epoch);
  int64_t epoch() const { return epoch_; }
  uint64_t seed() const { return opt_.seed; }
  const LoaderOptions& options() const { return opt_; }

  int64_t num_samples() const { return n_; }
  int64_t num_batches() const;
  // The size of the global batch b (over all ranks).
  int64_t global_batch_size(int64_t b) const;
  // Batch b of the current epoch, b in [0, num_batches()): this rank's slice of it (all of it in a world of one).
  Batch batch(int64_t b) const;

  // The sample order of an epoch: identity without shuffle, else a permutation of [0, N) drawn from
  // Generator(epoch_seed(seed, epoch)) by Fisher-Yates.
  std::vector<int64_t> order(int64_t epoch) const;
  static uint64_t epoch_seed(uint64_t seed, int64_t epoch);
  // The augmentation of dataset sample `sample` in `epoch` (identity when neither crop nor flip is on).
  Augmentation augmentation(int64_t epoch, int64_t sample) const;

 private:
  ImageDataset ds_;
  LoaderOptions opt_;
  int64_t n_ = 0;
  int64_t epoch_ = 0;
  std::vector<int64_t> order_;
  std::vector<float> scale_, shift_;  // per channel: x = pixel * scale + shift
};

}  // namespace tapegrad::datasets
