// The word-level LSTM language model's training step, as ../shared/bench/lstm_step.py (PyTorch) defines it:
// vocabulary 10k, batch 20, BPTT 35 (700 tokens a step), Embedding -> LSTM (E = H, 1-3 layers) -> Linear(H, V),
// cross-entropy over the 700 tokens, backward, clip_grad_norm 0.25, SGD lr 1 momentum 0.9; the hidden state is
// carried from step to step, detached. Same names and units as the anchor, so tools/bench puts them side by side.
//
// --device cuda (with --tf32): the model is built on the CPU and moved, each step ends with a synchronize (the
// clock stops after the GPU's work); the result adds the matmul TFLOP/s (the anchor's count below) as a fraction of
// the H200's dense peak (FP32 67 TFLOP/s, TF32 495 TFLOP/s: NVIDIA's H200 datasheet, SXM) and the caching
// allocator's peak bytes in use. Size large is ptb --paper's model (embedding 400, hidden 1150).
//
//   bench_lstm [--threads 2] [--size small medium] [--layers 1 2 3] [--repeats 5]
//   bench_lstm --device cuda --size medium large --layers 2 [--tf32]
#include <CLI/CLI.hpp>
#include <iostream>

#include "bench.hpp"
#include "tapegrad/models/lstm_lm.hpp"
#include "tapegrad/tapegrad.hpp"

namespace tg = tapegrad;

int main(int argc, char** argv) {
  CLI::App app{"tapegrad LSTM language-model step benchmark"};
  int threads = 2, repeats = 5, warmup = 3;
  int64_t vocab = 10000, batch = 20, bptt = 35;
  double clip = 0.25;
  std::vector<std::string> sizes{"small", "medium"};
  std::vector<int64_t> layers{1, 2, 3};
  std::string device_name = "cpu";
  bool tf32 = false, deterministic = false;
  app.add_option("--threads", threads, "OpenMP threads");
  app.add_option("--device", device_name, "cpu, cuda or test");
  app.add_flag("--tf32", tf32, "CUDA: TF32 tensor cores for f32 matrix products");
  app.add_flag("--deterministic", deterministic, "CUDA: deterministic cuDNN algorithms only");
  app.add_option("--size", sizes, "small (E = H = 200), medium (650), large (E 400, H 1150: ptb --paper)");
  app.add_option("--layers", layers, "LSTM layers");
  app.add_option("--repeats", repeats, "timed blocks");
  app.add_option("--warmup", warmup, "untimed steps first");
  app.add_option("--vocab", vocab, "vocabulary");
  app.add_option("--batch", batch, "batch size");
  app.add_option("--bptt", bptt, "BPTT length");
  app.add_option("--clip", clip, "gradient clipping (0: none)");
  CLI11_PARSE(app, argc, argv);
  try {
    bench::start(threads);
    const tg::Device dev = tg::device_from_name(device_name);
    TG_CHECK(dev != tg::Device::CUDA || tg::cuda_available(), "bench_lstm --device cuda: no CUDA device");
    tg::set_allow_tf32(tf32);
    tg::set_deterministic(deterministic);
    const std::map<std::string, std::pair<int64_t, int64_t>> size_of{
        {"small", {200, 200}}, {"medium", {650, 650}}, {"large", {400, 1150}}};  // (E, H)
    bench::json results = bench::json::array();
    const int64_t tokens = batch * bptt;
    for (const std::string& size : sizes) {
      TG_CHECK(size_of.count(size), "bench_lstm: unknown size '", size, "' (small, medium, large)");
      const auto [E, H] = size_of.at(size);
      for (int64_t L : layers) {
        tg::Generator gen(0);
        tg::reset_peak_memory(dev);
        tg::models::LSTMLanguageModel model({.vocab = vocab, .emb = E, .hidden = H, .layers = L}, gen);
        model.to(dev);  // built on the CPU: the same weights on every device
        auto opt = tg::optim::make("sgd:lr=1,momentum=0.9", model.parameters());
        const tg::Tensor data = tg::randint(vocab, {bptt + 1, batch}, gen);
        const tg::Tensor input = data.slice(0, 0, bptt).to(dev),
                         target = data.slice(0, 1, bptt + 1).reshape({tokens}).to(dev);
        tg::nn::LSTMState state{tg::zeros({L, batch, H}, dev), tg::zeros({L, batch, H}, dev)};
        auto step = [&] {
          opt->zero_grad();
          tg::models::LMOutput out = model(input, state);
          tg::cross_entropy(out.logits, target).backward();
          if (clip > 0) tg::nn::clip_grad_norm(model.parameters(), clip);
          opt->step();
          state = {out.state.h.detach(), out.state.c.detach()};
          tg::synchronize(dev);  // the clock stops after the device's work
        };
        const auto secs = bench::time_blocks(step, repeats, warmup);
        // matmul FLOPs as the anchor counts them: LSTM 4H (in + H) per token per layer, decoder H V; x 3 for backward
        int64_t mac = H * vocab;
        for (int64_t l = 0; l < L; ++l) mac += 4 * H * ((l == 0 ? E : H) + H);
        const double gflop = 3.0 * 2.0 * static_cast<double>(mac) * static_cast<double>(tokens) / 1e9;
        std::string id = "lstm_" + size + "_L" + std::to_string(L) + "_train";
        if (dev != tg::Device::CPU) id += "_" + device_name + (tf32 ? "_tf32" : "");
        bench::json r = bench::summarize(
            id, secs, {{"steps_per_s", 1.0}, {"tokens_per_s", double(tokens)}, {"approx_matmul_gflops", gflop}},
            {{"size", size}, {"emb", E}, {"hidden", H}, {"layers", L}, {"vocab", vocab}, {"batch", batch},
             {"bptt", bptt}, {"dropout", 0.0}, {"optim", "sgdm"}, {"clip", clip},
             {"params", model.num_parameters()}, {"device", device_name}, {"tf32", tf32},
             {"deterministic", deterministic}});
        std::string extra;
        if (dev == tg::Device::CUDA) {
          const double tflops = gflop / 1e3 / bench::median(secs), peak = tf32 ? 495.0 : 67.0;
          r["peak_fraction"] = {{"median", tflops / peak}, {"peak_TFLOP_per_s", peak},
                                {"peak_source", std::string("NVIDIA H200 datasheet (SXM), dense ") +
                                                    (tf32 ? "TF32" : "FP32")}};
          r["peak_device_MiB"] = static_cast<double>(tg::memory_use(dev).peak) / (1 << 20);
          extra = ", " + std::to_string(tflops) + " TFLOP/s in matmuls (" + std::to_string(100 * tflops / peak) +
                  "% of peak), peak GPU memory " + std::to_string(int(r["peak_device_MiB"].get<double>())) + " MiB";
        }
        results.push_back(r);
        bench::progress(id + ": " + std::to_string(int(tokens / bench::median(secs))) + " tok/s (" +
                        bench::fmt_ms(bench::median(secs)) + " ms/step)" + extra +
                        " noise=" + bench::last_noise().dump());
      }
    }
    std::cout << bench::json{{"bench", "lstm_step"}, {"meta", bench::meta()}, {"results", results}}.dump() << "\n";
  } catch (const tg::Error& e) {
    std::cerr << "bench_lstm: " << e.what() << "\n";
    return 2;
  }
}
