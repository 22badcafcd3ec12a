// DataParallel: gradients averaged over the ranks in flat buckets while backward() runs (see dist.hpp).
#include <algorithm>
#include <chrono>
#include <cstring>

#include "../backend.hpp"
#include "../internal.hpp"
#include "tapegrad/dist.hpp"
#include "tapegrad/nn/conv.hpp"
#include "tapegrad/ops.hpp"
#include "transport.hpp"

namespace tapegrad::dist {

// A flat buffer holding the gradients of consecutive parameters (of one dtype and device), summed by one
// all-reduce: MPI for host memory, NCCL for CUDA memory when the library has it, else MPI on a host copy.
struct DataParallel::Bucket {
  Tensor flat;                // [numel] on the parameters' device
  Tensor host;                // a device bucket without NCCL: the copy in host memory that MPI sums
  bool nccl = false;          // summed on the device by NCCL
  std::vector<size_t> params;
  size_t pending = 0;         // parameters not yet ready in this step
  int request = -1;
};

static void for_each_module(nn::Module& m, const std::function<void(nn::Module&)>& f) {
  f(m);
  for (auto& [_, c] : m.named_children()) for_each_module(*c, f);
}

DataParallel::DataParallel(nn::Module& model, DataParallelOptions options) : model_(model), options_(options) {
  TG_CHECK(options_.bucket_bytes > 0, "DataParallel: bucket_bytes ", options_.bucket_bytes, " must be positive");
  for (auto& [name, p] : model.named_parameters())
    if (p.requires_grad()) {
      params_.push_back(p);
      names_.push_back(name);
    }
  if (world_size() == 1) return;  // a world of one: nothing to average, no MPI call

  // Same layout everywhere, then rank 0's values everywhere.
  std::string layout;
  for (auto& [name, t] : model.state_dict())
    layout += name + "=" + name_of(t) + "\n";
  for (size_t k = 0; k < params_.size(); ++k)  // a CPU rank and a CUDA rank would not meet in one collective
    layout += names_[k] + " on " + tapegrad::name(params_[k].device()) + "\n";
  check_same("model layout", layout);
  std::vector<Tensor> state;
  for (auto& [_, t] : model.named_parameters()) state.push_back(t);
  for (auto& [_, t] : model.named_buffers()) state.push_back(t);
  broadcast(state, 0);

  if (options_.sync_batch_norm)
    for_each_module(model, [](nn::Module& m) {
      if (auto* bn = dynamic_cast<nn::BatchNorm2d*>(&m)) bn->training_forward = sync_batch_norm;
    });

  // Buckets in the reverse order of the parameters, closed at bucket_bytes or where the dtype or device changes.
  bucket_of_.assign(params_.size(), 0);
  offset_of_.assign(params_.size(), 0);
  std::vector<std::vector<size_t>> groups;
  int64_t bytes = 0;
  for (size_t k = params_.size(); k-- > 0;) {
    const int64_t b = params_[k].numel() * static_cast<int64_t>(size_of(params_[k].dtype()));
    if (groups.empty() || bytes + b > options_.bucket_bytes ||
        params_[groups.back().back()].dtype() != params_[k].dtype() ||
        params_[groups.back().back()].device() != params_[k].device()) {
      if (groups.empty() || !groups.back().empty()) groups.emplace_back();
      bytes = 0;
    }
    groups.back().push_back(k);
    bytes += b;
  }
  for (auto& g : groups) {
    Bucket bucket;
    int64_t n = 0;
    for (size_t k : g) {
      bucket_of_[k] = buckets_.size();
      offset_of_[k] = static_cast<size_t>(n);
      n += params_[k].numel();
    }
    const Tensor& first = params_[g.front()];
    bucket.flat = zeros({n}, {first.dtype(), first.device()});
    bucket.nccl = first.device() == Device::CUDA && transport::device_collectives();
    if (first.device() != Device::CPU && !bucket.nccl) bucket.host = zeros({n}, first.dtype());
    bucket.params = g;
    bucket.pending = g.size();
    buckets_.push_back(std::move(bucket));
  }
  ready_.assign(params_.size(), 0);
  share_ = 1.0 / world_size();
  for (size_t k = 0; k < params_.size(); ++k)
    hooks_.push_back(add_grad_ready_hook(params_[k], [this, k](const Tensor& p) { on_ready(k, p.grad()); }));
}

DataParallel::~DataParallel() {
  if (options_.sync_batch_norm && world_size() > 1)
    for_each_module(model_, [](nn::Module& m) {
      if (auto* bn = dynamic_cast<nn::BatchNorm2d*>(&m)) bn->training_forward = nullptr;
    });
}

std::string DataParallel::name_of(const Tensor& t) { return std::string(name(t.dtype())) + to_string(t.shape()); }

int DataParallel::num_buckets() const { return static_cast<int>(buckets_.size()); }

int64_t DataParallel::gradient_bytes() const {
  int64_t n = 0;
  for (const Tensor& p : params_) n += p.numel() * static_cast<int64_t>(size_of(p.dtype()));
  return n;
}

void DataParallel::set_batch_share(int64_t local, int64_t global) {
  TG_CHECK(local >= 0 && global > 0 && local <= global, "DataParallel::set_batch_share: local ", local,
           " of global ", global, " (expected 0 <= local <= global, global > 0)");
  if (world_size() > 1) share_ = static_cast<double>(local) / static_cast<double>(global);
}

void DataParallel::skip_backward() {
  if (world_size() == 1) return;
  TG_CHECK(!options_.sync_batch_norm, "DataParallel: rank ", rank(), " has no sample in this step, but synchronised "
           "BatchNorm needs every rank's forward (use a global batch of at least one sample per rank)");
  for (size_t k = params_.size(); k-- > 0;) on_ready(k, Tensor());
}

// Parameter k's gradient is final: its share goes into its bucket; full buckets start their sum in order.
void DataParallel::on_ready(size_t k, const Tensor& grad) {
  if (ready_[k]) {
    std::string missing;
    for (size_t j = 0; j < params_.size(); ++j)
      if (!ready_[j]) missing += (missing.empty() ? "" : ", ") + names_[j];
    TG_FAIL("DataParallel: parameter '", names_[k], "' is ready twice without the gradients being averaged: the "
            "previous backward gave no gradient to ", missing, " (every parameter must take part in every step)");
  }
  Bucket& b = buckets_[bucket_of_[k]];
  const Tensor& p = params_[k];
  const size_t n = static_cast<size_t>(p.numel()), off = offset_of_[k];
  TG_CHECK(!grad.defined() || grad.device() == p.device(), "DataParallel: the gradient of '", names_[k],
           "' lives on ", grad.device(), " but the parameter on ", p.device());
  if (p.device() != Device::CPU) {  // share * grad (or zeros) into the bucket, by the device's kernels
    NoGradGuard no_grad;
    const Tensor part = grad.defined() ? mul(grad.detach(), share_) : zeros({p.numel()}, {p.dtype(), p.device()});
    backend::copy_block(part, 1, p.numel(), 1, b.flat, b.flat.numel(), static_cast<int64_t>(off));
  } else {
    auto fill = [&]<class T>(T* dst) {
      if (!grad.defined()) return std::memset(dst, 0, n * sizeof(T)), void();
      const T* src = grad.data<T>();
      const T s = static_cast<T>(share_);
      for (size_t i = 0; i < n; ++i) dst[i] = src[i] * s;
    };
    if (p.dtype() == DType::F64) fill(b.flat.data<double>() + off);
    else fill(b.flat.data<float>() + off);
  }
  ready_[k] = 1;
  ++ready_count_;
  --b.pending;
  launch_ready_buckets();
  transport::progress();
  if (ready_count_ == params_.size()) finish();
}

// Buckets start strictly in order, so that every rank issues the same sequence of collectives.
void DataParallel::launch_ready_buckets() {
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].pending == 0) {
    Bucket& b = buckets_[next_launch_++];
    if (b.nccl) {
      KernelScope scope;  // device pointers
      b.request = transport::device_start_sum(b.flat.raw_data(), b.flat.numel(), b.flat.dtype());
    } else if (b.host.defined()) {
      b.host.copy_(b.flat);
      b.request = transport::start_sum(b.host.raw_data(), b.host.numel(), b.host.dtype());
    } else {
      b.request = transport::start_sum(b.flat.raw_data(), b.flat.numel(), b.flat.dtype());
    }
  }
}

// All gradients are in: wait for the sums still in flight, hand every parameter its averaged gradient.
void DataParallel::finish() {
  const auto t0 = std::chrono::steady_clock::now();
  int64_t early = 0, all = 0;
  for (Bucket& b : buckets_) {
    const int64_t bytes = b.flat.numel() * static_cast<int64_t>(size_of(b.flat.dtype()));
    all += bytes;
    if (b.nccl ? transport::device_done(b.request) : transport::done(b.request)) early += bytes;
  }
  done_early_ = static_cast<double>(early) / static_cast<double>(std::max<int64_t>(all, 1));
  for (Bucket& b : buckets_) {
    if (b.nccl) {
      transport::device_wait(b.request);
    } else {
      transport::wait(b.request);
      if (b.host.defined()) b.flat.copy_(b.host);
    }
  }
  wait_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ready_time_ = std::chrono::duration<double>(t0.time_since_epoch()).count();
  for (size_t k = 0; k < params_.size(); ++k) {
    const Bucket& b = buckets_[bucket_of_[k]];
    if (b.flat.device() != Device::CPU) {
      Tensor g = make_tensor(params_[k].shape(), params_[k].dtype(), params_[k].device());
      backend::copy_block_from(b.flat, 1, b.flat.numel(), static_cast<int64_t>(offset_of_[k]), 1, g, g.numel());
      params_[k].set_grad(g);
      continue;
    }
    Tensor g = empty(params_[k].shape(), params_[k].dtype());
    const size_t bytes = static_cast<size_t>(g.numel()) * size_of(g.dtype());
    std::memcpy(g.raw_data(), static_cast<const char*>(b.flat.raw_data()) + offset_of_[k] * size_of(g.dtype()), bytes);
    params_[k].set_grad(g);
  }
  for (Bucket& b : buckets_) {
    b.pending = b.params.size();
    b.request = -1;
  }
  std::fill(ready_.begin(), ready_.end(), 0);
  ready_count_ = 0;
  next_launch_ = 0;
  share_ = 1.0 / world_size();
  // Per-rank BatchNorm statistics: every rank continues with rank 0's running statistics (as PyTorch's
  // broadcast_buffers), so that evaluation on any rank uses the same ones.
  if (!options_.sync_batch_norm) {
    std::vector<Tensor> buffers;
    for (auto& [_, t] : model_.named_buffers()) buffers.push_back(t);
    if (!buffers.empty()) broadcast(buffers, 0);
  }
}

}  // namespace tapegrad::dist
