// The word-level LSTM language model's training step, as ../shared/bench/lstm_step.py (PyTorch) defines it:
// vocabulary 10k, batch 20, BPTT 35 (700 tokens a step), Embedding -> LSTM (E = H, 1-3 layers) -> Linear(H, V),
// cross-entropy over the 700 tokens, backward, clip_grad_norm 0.25, SGD lr 1 momentum 0.9; the hidden state is
// carried from step to step, detached. Same names and units as the anchor, so tools/bench puts them side by side.
//
//   bench_lstm [--threads 2] [--size small medium] [--layers 1 2 3] [--repeats 5]
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
  app.add_option("--threads", threads, "OpenMP threads");
  app.add_option("--size", sizes, "small (E = H = 200), medium (650)");
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
    const std::map<std::string, int64_t> size_of{{"small", 200}, {"medium", 650}};
    bench::json results = bench::json::array();
    const int64_t tokens = batch * bptt;
    for (const std::string& size : sizes) {
      TG_CHECK(size_of.count(size), "bench_lstm: unknown size '", size, "' (small, medium)");
      const int64_t E = size_of.at(size), H = E;
      for (int64_t L : layers) {
        tg::Generator gen(0);
        tg::models::LSTMLanguageModel model({.vocab = vocab, .emb = E, .hidden = H, .layers = L}, gen);
        auto opt = tg::optim::make("sgd:lr=1,momentum=0.9", model.parameters());
        const tg::Tensor data = tg::randint(vocab, {bptt + 1, batch}, gen);
        const tg::Tensor input = data.slice(0, 0, bptt), target = data.slice(0, 1, bptt + 1).reshape({tokens});
        tg::nn::LSTMState state{tg::zeros({L, batch, H}), tg::zeros({L, batch, H})};
        auto step = [&] {
          opt->zero_grad();
          tg::models::LMOutput out = model(input, state);
          tg::cross_entropy(out.logits, target).backward();
          if (clip > 0) tg::nn::clip_grad_norm(model.parameters(), clip);
          opt->step();
          state = {out.state.h.detach(), out.state.c.detach()};
        };
        const auto secs = bench::time_blocks(step, repeats, warmup);
        // matmul FLOPs as the anchor counts them: LSTM 4H (in + H) per token per layer, decoder H V; x 3 for backward
        int64_t mac = H * vocab;
        for (int64_t l = 0; l < L; ++l) mac += 4 * H * ((l == 0 ? E : H) + H);
        const double gflop = 3.0 * 2.0 * static_cast<double>(mac) * static_cast<double>(tokens) / 1e9;
        const std::string id = "lstm_" + size + "_L" + std::to_string(L) + "_train";
        results.push_back(bench::summarize(
            id, secs, {{"steps_per_s", 1.0}, {"tokens_per_s", double(tokens)}, {"approx_matmul_gflops", gflop}},
            {{"size", size}, {"emb", E}, {"hidden", H}, {"layers", L}, {"vocab", vocab}, {"batch", batch},
             {"bptt", bptt}, {"dropout", 0.0}, {"optim", "sgdm"}, {"clip", clip},
             {"params", model.num_parameters()}}));
        bench::progress(id + ": " + std::to_string(int(tokens / bench::median(secs))) + " tok/s (" +
                        bench::fmt_ms(bench::median(secs)) + " ms/step) noise=" + bench::last_noise().dump());
      }
    }
    std::cout << bench::json{{"bench", "lstm_step"}, {"meta", bench::meta()}, {"results", results}}.dump() << "\n";
  } catch (const tg::Error& e) {
    std::cerr << "bench_lstm: " << e.what() << "\n";
    return 2;
  }
}
