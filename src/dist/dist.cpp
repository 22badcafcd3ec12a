// The collectives on tensors, the checks that all ranks started alike, and synchronised BatchNorm.
// In a world of one rank nothing here calls the transport.
#include "tapegrad/dist.hpp"

#include <cstring>
#include <sstream>

#include "../internal.hpp"
#include "tapegrad/nn/conv.hpp"
#include "tapegrad/ops.hpp"
#include "transport.hpp"

namespace tapegrad::dist {

void init(int* argc, char*** argv) {
  transport::init(argc, argv);
  if (transport::world_size() > 1) transport::select_device();
}
bool built_with_mpi() { return transport::built_with_mpi(); }
bool using_mpi() { return transport::using_mpi(); }
int rank() { return transport::rank(); }
int world_size() { return transport::world_size(); }
int local_rank() { return transport::local_rank(); }
int local_size() { return transport::local_size(); }
void barrier() {
  if (world_size() > 1) transport::barrier();
}
void abort(int code) { transport::abort(code); }

static void check_defined(const Tensor& t, const char* op) { TG_CHECK(t.defined(), "dist::", op, ": undefined tensor"); }

// Where a tensor's bytes travel: host tensors through MPI; CUDA tensors through NCCL on the device when the
// library has it; any other device tensor (CUDA without NCCL, the test device) through host memory: a copy to
// the host, MPI, a copy back.
static bool through_nccl(const Tensor& t) {
  return t.device() == Device::CUDA && transport::device_collectives();
}
static void reduce_in_place(const Tensor& t, ReduceOp op) {
  if (t.device() == Device::CPU) return transport::all_reduce(t.raw_data(), t.numel(), t.dtype(), op);
  if (through_nccl(t)) {
    KernelScope scope;  // device pointers
    return transport::device_all_reduce(t.raw_data(), t.numel(), t.dtype(), op);
  }
  NoGradGuard g;
  Tensor host = t.detach().to(Device::CPU);
  transport::all_reduce(host.raw_data(), host.numel(), host.dtype(), op);
  Tensor(t).copy_(host);
}
static void broadcast_in_place(const Tensor& t, int root) {
  if (t.device() == Device::CPU) return transport::broadcast(t.raw_data(), t.numel(), t.dtype(), root);
  if (through_nccl(t)) {
    KernelScope scope;
    return transport::device_broadcast(t.raw_data(), t.numel(), t.dtype(), root);
  }
  NoGradGuard g;
  Tensor host = t.detach().to(Device::CPU);
  transport::broadcast(host.raw_data(), host.numel(), host.dtype(), root);
  Tensor(t).copy_(host);
}

void all_reduce(const std::vector<Tensor>& tensors, ReduceOp op) {
  for (const Tensor& t : tensors) {
    check_defined(t, "all_reduce");
    TG_CHECK(t.dtype() != DType::I64 || op != ReduceOp::Avg, "dist::all_reduce: Avg of an i64 tensor ", t.shape());
  }
  if (world_size() == 1) return;
  for (const Tensor& t : tensors) {
    reduce_in_place(t, op == ReduceOp::Avg ? ReduceOp::Sum : op);
    if (op == ReduceOp::Avg) {
      NoGradGuard g;
      Tensor(t).copy_(mul(t.detach(), 1.0 / world_size()));
    }
  }
}
void all_reduce(const Tensor& tensor, ReduceOp op) { all_reduce(std::vector<Tensor>{tensor}, op); }

void broadcast(const std::vector<Tensor>& tensors, int root) {
  TG_CHECK(root >= 0 && root < world_size(), "dist::broadcast: root ", root, " outside the world of ", world_size(),
           " rank(s)");
  for (const Tensor& t : tensors) check_defined(t, "broadcast");
  if (world_size() == 1) return;
  for (const Tensor& t : tensors) broadcast_in_place(t, root);
}

std::vector<double> all_reduce_sum(std::vector<double> values) {
  if (world_size() > 1 && !values.empty())
    transport::all_reduce(values.data(), static_cast<int64_t>(values.size()), DType::F64, ReduceOp::Sum);
  return values;
}

// y = sum_r x_r. Rank r's loss L_r depends on x_r only through y, on every rank, so dL/dx_r = sum_s dL_s/dy:
// the backward is the same sum of the incoming gradients.
Tensor sum_over_ranks(const Tensor& x) {
  check_defined(x, "sum_over_ranks");
  Tensor y = x.detach().clone();
  if (world_size() > 1) reduce_in_place(y, ReduceOp::Sum);
  if (needs_grad({x}))
    record("sum_over_ranks", {x}, {y}, [](const Grads& g) {
      Tensor dx = g[0].clone();
      if (world_size() > 1) reduce_in_place(dx, ReduceOp::Sum);
      return Grads{dx};
    });
  return y;
}

uint64_t fingerprint(const Tensor& t) {
  // FNV-1a over the shape, the dtype and the bytes, eight bytes at a time.
  uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&h](uint64_t v) { h = (h ^ v) * 0x100000001b3ull; };
  for (int64_t s : t.shape()) mix(static_cast<uint64_t>(s));
  mix(static_cast<uint64_t>(t.dtype()));
  const Tensor host = t.device() == Device::CPU ? t : t.detach().to(Device::CPU);
  const auto* p = static_cast<const unsigned char*>(host.raw_data());
  const size_t n = static_cast<size_t>(host.numel()) * size_of(host.dtype());
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v;
    std::memcpy(&v, p + i, 8);
    mix(v);
  }
  for (; i < n; ++i) mix(p[i]);
  return h;
}

// Exchanges a string from `root` (its length, then its bytes).
static std::string broadcast_string(std::string s, int root) {
  int64_t n = static_cast<int64_t>(s.size());
  transport::broadcast(&n, 1, DType::I64, root);
  std::vector<int64_t> words(static_cast<size_t>((n + 7) / 8), 0);
  if (rank() == root) std::memcpy(words.data(), s.data(), s.size());
  if (!words.empty()) transport::broadcast(words.data(), static_cast<int64_t>(words.size()), DType::I64, root);
  return std::string(reinterpret_cast<const char*>(words.data()), static_cast<size_t>(n));
}

static std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

void check_same(const std::string& what, const std::string& description) {
  if (world_size() == 1) return;
  const std::string root = broadcast_string(description, 0);
  int64_t first = root == description ? world_size() : rank();
  transport::all_reduce(&first, 1, DType::I64, ReduceOp::Min);
  if (first == world_size()) return;
  const std::string other = broadcast_string(description, static_cast<int>(first));
  const auto a = lines_of(root), b = lines_of(other);
  size_t k = 0;
  while (k < a.size() && k < b.size() && a[k] == b[k]) ++k;
  TG_FAIL("dist: rank ", first, " was started differently from rank 0 (", what, "): rank 0 has '",
          k < a.size() ? a[k] : "(nothing)", "', rank ", first, " has '", k < b.size() ? b[k] : "(nothing)",
          "'; every rank must run the same command on the same data");
}

// x [N, C, H, W]. mean_c = sum over all ranks' N*H*W values / n, var_c the biased variance likewise, then
// y = (x - mean) * invstd * weight + bias as BatchNorm2d; built of differentiable ops and sum_over_ranks, so
// backward all-reduces the two per-channel sums it needs (PyTorch's SyncBatchNorm does the same by hand).
Tensor sync_batch_norm(nn::BatchNorm2d& bn, const Tensor& x) {
  const int64_t C = x.size(1);
  const double n = all_reduce_sum({static_cast<double>(x.numel() / C)})[0];
  TG_CHECK(n > 1, "sync_batch_norm: expected more than 1 value per channel over all ranks, got input ", x.shape(),
           " on rank ", rank());
  const Shape channel{1, C, 1, 1};
  Tensor mean = mul(sum_over_ranks(sum(x, {0, 2, 3})), 1.0 / n);
  Tensor xc = sub(x, mean.reshape(channel));
  Tensor var = mul(sum_over_ranks(sum(mul(xc, xc), {0, 2, 3})), 1.0 / n);
  Tensor invstd = pow(add(var, bn.eps), -0.5);
  Tensor y = add(mul(xc, mul(invstd, bn.weight).reshape(channel)), bn.bias.reshape(channel));
  NoGradGuard no_grad;
  const double m = bn.momentum;
  bn.running_mean.copy_(add(mul(bn.running_mean, 1.0 - m), mul(mean.detach(), m)));
  bn.running_var.copy_(add(mul(bn.running_var, 1.0 - m), mul(var.detach(), m * n / (n - 1))));
  return y;
}

}  // namespace tapegrad::dist
