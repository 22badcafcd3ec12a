// Data parallelism against the single process, run by test_mpi.sh under `mpirun -np 2`.
//
//   dist_check info                 prints "mpi=1" when the library was built with MPI
//   dist_check equivalence DIR      every optimizer: the perceptron and the LSTM language model (f64 and f32),
//                                   ResNet-20 with synchronised BatchNorm (f64); resume 2 -> 1 and 1 -> 2
//   dist_check gpus                 prints 1 when a CUDA device is usable (a CUDA build with a GPU), else 0
//   dist_check device DIR DEV       tensors on DEV (test: through host memory; cuda: NCCL when built in): the
//                                   collectives against the same on CPU tensors, and the data-parallel
//                                   perceptron on DEV against one CPU process
//   dist_check train DIR [--steps N] [--resume] [--seed-by-rank] [--hidden-by-rank]
//                                   the perceptron on data-parallel steps, a checkpoint every 10 steps (the
//                                   faults test kills a rank during it; the *-by-rank flags start rank 1
//                                   differently, which must be refused before any step)
//
// Every rank computes the single-process reference itself (same seeds, the whole global batch, no
// DataParallel), then the data-parallel run on its slice of each batch, and compares its own parameters. The
// verdict is all-reduced, so that every rank agrees on it; rank 0 prints the table. Exit 0: all agree.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tapegrad/datasets/loader.hpp"
#include "tapegrad/dist.hpp"
#include "tapegrad/io.hpp"
#include "tapegrad/models/lstm_lm.hpp"
#include "tapegrad/models/mlp.hpp"
#include "tapegrad/models/resnet.hpp"
#include "tapegrad/nn/utils.hpp"
#include "tapegrad/ops.hpp"
#include "tapegrad/optim.hpp"

using namespace tapegrad;
namespace tg = tapegrad;

namespace {

const std::vector<std::string> kOptimizers = {
    "sgd:lr=0.1", "sgdm:lr=0.1,weight_decay=5e-4", "sgd:lr=0.1,momentum=0.9,nesterov=true", "adagrad",
    "adam", "amsgrad", "adamw", "adabound", "amsbound", "adaboundw"};
constexpr int kSteps = 20;

// ||a - b|| / ||b|| (2-norms) over all parameters and float buffers: the relative difference of the whole
// state. (Elementwise, Adam's m / (sqrt(v) + eps) magnifies the reduction-order noise of gradients that
// nearly cancel: for the f32 perceptron with Adam the largest |a_i - b_i| / max |b| was 1.9e-5, the norm-wise
// figure 1.7e-7.)
double relative_difference(const nn::Module& a, const nn::Module& b) {
  double diff = 0, scale = 0;
  auto pa = a.state_dict(), pb = b.state_dict();
  for (auto& [name, t] : pb) {
    if (t.dtype() == DType::I64) continue;
    auto u = pa.at(name).to_vector(), v = t.to_vector();
    for (size_t i = 0; i < u.size(); ++i) {
      diff += (u[i] - v[i]) * (u[i] - v[i]);
      scale += v[i] * v[i];
    }
  }
  return std::sqrt(diff / std::max(scale, 1e-300));
}

int failures = 0;
void verdict(const std::string& what, double rel, double tol) {
  // The worst over the ranks decides, so that every rank reaches the same verdict.
  Tensor t = full({}, rel, DType::F64);
  dist::all_reduce(t, dist::ReduceOp::Max);
  rel = t.item();
  const bool ok = rel <= tol;
  if (!ok) ++failures;
  if (dist::rank() == 0)
    std::printf("%-4s %-58s rel diff %.3g (tolerance %.0e)\n", ok ? "ok" : "FAIL", what.c_str(), rel, tol);
}

// f64 runs average all gradients in one bucket (the default 25 MB), f32 runs in one bucket per parameter (4 KB:
// several sums in flight, some done before backward ends).
int64_t buckets_for(DType dtype) { return dtype == DType::F64 ? 25 << 20 : 4 << 10; }
std::string buckets_of(const dist::DataParallel& dp) { return " (" + std::to_string(dp.num_buckets()) + " buckets)"; }

// ---- the perceptron: global batches of 16 and 7 (7 splits unevenly: set_batch_share) ----

struct Data {
  Tensor x, y;
};
Data mlp_data(DType dtype) {
  Generator g(42);
  return {randn({kSteps * 16, 784}, g, dtype), randint(10, {kSteps * 16}, g)};
}
int64_t mlp_batch(int t) { return t % 3 == 2 ? 7 : 16; }

std::shared_ptr<models::MLP> mlp(DType dtype, int64_t hidden = 256) {
  Generator g(1);
  auto m = std::make_shared<models::MLP>(784, hidden, 10, g);
  m->to(dtype);
  return m;
}

// Steps [from, to) of the perceptron; with dp, on this rank's slice of each global batch.
void mlp_steps(models::MLP& m, optim::Optimizer& opt, const Data& d, int from, int to, dist::DataParallel* dp) {
  int64_t off = 0;
  for (int t = 0; t < from; ++t) off += mlp_batch(t);
  for (int t = from; t < to; ++t) {
    const int64_t b = mlp_batch(t);
    auto part = dp ? datasets::shard_range(b, dist::rank(), dist::world_size()) : datasets::Range{0, b};
    if (dp) dp->set_batch_share(part.size(), b);
    opt.zero_grad();
    cross_entropy(m(d.x.slice(0, off + part.begin, off + part.end)), d.y.slice(0, off + part.begin, off + part.end))
        .backward();
    opt.step();
    off += b;
  }
}

void perceptron(const std::string& spec, DType dtype, double tol) {
  const Data d = mlp_data(dtype);
  auto ref = mlp(dtype), par = mlp(dtype);
  auto ref_opt = optim::make(spec, ref->parameters()), par_opt = optim::make(spec, par->parameters());
  mlp_steps(*ref, *ref_opt, d, 0, kSteps, nullptr);
  dist::DataParallel dp(*par, {.bucket_bytes = buckets_for(dtype)});
  mlp_steps(*par, *par_opt, d, 0, kSteps, &dp);
  verdict("perceptron " + std::string(name(dtype)) + " " + spec + buckets_of(dp), relative_difference(*par, *ref),
          tol);
}

// ---- the LSTM language model: 4 streams (columns) of 5 tokens per step, hidden state carried, clip 0.25 ----

std::shared_ptr<models::LSTMLanguageModel> lm(DType dtype) {
  Generator g(2);
  auto m = std::make_shared<models::LSTMLanguageModel>(
      models::LMOptions{.vocab = 50, .emb = 16, .hidden = 16, .layers = 2, .dropout = 0.0}, g);
  m->to(dtype);
  return m;
}

void lm_steps(models::LSTMLanguageModel& m, optim::Optimizer& opt, const Tensor& tokens, dist::DataParallel* dp) {
  const int64_t T = 5, B = tokens.size(1);
  auto part = dp ? datasets::shard_range(B, dist::rank(), dist::world_size()) : datasets::Range{0, B};
  Tensor cols = tokens.slice(1, part.begin, part.end);
  nn::LSTMState state;
  for (int t = 0; t < kSteps; ++t) {
    Tensor input = cols.slice(0, t * T, (t + 1) * T), target = cols.slice(0, t * T + 1, (t + 1) * T + 1);
    if (dp) dp->set_batch_share(part.size(), B);
    opt.zero_grad();
    auto out = m(input, state);
    cross_entropy(out.logits, target.reshape({-1})).backward();
    nn::clip_grad_norm(m.parameters(), 0.25);
    opt.step();
    state = {out.state.h.detach(), out.state.c.detach()};
  }
}

void language_model(const std::string& spec, DType dtype, double tol) {
  Generator g(9);
  Tensor tokens = randint(50, {kSteps * 5 + 1, 4}, g);
  auto ref = lm(dtype), par = lm(dtype);
  auto ref_opt = optim::make(spec, ref->parameters()), par_opt = optim::make(spec, par->parameters());
  lm_steps(*ref, *ref_opt, tokens, nullptr);
  dist::DataParallel dp(*par, {.bucket_bytes = buckets_for(dtype)});
  lm_steps(*par, *par_opt, tokens, &dp);
  verdict("LSTM LM " + std::string(name(dtype)) + " " + spec + buckets_of(dp), relative_difference(*par, *ref), tol);
}

// ---- ResNet-20 with synchronised BatchNorm against the fused BatchNorm of one process ----
//
// In f64. In f32 the two forwards differ by honest rounding (statistics summed in another order: 1e-6 at
// layer3), enough to flip a ReLU whose input is within 1e-6 of zero; the flipped mask changes that gradient
// by percents, and momentum carries it: 2.4e-5 after step 1, up to 0.04 after 20 (SGD with momentum: 6 of 8
// data seeds failed 1e-5 with -march=native, 8 of 8 without). In f64: 4e-16 for each of those seeds.

void resnet(const std::string& spec, double tol) {
  Generator gd(5);
  const int64_t B = 8;
  Tensor x = randn({kSteps * B, 3, 16, 16}, gd, DType::F64);
  Tensor y = randint(10, {kSteps * B}, gd);
  Generator g1(3), g2(3);
  auto ref = models::resnet20(10, g1), par = models::resnet20(10, g2);
  ref->to(DType::F64);
  par->to(DType::F64);
  auto ref_opt = optim::make(spec, ref->parameters()), par_opt = optim::make(spec, par->parameters());
  dist::DataParallel dp(*par, {.bucket_bytes = 256 << 10, .sync_batch_norm = true});
  const auto part = datasets::shard_range(B, dist::rank(), dist::world_size());
  for (int t = 0; t < kSteps; ++t) {
    ref_opt->zero_grad();
    cross_entropy((*ref)(x.slice(0, t * B, (t + 1) * B)), y.slice(0, t * B, (t + 1) * B)).backward();
    ref_opt->step();
    par_opt->zero_grad();
    cross_entropy((*par)(x.slice(0, t * B + part.begin, t * B + part.end)),
                  y.slice(0, t * B + part.begin, t * B + part.end))
        .backward();
    par_opt->step();
    if (std::getenv("DIST_CHECK_TRACE") && dist::rank() == 0)
      std::printf("  step %d: %.3g\n", t, relative_difference(*par, *ref));
  }
  verdict("ResNet-20 f64 sync BN " + spec + buckets_of(dp),
          relative_difference(*par, *ref), tol);
}

// ---- resume across world sizes: 10 steps on 2 ranks, 10 on 1 (and the other way) = 20 on 1 ----

void resume(const std::string& dir) {
  const std::string spec = "adabound";
  const Data d = mlp_data(DType::F64);
  auto ref = mlp(DType::F64);
  auto ref_opt = optim::make(spec, ref->parameters());
  mlp_steps(*ref, *ref_opt, d, 0, kSteps, nullptr);
  const std::string path = dir + "/resume.safetensors";
  {  // 2 -> 1: the data-parallel half, a checkpoint from rank 0, then every rank alone
    auto m = mlp(DType::F64);
    auto opt = optim::make(spec, m->parameters());
    dist::DataParallel dp(*m);
    mlp_steps(*m, *opt, d, 0, kSteps / 2, &dp);
    if (dist::rank() == 0) save_checkpoint(path, *m, opt.get());
    dist::barrier();
    auto m1 = mlp(DType::F64);
    auto opt1 = optim::make(spec, m1->parameters());
    load_checkpoint(path, *m1, opt1.get());
    mlp_steps(*m1, *opt1, d, kSteps / 2, kSteps, nullptr);
    verdict("resume 2 -> 1 ranks (perceptron f64 " + spec + ")", relative_difference(*m1, *ref), 1e-12);
  }
  dist::barrier();
  {  // 1 -> 2: rank 0 alone, its checkpoint loaded by every rank, then data-parallel
    if (dist::rank() == 0) {
      auto m = mlp(DType::F64);
      auto opt = optim::make(spec, m->parameters());
      mlp_steps(*m, *opt, d, 0, kSteps / 2, nullptr);
      save_checkpoint(path, *m, opt.get());
    }
    dist::barrier();
    auto m2 = mlp(DType::F64);
    auto opt2 = optim::make(spec, m2->parameters());
    load_checkpoint(path, *m2, opt2.get());
    dist::DataParallel dp(*m2);
    mlp_steps(*m2, *opt2, d, kSteps / 2, kSteps, &dp);
    verdict("resume 1 -> 2 ranks (perceptron f64 " + spec + ")", relative_difference(*m2, *ref), 1e-12);
  }
}

int equivalence(const std::string& dir) {
  if (dist::rank() == 0)
    std::printf("%d rank(s); %d steps from the same weights and sample order, against one process\n",
                dist::world_size(), kSteps);
  if (std::getenv("DIST_CHECK_RESNET")) {
    resnet(std::getenv("DIST_CHECK_RESNET"), 1e-12);
    return 0;
  }
  for (auto& spec : kOptimizers) {
    perceptron(spec, DType::F64, 1e-12);
    perceptron(spec, DType::F32, 1e-5);
  }
  for (auto& spec : kOptimizers) {
    language_model(spec, DType::F64, 1e-12);
    language_model(spec, DType::F32, 1e-5);
  }
  // SGD at lr 0.1 on 8 random images is chaotic (a difference grows 2x a step). At lr 0.01 it is not.
  resnet("sgdm:lr=0.01", 1e-12);
  resnet("adabound", 1e-12);
  resume(dir);
  if (dist::rank() == 0) std::printf("%s: %d failure(s)\n", failures ? "FAILED" : "passed", failures);
  return failures ? 1 : 0;
}

// ---- tensors on another device: what dist:: does with them equals what it does with CPU tensors ----

double rel_diff(const std::vector<double>& u, const std::vector<double>& v) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    diff += (u[i] - v[i]) * (u[i] - v[i]);
    scale += v[i] * v[i];
  }
  return u.size() == v.size() ? std::sqrt(diff / std::max(scale, 1e-300)) : 1.0;
}

int device_tensors(const std::string& dev_name) {
  const Device dev = device_from_name(dev_name);
  if (dist::rank() == 0) std::printf("%d rank(s); tensors on %s against tensors on the cpu\n", dist::world_size(), name(dev));
  const std::string on = std::string(" on ") + name(dev);
  const std::vector<std::pair<dist::ReduceOp, const char*>> ops{
      {dist::ReduceOp::Sum, "sum"}, {dist::ReduceOp::Max, "max"}, {dist::ReduceOp::Min, "min"}, {dist::ReduceOp::Avg, "avg"}};
  for (DType d : {DType::F64, DType::F32}) {
    Generator g(10 + static_cast<uint64_t>(dist::rank()));  // other values on every rank
    const Tensor a = randn({1000}, g, d);
    for (auto [op, op_name] : ops) {
      Tensor host = a.clone(), moved = a.to(dev);
      dist::all_reduce(host, op);
      dist::all_reduce(moved, op);
      verdict(std::string("all_reduce ") + op_name + " " + name(d) + on, rel_diff(moved.to_vector(), host.to_vector()), 0);
    }
    Tensor host = a.clone(), moved = a.to(dev);
    dist::broadcast({host}, 1);
    dist::broadcast({moved}, 1);
    verdict(std::string("broadcast from rank 1 ") + name(d) + on, rel_diff(moved.to_vector(), host.to_vector()), 0);
    // sum_over_ranks and its backward
    Tensor xh = a.clone().requires_grad_(), xd = a.to(dev).requires_grad_();
    sum(mul(dist::sum_over_ranks(xh), dist::sum_over_ranks(xh))).backward();
    sum(mul(dist::sum_over_ranks(xd), dist::sum_over_ranks(xd))).backward();
    verdict(std::string("sum_over_ranks backward ") + name(d) + on, rel_diff(xd.grad().to_vector(), xh.grad().to_vector()),
            0);
  }
  Tensor ih = from_vector({int64_t{dist::rank()}, int64_t{7} * dist::rank() + 1}, {2}), id = ih.to(dev);
  dist::all_reduce(ih);
  dist::all_reduce(id);
  verdict("all_reduce sum i64" + on, rel_diff(id.to_vector(), ih.to_vector()), 0);

  // DataParallel on dev (parameters, buckets, optimizer state there) against one CPU process.
  for (const std::string spec : {"sgdm:lr=0.1,weight_decay=5e-4", "adabound"})
    for (auto [dtype, tol] : {std::pair{DType::F64, 1e-12}, std::pair{DType::F32, 1e-5}}) {
      const Data d = mlp_data(dtype);
      auto ref = mlp(dtype), par = mlp(dtype);
      par->to(dev);
      auto ref_opt = optim::make(spec, ref->parameters()), par_opt = optim::make(spec, par->parameters());
      mlp_steps(*ref, *ref_opt, d, 0, kSteps, nullptr);
      dist::DataParallel dp(*par, {.bucket_bytes = buckets_for(dtype)});
      mlp_steps(*par, *par_opt, {d.x.to(dev), d.y.to(dev)}, 0, kSteps, &dp);
      verdict("perceptron " + std::string(name(dtype)) + " " + spec + on + buckets_of(dp),
              relative_difference(*par, *ref), tol);
    }
  if (dist::rank() == 0) std::printf("%s: %d failure(s)\n", failures ? "FAILED" : "passed", failures);
  return failures ? 1 : 0;
}

// ---- the training loop the faults test kills ----

int train(const std::string& dir, int argc, char** argv) {
  int64_t steps = 1000000;
  bool resume_run = false, seed_by_rank = false, hidden_by_rank = false;
  for (int i = 3; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--steps" && i + 1 < argc) steps = std::stoll(argv[++i]);
    else if (a == "--resume") resume_run = true;
    else if (a == "--seed-by-rank") seed_by_rank = true;
    else if (a == "--hidden-by-rank") hidden_by_rank = true;
    else TG_FAIL("dist_check train: unknown flag '", a, "'");
  }
  {
    std::ofstream(dir + "/pid." + std::to_string(dist::rank())) << ::getpid() << "\n";
  }
  const uint64_t seed = seed_by_rank ? 1 + dist::rank() : 1;
  Generator g(seed);
  Tensor x = randn({256, 784}, g), y = randint(10, {256}, g);
  dist::check_same("flags and data", "seed=" + std::to_string(seed) + "\ndata=" +
                                         std::to_string(dist::fingerprint(x) ^ dist::fingerprint(y)) + "\n");
  auto m = mlp(DType::F32, hidden_by_rank ? 64 + 64 * dist::rank() : 64);
  auto opt = optim::make("adam", m->parameters());
  const std::string ckpt = dir + "/train.safetensors";
  int64_t start = 0;
  if (resume_run) {  // every rank loads the checkpoint
    start = std::stoll(load_checkpoint(ckpt, *m, opt.get()).at("step"));
    if (dist::rank() == 0) std::printf("resumed at step %lld\n", static_cast<long long>(start));
  }
  dist::DataParallel dp(*m);
  const int64_t B = 32;
  for (int64_t s = start; s < steps; ++s) {
    const int64_t off = (s * B) % 256;
    auto part = datasets::shard_range(B, dist::rank(), dist::world_size());
    opt->zero_grad();
    cross_entropy((*m)(x.slice(0, off + part.begin, off + part.end)), y.slice(0, off + part.begin, off + part.end))
        .backward();
    opt->step();
    if ((s + 1) % 10 == 0 && dist::rank() == 0) {
      save_checkpoint(ckpt, *m, opt.get(), {{"step", std::to_string(s + 1)}});
      std::printf("checkpoint at step %lld\n", static_cast<long long>(s + 1));
      std::fflush(stdout);
    }
  }
  if (dist::rank() == 0) std::printf("done at step %lld\n", static_cast<long long>(steps));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    dist::init(&argc, &argv);
    const std::string mode = argc > 1 ? argv[1] : "";
    if (mode == "info") {
      std::printf("mpi=%d\n", dist::built_with_mpi() ? 1 : 0);
      return 0;
    }
    if (mode == "gpus") {
      std::printf("%d\n", cuda_available() ? 1 : 0);
      return 0;
    }
    TG_CHECK(argc > 2, "usage: dist_check info | gpus | equivalence DIR | device DIR DEV | train DIR [flags]");
    std::filesystem::create_directories(argv[2]);
    if (mode == "equivalence") return equivalence(argv[2]);
    if (mode == "train") return train(argv[2], argc, argv);
    if (mode == "device" && argc > 3) return device_tensors(argv[3]);
    TG_FAIL("dist_check: unknown mode '", mode, "'");
  } catch (const tg::Error& e) {
    std::fprintf(stderr, "dist_check: rank %d: error: %s\n", dist::rank(), e.what());
    dist::abort(2);
    return 2;
  }
}
