// DataLoader: mini-batches (x, y) of an ImageDataset, in a seeded order, normalised on the way out.
//
// The order of epoch e is a function of (seed, e) alone: the permutation is drawn from a Generator seeded
// with mix(seed, e). Nothing is carried from one epoch to the next, so a run resumed at epoch e sees the
// batches it would have seen, and two runs with the same seed see the same batches (what lets several
// optimizers be compared on the same data order).
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
  Tensor x;  // F32 [B, features], (pixel - mean) / std
  Tensor y;  // I64 [B]
};

struct LoaderOptions {
  int64_t batch_size = 128;
  bool shuffle = true;
  bool drop_last = false;  // drop the last, smaller batch
  uint64_t seed = 0;
  double mean = 0.0;       // x = (pixel - mean) / std
  double std = 1.0;
};

class DataLoader {
 public:
  // Keeps a handle to the dataset's tensors (no copy). Throws on batch_size < 1 or std <= 0.
  DataLoader(const ImageDataset& ds, LoaderOptions opt);

  // Selects the order of epoch e (0-based). Cheap; call it at the start of every epoch.
  void set_epoch(int64_t epoch);
  int64_t epoch() const { return epoch_; }
  uint64_t seed() const { return opt_.seed; }
  const LoaderOptions& options() const { return opt_; }

  int64_t num_samples() const { return n_; }
  int64_t num_batches() const;
  // Batch b of the current epoch, b in [0, num_batches()).
  Batch batch(int64_t b) const;

  // The sample order of an epoch: identity without shuffle, else a permutation of [0, N) drawn from
  // Generator(epoch_seed(seed, epoch)) by Fisher-Yates.
  std::vector<int64_t> order(int64_t epoch) const;
  static uint64_t epoch_seed(uint64_t seed, int64_t epoch);

 private:
  ImageDataset ds_;
  LoaderOptions opt_;
  int64_t n_ = 0;
  int64_t epoch_ = 0;
  std::vector<int64_t> order_;
};

}  // namespace tapegrad::datasets
