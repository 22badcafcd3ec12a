// Checkpoints in the safetensors format: an 8-byte little-endian header length, a JSON header
// {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}} and the
// raw little-endian data. Readable by other frameworks. Files are written atomically: a temporary file
// beside the target is written, flushed and renamed over it, so a crash never leaves a half-written file.
#pragma once

#include <map>
#include <istream>
#include <string>
#include <vector>

#include "tapegrad/nn/module.hpp"

namespace tapegrad {

namespace optim {
class Optimizer;
class Scheduler;
}  // namespace optim

using Metadata = std::map<std::string, std::string>;

void save_safetensors(const std::string& path, const TensorDict& tensors, const Metadata& meta = {});
// Errors name the file and what is wrong (truncated, bad header, overlapping or out-of-range offsets).
TensorDict load_safetensors(const std::string& path, Metadata* meta = nullptr);
// Removes the temporary files "<path>.tmp.<pid>" that writers killed before their rename left beside path
// (those whose process no longer exists; a live writer's file is left alone). Saving does it first.
void remove_stale_temporaries(const std::string& path);
// The same from a stream positioned anywhere (it is read from its start); `name` names it in errors.
TensorDict read_safetensors(std::istream& in, const std::string& name, Metadata* meta = nullptr);

// Writes bytes to path as the checkpoints are written: a temporary file beside it, flushed to disk, renamed
// over it; readers see the old file or the new one, never a part. Throws an Error naming the file.
void write_file_atomically(const std::string& path, const std::string& bytes);

// Everything a training run resumes from besides the model: any number of optimizers and lr schedulers
// (e.g. one optimizer per part of a model, a warm-up scheduler and a decay one).
struct TrainingState {
  std::vector<optim::Optimizer*> optimizers;
  std::vector<optim::Scheduler*> schedulers;
};

// A training checkpoint: the model's state under "model.", optimizer k's under "optim." (k = 0) or
// "optim<k>.", scheduler k's under "sched." or "sched<k>.", and free-form metadata (epoch, step, ...).
void save_checkpoint(const std::string& path, const nn::Module& model, const TrainingState& state,
                     const Metadata& meta = {});
// Loads it into model and state, all or nothing: the checkpoint must hold exactly the state of as many
// optimizers and schedulers as given.
Metadata load_checkpoint(const std::string& path, nn::Module& model, const TrainingState& state);
// The second half of load_checkpoint: the tensors of a checkpoint into model and state, all or nothing;
// `name` names the checkpoint in errors.
void apply_checkpoint(const TensorDict& tensors, const std::string& name, nn::Module& model,
                      const TrainingState& state);

// The same with one optimizer (or none: nullptr) and no scheduler.
void save_checkpoint(const std::string& path, const nn::Module& model, const optim::Optimizer* opt,
                     const Metadata& meta = {});
Metadata load_checkpoint(const std::string& path, nn::Module& model, optim::Optimizer* opt);
void apply_checkpoint(const TensorDict& tensors, const std::string& name, nn::Module& model, optim::Optimizer* opt);

}  // namespace tapegrad
