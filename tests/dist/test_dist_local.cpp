// What data parallelism needs that one process can check: the gradient-ready hooks of the tape, the sharded
// sampler, and dist's world of one (every collective the identity, DataParallel changing nothing). The runs
// over several ranks are tests/dist/dist_check.cpp under mpirun (test_mpi.sh).
#include <doctest/doctest.h>

#include <cmath>

#include "tapegrad/datasets/loader.hpp"
#include "tapegrad/dist.hpp"
#include "tapegrad/models/resnet.hpp"
#include "tapegrad/nn/conv.hpp"
#include "tapegrad/nn/init.hpp"
#include "tapegrad/ops.hpp"

using namespace tapegrad;

TEST_CASE("grad-ready hooks fire once per leaf, when its gradient is final") {
  Generator gen(3);
  Tensor a = randn({3}, gen, DType::F64).requires_grad_(), b = randn({3}, gen, DType::F64).requires_grad_();
  Tensor unused = randn({3}, gen, DType::F64).requires_grad_();
  std::vector<std::pair<char, std::vector<double>>> fired;
  std::vector<GradHook> hooks;
  hooks.push_back(add_grad_ready_hook(a, [&](const Tensor& t) { fired.push_back({'a', t.grad().to_vector()}); }));
  hooks.push_back(add_grad_ready_hook(b, [&](const Tensor& t) { fired.push_back({'b', t.grad().to_vector()}); }));
  hooks.push_back(add_grad_ready_hook(unused, [&](const Tensor&) { fired.push_back({'u', {}}); }));
  // a is used by the first node only, b by a later one: the walk (in reverse) finishes b's gradient first.
  Tensor aa = mul(a, a);
  Tensor eb = exp(b);
  Tensor loss = sum(mul(aa, eb));
  loss.backward();
  REQUIRE(fired.size() == 2);
  CHECK(fired[0].first == 'b');
  CHECK(fired[1].first == 'a');
  CHECK(fired[0].second == b.grad().to_vector());  // what the hook saw is the final gradient
  CHECK(fired[1].second == a.grad().to_vector());
  // A second graph fires again; a destroyed handle stops its hook.
  hooks.erase(hooks.begin());
  fired.clear();
  sum(mul(a, b)).backward();
  REQUIRE(fired.size() == 1);
  CHECK(fired[0].first == 'b');
  hooks.clear();
  fired.clear();
  sum(mul(a, b)).backward();
  CHECK(fired.empty());
}

TEST_CASE("grad-ready hooks: a leaf that is itself the output, and leaves of a graph not differentiated") {
  Tensor x = full({}, 2.0, DType::F64).requires_grad_(), y = full({}, 3.0, DType::F64).requires_grad_();
  int fx = 0, fy = 0;
  GradHook hx = add_grad_ready_hook(x, [&](const Tensor& t) { fx++; CHECK(t.grad().item() == 1.0); });
  GradHook hy = add_grad_ready_hook(y, [&](const Tensor&) { fy++; });
  Tensor other = mul(y, y);  // recorded, never differentiated: y's hook must not fire
  x.backward();
  CHECK(fx == 1);
  CHECK(fy == 0);
  CHECK_THROWS_WITH_AS(add_grad_ready_hook(other, [](const Tensor&) {}),
                       doctest::Contains("must be a leaf that requires grad"), Error);
}

TEST_CASE("shard_range: contiguous slices in rank order that cover the batch") {
  for (int64_t n : {0, 1, 5, 7, 128, 129})
    for (int world = 1; world <= 5; ++world) {
      int64_t next = 0;
      for (int r = 0; r < world; ++r) {
        auto part = datasets::shard_range(n, r, world);
        CHECK(part.begin == next);
        CHECK(part.size() >= n / world);
        CHECK(part.size() <= n / world + 1);
        next = part.end;
      }
      CHECK(next == n);
    }
  CHECK_THROWS_WITH_AS(datasets::shard_range(8, 2, 2), doctest::Contains("rank 2 of a world of 2"), Error);
}

TEST_CASE("the sharded loader: the ranks' slices, concatenated, are the single-process batches") {
  datasets::ImageDataset ds;
  const int64_t n = 23;
  std::vector<float> px(static_cast<size_t>(n * 2 * 3 * 3));
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<float>(i % 97) / 97.0f;
  std::vector<int64_t> labels(n);
  for (int64_t i = 0; i < n; ++i) labels[i] = i % 10;
  ds.images = from_vector(px, {n, 18});
  ds.labels = from_vector(labels, {n});
  ds.channels = 2;
  ds.rows = ds.cols = 3;
  ds.name = "synthetic";
  datasets::LoaderOptions opt{.batch_size = 8, .seed = 5, .image_shape = true, .crop_padding = 1,
                              .horizontal_flip = true};
  datasets::DataLoader whole(ds, opt);
  for (int world : {2, 3, 5}) {
    std::vector<datasets::DataLoader> parts;
    for (int r = 0; r < world; ++r) {
      auto o = opt;
      o.rank = r;
      o.world_size = world;
      parts.emplace_back(ds, o);
    }
    for (int64_t epoch : {0, 3}) {
      whole.set_epoch(epoch);
      for (auto& p : parts) p.set_epoch(epoch);
      REQUIRE(parts[0].num_batches() == whole.num_batches());
      for (int64_t b = 0; b < whole.num_batches(); ++b) {
        auto full_batch = whole.batch(b);
        std::vector<Tensor> xs, ys;
        for (auto& p : parts) {
          CHECK(p.global_batch_size(b) == whole.global_batch_size(b));
          auto part = p.batch(b);
          if (part.y.numel() == 0) continue;
          xs.push_back(part.x);
          ys.push_back(part.y);
        }
        CHECK(concat(xs, 0).to_vector() == full_batch.x.to_vector());
        CHECK(concat(ys, 0).to_vector<int64_t>() == full_batch.y.to_vector<int64_t>());
      }
    }
  }
}

TEST_CASE("a world of one: collectives are the identity, DataParallel changes nothing") {
  if (dist::using_mpi()) return;  // (this suite runs without mpirun)
  dist::init();
  CHECK(dist::rank() == 0);
  CHECK(dist::world_size() == 1);
  Tensor t = from_vector(std::vector<double>{1.5, -2.0}, {2});
  dist::all_reduce(t, dist::ReduceOp::Sum);
  dist::all_reduce(t, dist::ReduceOp::Avg);
  dist::broadcast({t}, 0);
  CHECK(t.to_vector() == std::vector<double>{1.5, -2.0});
  CHECK(dist::all_reduce_sum({3.0, 4.0}) == std::vector<double>{3.0, 4.0});
  dist::check_same("flags", "seed=1\n");
  CHECK_THROWS_WITH_AS(dist::broadcast({t}, 1), doctest::Contains("root 1 outside the world of 1"), Error);

  // sum_over_ranks is y = x with the identity gradient.
  Tensor x = from_vector(std::vector<double>{1.0, 2.0}, {2}).requires_grad_();
  Tensor y = dist::sum_over_ranks(x);
  CHECK(y.to_vector() == x.to_vector());
  sum(mul(y, y)).backward();
  CHECK(x.grad().to_vector() == std::vector<double>{2.0, 4.0});

  // DataParallel over ResNet-20 with synchronised BatchNorm: the same gradients and running statistics as
  // without it (in a world of one it installs nothing).
  Generator g1(7), g2(7), gx(8);
  auto m1 = models::resnet20(10, g1), m2 = models::resnet20(10, g2);
  dist::DataParallel dp(*m2, {.sync_batch_norm = true});
  CHECK(dp.num_buckets() == 0);
  dp.set_batch_share(3, 4);
  Tensor images = randn({4, 3, 8, 8}, gx);
  Tensor labels = from_vector(std::vector<int64_t>{1, 2, 3, 4}, {4});
  cross_entropy((*m1)(images), labels).backward();
  cross_entropy((*m2)(images), labels).backward();
  auto p1 = m1->named_parameters(), p2 = m2->named_parameters();
  for (size_t i = 0; i < p1.size(); ++i) CHECK(p1[i].second.grad().to_vector() == p2[i].second.grad().to_vector());
  CHECK(m1->bn1->running_var.to_vector() == m2->bn1->running_var.to_vector());
}

TEST_CASE("sync_batch_norm computes BatchNorm2d's training forward, backward and running statistics") {
  // In a world of one the synchronised statistics are the batch's own: the composite must match the fused op.
  Generator gen(11);
  nn::BatchNorm2d a(3, 1e-5, 0.1, DType::F64), b(3, 1e-5, 0.1, DType::F64);
  nn::init::uniform_(a.weight, 0.5, 1.5, gen);
  b.weight.copy_(a.weight);
  Tensor x = randn({4, 3, 2, 5}, gen, DType::F64);
  Tensor xa = x.clone().requires_grad_(), xb = x.clone().requires_grad_();
  Tensor w = randn({4, 3, 2, 5}, gen, DType::F64);
  Tensor ya = a(xa);
  b.training_forward = dist::sync_batch_norm;
  Tensor yb = b(xb);
  sum(mul(ya, w)).backward();
  sum(mul(yb, w)).backward();
  auto close = [](const Tensor& p, const Tensor& q) {
    auto u = p.to_vector(), v = q.to_vector();
    double worst = 0;
    for (size_t i = 0; i < u.size(); ++i) worst = std::max(worst, std::abs(u[i] - v[i]));
    return worst;
  };
  CHECK(close(ya, yb) < 1e-12);
  CHECK(close(xa.grad(), xb.grad()) < 1e-12);
  CHECK(close(a.weight.grad(), b.weight.grad()) < 1e-12);
  CHECK(close(a.bias.grad(), b.bias.grad()) < 1e-12);
  CHECK(close(a.running_mean, b.running_mean) < 1e-14);
  CHECK(close(a.running_var, b.running_var) < 1e-14);
  CHECK(b.num_batches_tracked.item() == 1);
}
