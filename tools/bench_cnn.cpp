// The CIFAR models' training step (zero_grad, forward, cross-entropy, backward, SGD-momentum step with weight
// decay 5e-4, as ../shared/bench/cnn_step.py) on random 32x32 images, and the peak resident memory of the
// process; with --layers, forward and forward+backward of every distinct convolution of a model, in GFLOP/s
// (and the time of each phase: forward, data gradient, weight gradient, each backward timed with the other off),
// and of its batch norms (+ residual + ReLU) fused and apart. --unfused also times each model's step with
// batch norm, add and ReLU as separate ops (BatchNorm2d::fuse = false), in the same process, blocks of the two
// interleaved. One JSON line like bench_mlp's.
//
// --device cuda (with --tf32 for TF32 tensor cores): the model is built on the CPU and moved, the batch lives on
// the GPU, each step ends with a synchronize (the clock stops after the GPU's work), and the result adds the
// convolutions' FLOPs per image (the --layers table's count: 2 k c r^2 out^2 per convolution forward, x3 for
// forward + backward), the TFLOP/s they make, that as a fraction of the H200's dense peak (FP32 67 TFLOP/s, TF32
// 495 TFLOP/s: NVIDIA's H200 datasheet, SXM), and the caching allocator's peak bytes in use.
//
//   bench_cnn [--threads 2] [--model resnet20] [--batch 128] [--repeats 3] [--unfused]
//   bench_cnn --device cuda --model resnet34 densenet121 [--tf32]
//   bench_cnn --layers resnet34 --batch 32
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <iostream>
#include <tuple>

#include "bench.hpp"
#include "tapegrad/models/densenet.hpp"
#include "tapegrad/models/resnet.hpp"
#include "tapegrad/tapegrad.hpp"

namespace tg = tapegrad;

namespace {

double peak_rss_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;  // KiB on Linux
}

// A convolution of a CIFAR model: channels in and out, kernel, stride, input side, how many times it occurs.
struct ConvShape {
  int64_t c, k, r, stride, side, count;
};

// The convolutions of kuangliu's ResNet-34 (3x3 stem, [3,4,6,3] basic blocks, 1x1 projection shortcuts),
// of the CIFAR ResNet-20 (16-32-64, [3,3,3], zero-padded shortcuts) and of kuangliu's DenseNet-121 (3x3 stem to
// 64, bottlenecks 1x1 to 128 then 3x3 to 32 in blocks [6,12,24,16], 1x1 transitions halving the channels) on
// 32x32 inputs.
std::vector<ConvShape> conv_shapes(const std::string& model) {
  if (model == "densenet121") {
    std::vector<ConvShape> s{{3, 64, 3, 1, 32, 1}};
    int64_t planes = 64, side = 32;
    const int64_t blocks[] = {6, 12, 24, 16};
    for (int b = 0; b < 4; ++b) {
      for (int64_t i = 0; i < blocks[b]; ++i, planes += 32) s.push_back({planes, 128, 1, 1, side, 1});
      s.push_back({128, 32, 3, 1, side, blocks[b]});
      if (b == 3) break;
      s.push_back({planes, planes / 2, 1, 1, side, 1});  // the transition's conv, then a 2x2 average pool
      planes /= 2;
      side /= 2;
    }
    return s;
  }
  if (model == "resnet34")
    return {{3, 64, 3, 1, 32, 1},     {64, 64, 3, 1, 32, 6},     {64, 128, 3, 2, 32, 1},  {128, 128, 3, 1, 16, 7},
            {64, 128, 1, 2, 32, 1},   {128, 256, 3, 2, 16, 1},   {256, 256, 3, 1, 8, 11}, {128, 256, 1, 2, 16, 1},
            {256, 512, 3, 2, 8, 1},   {512, 512, 3, 1, 4, 5},    {256, 512, 1, 2, 8, 1}};
  if (model == "resnet20")
    return {{3, 16, 3, 1, 32, 1}, {16, 16, 3, 1, 32, 6}, {16, 32, 3, 2, 32, 1}, {32, 32, 3, 1, 16, 5},
            {32, 64, 3, 2, 16, 1}, {64, 64, 3, 1, 8, 5}};
  TG_FAIL("bench_cnn --layers: unknown model '", model, "' (resnet20, resnet34, densenet121)");
}

// FLOPs of one image's training step in the convolutions (forward, backward data, backward weights).
double train_flop_per_image(const std::string& model) {
  double flop = 0;
  for (const ConvShape& s : conv_shapes(model)) {
    const int64_t out = (s.side + 2 * (s.r / 2) - s.r) / s.stride + 1;
    flop += static_cast<double>(s.count) * 2.0 * static_cast<double>(s.k * out * out * s.c * s.r * s.r);
  }
  return 3 * flop;
}

// The FLOPs those convolutions execute on the CPU at batch `batch` (Winograd's fewer where it runs), per image;
// the stem has no data gradient (the images do not require one).
double executed_flop_per_image(const std::string& model, int64_t batch) {
  double flop = 0;
  for (const ConvShape& s : conv_shapes(model)) {
    const tg::ConvFlops f = tg::cpu_conv_flops({batch, s.c, s.side, s.side}, {s.k, s.c, s.r, s.r}, s.stride, s.r / 2);
    flop += static_cast<double>(s.count) * (f.forward + (s.c == 3 ? 0.0 : f.data) + f.weight);
  }
  return flop / static_cast<double>(batch);
}

// The H200's dense peak for f32 matrix work, TFLOP/s (NVIDIA H200 datasheet, SXM): FP32 67, TF32 tensor cores 495.
double h200_peak_tflops(bool tf32) { return tf32 ? 495.0 : 67.0; }

bench::json bench_layers(const std::string& model, int64_t batch, int repeats, const std::string& only) {
  bench::json results = bench::json::array();
  tg::Generator gen(0);
  double total_fwd = 0, total_train = 0, flop_fwd = 0, flop_executed = 0;
  for (const ConvShape& s : conv_shapes(model)) {
    const int64_t pad = s.r / 2, out = (s.side + 2 * pad - s.r) / s.stride + 1;
    const std::string shape = std::to_string(s.c) + "x" + std::to_string(s.k) + "_k" + std::to_string(s.r) + "s" +
                              std::to_string(s.stride) + "_" + std::to_string(s.side) + "px";
    if (shape.find(only) == std::string::npos) continue;
    const double flop = 2.0 * batch * s.k * out * out * s.c * s.r * s.r;  // one pass
    tg::Tensor x = tg::randn({batch, s.c, s.side, s.side}, gen).requires_grad_(true);
    tg::Tensor w = tg::randn({s.k, s.c, s.r, s.r}, gen).requires_grad_(true);
    tg::Tensor gy = tg::randn({batch, s.k, out, out}, gen);
    auto fwd = [&] {
      tg::NoGradGuard no_grad;
      tg::conv2d(x, w, tg::Tensor(), s.stride, pad);
    };
    auto train = [&] {  // forward, backward data, backward weights
      x.zero_grad();
      w.zero_grad();
      tg::conv2d(x, w, tg::Tensor(), s.stride, pad).backward(gy);
    };
    auto one_grad = [&](tg::Tensor& leaf, tg::Tensor& other) {  // forward and the backward pass of one input
      leaf.zero_grad();
      other.requires_grad_(false);
      tg::conv2d(x, w, tg::Tensor(), s.stride, pad).backward(gy);
      other.requires_grad_(true);
    };
    auto data = [&] { one_grad(x, w); };
    auto weight = [&] { one_grad(w, x); };
    const auto f = bench::time_blocks(fwd, repeats, 2, 0.2), t = bench::time_blocks(train, repeats, 2, 0.2);
    const auto fd = bench::time_blocks(data, repeats, 2, 0.2), fw = bench::time_blocks(weight, repeats, 2, 0.2);
    // The phases: forward, data gradient (forward + it, less forward), weight gradient (likewise), in ms.
    const double ms_f = 1e3 * bench::median(f), ms_d = 1e3 * bench::median(fd) - ms_f,
                 ms_w = 1e3 * bench::median(fw) - ms_f;
    const std::string id = model + "_conv_" + shape + "_b" + std::to_string(batch);
    bench::json r = bench::summarize(id, t, {{"train_GFLOP_per_s", 3 * flop / 1e9}},
                                     {{"model", model}, {"c", s.c}, {"k", s.k}, {"kernel", s.r}, {"stride", s.stride},
                                      {"side", s.side}, {"batch", batch}, {"count", s.count}});
    r["fwd_GFLOP_per_s"] = {{"median", flop / 1e9 / bench::median(f)}};
    r["phase_ms"] = {{"forward", ms_f}, {"data", ms_d}, {"weight", ms_w}};
    const tg::ConvFlops e = tg::cpu_conv_flops(x.shape(), w.shape(), s.stride, pad);
    r["executed_GFLOP"] = {{"forward", e.forward / 1e9}, {"data", e.data / 1e9}, {"weight", e.weight / 1e9}};
    r["executed_train_GFLOP_per_s"] = {{"median", (e.forward + e.data + e.weight) / 1e9 / bench::median(t)}};
    results.push_back(r);
    total_fwd += s.count * bench::median(f);
    total_train += s.count * bench::median(t);
    flop_fwd += s.count * flop;
    flop_executed += s.count * (e.forward + e.data + e.weight);
    bench::progress(id + " (x" + std::to_string(s.count) + "): forward " +
                    std::to_string(int(flop / 1e9 / bench::median(f))) + " GFLOP/s, forward+backward " +
                    std::to_string(int(3 * flop / 1e9 / bench::median(t))) + " GFLOP/s; ms forward " +
                    std::to_string(ms_f) + ", data " + std::to_string(ms_d) + ", weight " + std::to_string(ms_w));
  }
  // The batch norms at the end of each block: relu(bn(x) + residual), x [batch, k, side, side], forward and
  // backward, as the fused op and as batch_norm, add, relu (the rest of a step's batch norms are like these).
  std::vector<std::pair<int64_t, int64_t>> planes;  // (channels, side) of every distinct convolution output
  for (const ConvShape& s : conv_shapes(model)) {
    std::pair<int64_t, int64_t> p{s.k, (s.side + 2 * (s.r / 2) - s.r) / s.stride + 1};
    if (std::find(planes.begin(), planes.end(), p) == planes.end()) planes.push_back(p);
  }
  for (auto [k, side] : planes) {
    const std::string shape = std::to_string(k) + "ch_" + std::to_string(side) + "px";
    if (shape.find(only) == std::string::npos) continue;
    tg::Tensor x = tg::randn({batch, k, side, side}, gen).requires_grad_(true);
    tg::Tensor r = tg::randn({batch, k, side, side}, gen).requires_grad_(true);
    tg::Tensor gy = tg::randn({batch, k, side, side}, gen);
    tg::nn::BatchNorm2d bn(k);
    double secs[2] = {0, 0};
    for (int fuse : {0, 1}) {
      auto step = [&] {
        tg::nn::BatchNorm2d::fuse = fuse;
        x.zero_grad();
        r.zero_grad();
        bn.zero_grad();
        bn.forward_relu(x, r).backward(gy);
      };
      const auto t = bench::time_blocks(step, repeats, 2, 0.2);
      const std::string id = model + "_bn_relu_add_" + shape + "_b" + std::to_string(batch) + (fuse ? "" : "_unfused");
      results.push_back(bench::summarize(id, t, {{"steps_per_s", 1.0}},
                                         {{"model", model}, {"channels", k}, {"side", side}, {"batch", batch},
                                          {"fused", bool(fuse)}}));
      secs[fuse] = bench::median(t);
    }
    tg::nn::BatchNorm2d::fuse = true;
    bench::progress(model + "_bn_relu_add_" + shape + "_b" + std::to_string(batch) + ": fused " +
                    std::to_string(secs[1] * 1e3) + " ms, apart " + std::to_string(secs[0] * 1e3) +
                    " ms (forward + backward)");
  }
  if (total_train > 0)
    bench::progress(model + " all convolutions, b" + std::to_string(batch) + ": forward " +
                    std::to_string(int(flop_fwd / 1e9 / total_fwd)) + " GFLOP/s, forward+backward " +
                    std::to_string(int(3 * flop_fwd / 1e9 / total_train)) + " GFLOP/s counted as direct, " +
                    std::to_string(int(flop_executed / 1e9 / total_train)) + " GFLOP/s executed (" +
                    std::to_string(total_train) + " s per step in convolutions)");
  if (total_train > 0)
    results.push_back({{"name", model + "_all_convs_b" + std::to_string(batch)},
                       {"train_GFLOP_per_s", {{"median", 3 * flop_fwd / 1e9 / total_train}}},
                       {"executed_train_GFLOP_per_s", {{"median", flop_executed / 1e9 / total_train}}},
                       {"sec_per_step", total_train}});
  return results;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tapegrad CNN step benchmark"};
  int threads = 2, repeats = 3, batch = 128, warmup = 2;
  std::vector<std::string> models{"resnet20"};
  std::string layers, only, device_name = "cpu";
  bool tf32 = false, deterministic = false;
  app.add_option("--threads", threads, "OpenMP threads");
  app.add_option("--device", device_name, "cpu, cuda or test (the training step; --layers runs on the CPU)");
  app.add_flag("--tf32", tf32, "CUDA: TF32 tensor cores for f32 matrix products");
  app.add_flag("--deterministic", deterministic, "CUDA: deterministic cuDNN algorithms only");
  app.add_option("--model", models, "resnet20, resnet34, densenet121");
  app.add_option("--repeats", repeats, "timed blocks");
  app.add_option("--warmup", warmup, "untimed steps before them (besides the one that sizes the blocks)");
  app.add_option("--batch", batch, "batch size");
  app.add_option("--layers", layers, "time each convolution of this model (resnet20, resnet34, densenet121) instead");
  app.add_option("--only", only, "with --layers: the shapes whose name holds this (\"512x512\")");
  bool unfused = false;
  app.add_flag("--unfused", unfused, "also time the step with batch norm, add and ReLU apart (not fused)");
  CLI11_PARSE(app, argc, argv);
  try {
    bench::start(threads);
    const tg::Device dev = tg::device_from_name(device_name);
    TG_CHECK(dev != tg::Device::CUDA || tg::cuda_available(), "bench_cnn --device cuda: no CUDA device");
    tg::set_allow_tf32(tf32);
    tg::set_deterministic(deterministic);
    bench::json results = bench::json::array();
    if (!layers.empty()) {
      results = bench_layers(layers, batch, repeats, only);
      std::cout << bench::json{{"bench", "cnn_layers"}, {"meta", bench::meta()}, {"results", results}}.dump() << "\n";
      return 0;
    }
    for (const auto& name : models) {
      tg::Generator gen(0);
      tg::reset_peak_memory(dev);
      std::shared_ptr<tg::nn::Layer> model;
      if (name == "resnet20") model = tg::models::resnet20(10, gen);
      else if (name == "resnet34") model = tg::models::resnet34(10, gen);
      else if (name == "densenet121") model = tg::models::densenet121(10, gen);
      else TG_FAIL("bench_cnn: unknown model '", name, "' (resnet20, resnet34, densenet121)");
      model->to(dev);  // built on the CPU: the same weights on every device
      tg::Tensor x = tg::randn({batch, 3, 32, 32}, gen).to(dev);
      tg::Tensor y = tg::randint(10, {batch}, gen).to(dev);
      auto opt = tg::optim::make("sgd:lr=0.1,momentum=0.9,weight_decay=5e-4", model->parameters());
      auto step = [&] {
        opt->zero_grad();
        tg::cross_entropy(model->forward(x), y).backward();
        opt->step();
        tg::synchronize(dev);  // the clock stops after the device's work
      };
      std::string id = name + "_train_b" + std::to_string(batch);
      if (dev != tg::Device::CPU) id += "_" + device_name + (tf32 ? "_tf32" : "");
      if (unfused) {  // blocks of the two variants alternate, so that both see the same machine
        std::vector<double> secs[2];
        for (int rep = 0; rep < repeats; ++rep)
          for (int fuse : {1, 0}) {
            tg::nn::BatchNorm2d::fuse = fuse;
            auto t = bench::time_blocks(step, 1, rep == 0 ? 1 : 0, 0.0);  // + one untimed step per call
            secs[fuse].push_back(t[0]);
          }
        tg::nn::BatchNorm2d::fuse = true;
        for (int fuse : {1, 0}) {
          bench::json r = bench::summarize(id + (fuse ? "" : "_unfused"), secs[fuse],
                                           {{"steps_per_s", 1.0}, {"images_per_s", double(batch)}},
                                           {{"model", name}, {"batch", batch}, {"optim", "sgdm"}, {"fused", bool(fuse)}});
          results.push_back(r);
        }
        bench::progress(id + ": fused " + std::to_string(bench::median(secs[1])) + " s/step, unfused " +
                        std::to_string(bench::median(secs[0])) + " s/step, ratio unfused/fused " +
                        std::to_string(bench::median(secs[0]) / bench::median(secs[1])));
        continue;
      }
      auto secs = bench::time_blocks(step, repeats, warmup, 0.0);
      const double flop = train_flop_per_image(name) * static_cast<double>(batch);
      bench::json r = bench::summarize(id, secs,
                                       {{"steps_per_s", 1.0}, {"images_per_s", double(batch)},
                                        {"conv_TFLOP_per_s", flop / 1e12}},
                                       {{"model", name}, {"batch", batch}, {"optim", "sgdm"}, {"device", device_name},
                                        {"tf32", tf32}, {"deterministic", deterministic}});
      r["conv_GFLOP_per_image"] = train_flop_per_image(name) / 1e9;
      if (dev != tg::Device::CUDA) r["conv_executed_GFLOP_per_image"] = executed_flop_per_image(name, batch) / 1e9;
      r["peak_rss_MiB"] = peak_rss_mib();  // of the process so far: run one model per process to compare
      r["peak_tensor_MiB"] = static_cast<double>(tg::memory_use(dev).peak) / (1 << 20);  // the most in tensors at once
      std::string extra = dev == tg::Device::CUDA ? "" : ", peak in tensors " + std::to_string(int(r["peak_tensor_MiB"].get<double>())) + " MiB";
      if (dev == tg::Device::CUDA) {
        const double tflops = flop / 1e12 / bench::median(secs), peak = h200_peak_tflops(tf32);
        r["peak_fraction"] = {{"median", tflops / peak},
                              {"peak_TFLOP_per_s", peak},
                              {"peak_source",
                               "NVIDIA H200 datasheet (SXM), dense " + std::string(tf32 ? "TF32" : "FP32")}};
        r["peak_device_MiB"] = r["peak_tensor_MiB"];
        extra = ", " + std::to_string(tflops) + " TFLOP/s in convolutions (" + std::to_string(100 * tflops / peak) +
                "% of the H200's " + (tf32 ? "TF32" : "FP32") + " peak), peak GPU memory " +
                std::to_string(int(r["peak_device_MiB"].get<double>())) + " MiB";
      }
      results.push_back(r);
      bench::progress(id + ": " + std::to_string(int(batch / bench::median(secs))) + " images/s, peak RSS " +
                      std::to_string(int(peak_rss_mib())) + " MiB" + extra);
    }
    std::cout << bench::json{{"bench", "cnn_step"}, {"meta", bench::meta()}, {"results", results}}.dump() << "\n";
  } catch (const tg::Error& e) {
    std::cerr << "bench_cnn: " << e.what() << "\n";
    return 2;
  }
}
