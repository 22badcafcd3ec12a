// Data parallelism, measured: all-reduce bandwidth, and the ResNet-20 training step on R ranks x T threads
// with how much of the gradient averaging the backward walk hides. One JSON line per measurement (rank 0).
// tools/bench_dist runs the comparisons side by side (2 ranks x 1 thread against 1 rank x 2 threads).
//
//   bench_dist --mode allreduce [--sizes-mb 1,10,100] [--repeats 5]        (under mpirun)
//   bench_dist --mode resnet [--threads 1] [--batch 128] [--steps 5] [--bucket-mb 25]
//
// The step: zero_grad, forward on this rank's slice of the global batch (random 32x32 RGB images), cross
// entropy, backward (gradients averaged during it), SGD-momentum step; median of --steps after one warm-up.
// Communication hidden = 1 - (time backward waited for unfinished all-reduces, less the time a peer rank was
// still computing) / (the same all-reduces run alone, blocking, after the step): 1 when they all finished
// during the walk, 0 when none overlapped.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tapegrad/datasets/loader.hpp"
#include "tapegrad/dist.hpp"
#include "tapegrad/models/resnet.hpp"
#include "tapegrad/tapegrad.hpp"

namespace tg = tapegrad;
using json = nlohmann::ordered_json;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

void emit(const json& j) {
  if (tg::dist::rank() == 0) std::printf("%s\n", j.dump().c_str());
  std::fflush(stdout);
}

void allreduce(const std::vector<double>& sizes_mb, int repeats) {
  const int R = tg::dist::world_size();
  for (double mb : sizes_mb) {
    const auto n = static_cast<int64_t>(mb * 1e6 / 4);
    tg::Tensor buf = tg::ones({n});
    tg::dist::all_reduce(buf);  // warm-up (and the pages touched)
    std::vector<double> t;
    for (int r = 0; r < repeats; ++r) {
      tg::dist::barrier();
      const double t0 = now();
      tg::dist::all_reduce(buf);
      t.push_back(now() - t0);
    }
    const double s = median(t), bytes = static_cast<double>(n) * 4;
    emit({{"bench", "allreduce"}, {"ranks", R}, {"mb", mb}, {"sec", s}, {"algbw_gb_s", bytes / s / 1e9},
          {"busbw_gb_s", 2.0 * (R - 1) / R * bytes / s / 1e9}});
  }
}

void resnet(int64_t batch, int steps, double bucket_mb) {
  const int R = tg::dist::world_size();
  tg::Generator g(0);
  auto model = tg::models::resnet20(10, g);
  tg::dist::DataParallel dp(*model, {.bucket_bytes = static_cast<int64_t>(bucket_mb * (1 << 20))});
  auto opt = tg::optim::make("sgdm:lr=0.1,weight_decay=5e-4", model->parameters());
  const auto part = tg::datasets::shard_range(batch, tg::dist::rank(), R);
  tg::Tensor x = tg::randn({part.size(), 3, 32, 32}, g);
  tg::Tensor y = tg::randint(10, {part.size()}, g);
  // The same sums alone: one blocking all-reduce per bucket, of the buckets' sizes (equal shares here).
  std::vector<tg::Tensor> buckets;
  const int64_t elems = dp.gradient_bytes() / 4, nb = std::max(1, dp.num_buckets());
  for (int64_t b = 0; b < nb; ++b) buckets.push_back(tg::zeros({elems / nb + 1}));
  std::vector<double> step, wait, alone, skew, early;
  for (int s = 0; s <= steps; ++s) {
    tg::dist::barrier();
    const double t0 = now();
    opt->zero_grad();
    tg::cross_entropy((*model)(x), y).backward();
    opt->step();
    const double t1 = now();
    if (s == 0) continue;  // warm-up
    step.push_back(t1 - t0);
    // The wait less the time a peer was still computing (ranks on one machine share the steady clock).
    tg::Tensor ready = tg::full({}, dp.last_ready_time(), tg::DType::F64);
    tg::dist::all_reduce(ready, tg::dist::ReduceOp::Max);
    skew.push_back(ready.item() - dp.last_ready_time());
    wait.push_back(std::max(0.0, dp.last_wait_seconds() - skew.back()));
    early.push_back(dp.last_done_early());
    tg::dist::barrier();
    const double t2 = now();
    if (R > 1) tg::dist::all_reduce(buckets);
    alone.push_back(now() - t2);
  }
  // Rank 0's figures, the communication waited for: the largest over the ranks.
  tg::Tensor wmax = tg::full({}, median(wait), tg::DType::F64);
  tg::dist::all_reduce(wmax, tg::dist::ReduceOp::Max);
  const double s = median(step), w = wmax.item(), a = median(alone);
  emit({{"bench", "resnet20_step"}, {"ranks", R}, {"threads", tg::num_threads()}, {"batch", batch},
        {"bucket_mb", bucket_mb}, {"buckets", dp.num_buckets()}, {"grad_mb", dp.gradient_bytes() / 1e6},
        {"step_s", s}, {"images_per_s", static_cast<double>(batch) / s}, {"allreduce_alone_s", a},
        {"exposed_wait_s", w}, {"peer_skew_s", median(skew)},
        {"done_before_backward_end", median(early)}, {"hidden_fraction", R > 1 && a > 0 ? std::max(0.0, 1.0 - w / a) : 0.0}});
}

}  // namespace

int main(int argc, char** argv) {
  tg::dist::init(&argc, &argv);
  CLI::App app{"data-parallel benchmarks: all-reduce bandwidth, ResNet-20 step over ranks"};
  std::string mode = "resnet";
  int threads = 1, steps = 5, repeats = 5;
  int64_t batch = 128;
  double bucket_mb = 25;
  std::vector<double> sizes{1, 10, 100};
  app.add_option("--mode", mode, "allreduce or resnet")->check(CLI::IsMember({"allreduce", "resnet"}));
  app.add_option("--threads", threads, "OpenMP threads per rank")->check(CLI::PositiveNumber);
  app.add_option("--batch", batch, "global batch (divided among the ranks)")->check(CLI::PositiveNumber);
  app.add_option("--steps", steps, "timed steps after one warm-up")->check(CLI::PositiveNumber);
  app.add_option("--bucket-mb", bucket_mb, "gradient bucket size, MiB")->check(CLI::PositiveNumber);
  app.add_option("--sizes-mb", sizes, "all-reduce buffer sizes, MB")->delimiter(',');
  app.add_option("--repeats", repeats, "all-reduce repeats per size")->check(CLI::PositiveNumber);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    tg::set_num_threads(threads);
    if (mode == "allreduce") allreduce(sizes, repeats);
    else resnet(batch, steps, bucket_mb);
  } catch (const tg::Error& e) {
    std::fprintf(stderr, "bench_dist: rank %d: error: %s\n", tg::dist::rank(), e.what());
    tg::dist::abort(2);
    return 2;
  }
  return 0;
}
