// Data parallelism over processes (and machines) on MPI, in the spirit of PyTorch's DistributedDataParallel.
//
// Every rank holds the whole model and trains on its own slice of each global batch; after backward() the
// gradients are averaged over the ranks, so every rank takes the same optimizer step. A program written for
// one process runs unchanged under `mpirun -np N`:
//
//   tg::dist::init(&argc, &argv);                  // MPI when launched by mpirun, else a world of one
//   tg::dist::DataParallel dp(model);              // rank 0's parameters and buffers everywhere
//   auto [lo, hi] = tg::datasets::shard_range(batch_size, tg::dist::rank(), tg::dist::world_size());
//   ... forward on samples [lo, hi) of the global batch, loss.backward() (gradients averaged), opt->step()
//
// A world of one rank (MPI absent, or the program not launched by mpirun) makes no MPI call at all: every
// collective returns its input and DataParallel installs nothing. Tensors may live on any device: CPU tensors
// go through MPI; CUDA tensors through NCCL on the CUDA backend's stream when the library was built with CUDA,
// MPI and NCCL (then init() gives each rank of a machine its own GPU, local_rank() % GPUs, and NCCL wants one
// GPU per rank), else through host memory (a copy to the host, MPI, a copy back), as other device tensors.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tapegrad/autograd.hpp"
#include "tapegrad/nn/module.hpp"

namespace tapegrad::nn { class BatchNorm2d; }

namespace tapegrad::dist {

// Joins the world: MPI_Init_thread (funneled: only the calling thread talks to MPI) when the process was
// launched by mpirun (Open MPI's or a PMI launcher's environment), else a world of one. Idempotent. MPI is
// finalised at exit.
void init(int* argc = nullptr, char*** argv = nullptr);
bool built_with_mpi();  // the library was built with MPI (meson -Dmpi)
bool using_mpi();       // init() joined an MPI world (of any size)
int rank();             // 0 .. world_size() - 1
int world_size();
int local_rank();       // among the ranks on this machine
int local_size();       // ranks on this machine (threads per rank default to the cores / local_size())
void barrier();

enum class ReduceOp { Sum, Max, Min, Avg };
// In place on every rank: each tensor becomes the reduction of that tensor over the ranks (Avg: the sum
// divided by world_size(); I64 tensors only Sum, Max, Min). Same shapes and dtypes on every rank.
void all_reduce(const std::vector<Tensor>& tensors, ReduceOp op = ReduceOp::Sum);
void all_reduce(const Tensor& tensor, ReduceOp op = ReduceOp::Sum);
// In place: every rank's tensors take root's values.
void broadcast(const std::vector<Tensor>& tensors, int root = 0);
// Sums of plain numbers over the ranks (metrics: exact counts and sums, never averages of averages).
std::vector<double> all_reduce_sum(std::vector<double> values);

// The differentiable sum over ranks: y = sum_r x_r on every rank; its backward sums the gradients the same
// way (each rank's loss depends on y). Synchronised BatchNorm is built on it.
Tensor sum_over_ranks(const Tensor& x);

// Refuses, on every rank at once, a world whose ranks were started differently: `description` is a list of
// "key=value" lines (flags, data fingerprint, model layout); the first rank whose list differs from rank 0's
// makes every rank throw an Error naming that rank, `what`, and the first line that differs.
void check_same(const std::string& what, const std::string& description);
// A 64-bit fingerprint of a tensor's shape, dtype and bytes (for check_same).
uint64_t fingerprint(const Tensor& t);

// Ends the job after an error: in a world of several ranks, MPI_Abort(code) stops every rank (it does not
// return), so that no rank waits forever for a lost peer; in a world of one it returns and the caller exits.
void abort(int code);

// Synchronised batch statistics for one BatchNorm2d in training: the mean and variance over the global batch
// (all ranks), differentiably; the running statistics move with the global ones (unbiased variance).
Tensor sync_batch_norm(nn::BatchNorm2d& bn, const Tensor& x);

struct DataParallelOptions {
  // Gradients are averaged in flat buckets of about this size (PyTorch's 25 MB), one all-reduce each,
  // started as soon as the bucket's gradients are final during backward().
  int64_t bucket_bytes = 25 << 20;
  // BatchNorm2d layers normalise with statistics over the global batch instead of their rank's slice.
  // Off by default, as PyTorch: each rank normalises its own slice, and the running statistics of rank 0
  // are broadcast after each step, so that every rank evaluates with the same ones.
  bool sync_batch_norm = false;
};

// Averages the gradients of a model's parameters over the ranks during backward().
//
// Construction (a collective: every rank constructs it, in the same order) checks that all ranks hold the
// same parameter names, shapes and dtypes, copies rank 0's parameters and buffers to every rank, and hooks
// each parameter's "gradient ready" event (add_grad_ready_hook). Buckets are filled in the reverse order of
// model.parameters() (roughly the order in which backward finishes them) and all-reduced in bucket order,
// non-blocking, while the walk goes on; when the last parameter of the model is ready, the call waits for the
// buckets still in flight and writes the averages into the parameters' .grad(). So after loss.backward()
// every rank holds the same gradient: the gradient of the global batch.
//
// Every parameter must receive its gradient in every backward (a parameter outside the graph keeps the
// reduction from completing: the next backward refuses to start, naming it). A rank with no sample in a
// step calls skip_backward() instead of backward() so that the others are not left waiting.
class DataParallel {
 public:
  explicit DataParallel(nn::Module& model, DataParallelOptions options = {});
  ~DataParallel();
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  // This rank's share of the global batch, local / global (default 1 / world_size()): gradients are
  // combined as sum_r share_r g_r, which is the global batch's gradient also when the slices differ in
  // size (a last batch that does not divide). Set it before each backward() whose slices are uneven.
  void set_batch_share(int64_t local, int64_t global);
  // Takes part in this step's averaging with a zero gradient (a rank whose slice of the batch is empty).
  void skip_backward();

  int num_buckets() const;
  // Of the last step: seconds the backward walk was held up waiting for all-reduces that had not finished
  // (communication not hidden behind the computation), and the bytes averaged.
  double last_wait_seconds() const { return wait_seconds_; }
  // When that wait began (the last gradient was ready), steady_clock seconds: on one machine the ranks'
  // differences tell how much of the wait was a peer still computing rather than communication.
  double last_ready_time() const { return ready_time_; }
  // The fraction of the gradient bytes whose all-reduce had finished when the walk ended (one more progress
  // call included): the part of the communication hidden behind the computation.
  double last_done_early() const { return done_early_; }
  int64_t gradient_bytes() const;

 private:
  struct Bucket;
  void on_ready(size_t param, const Tensor& grad);
  void launch_ready_buckets();
  void finish();
  static std::string name_of(const Tensor& t);

  nn::Module& model_;
  DataParallelOptions options_;
  std::vector<Tensor> params_;
  std::vector<std::string> names_;
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_, offset_of_;  // per parameter
  std::vector<GradHook> hooks_;
  std::vector<char> ready_;
  size_t ready_count_ = 0;
  size_t next_launch_ = 0;
  double share_ = 1.0;
  double wait_seconds_ = 0.0, ready_time_ = 0.0, done_early_ = 0.0;
};

}  // namespace tapegrad::dist
