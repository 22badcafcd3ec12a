// ptb: the AdaBound paper's language-model experiment (Luo et al., ICLR 2019, section 5, figure 5): 1-, 2- and
// 3-layer LSTM language models on Penn Treebank, trained with each optimizer in turn from the same initial
// weights on the same data, perplexity on the validation and test text after every epoch.
//
// The paper's code and hyperparameters for this experiment were never released. The model is that of
// PyTorch's word_language_model example (tapegrad/models/lstm_lm.hpp): Embedding -> dropout -> LSTM (dropout
// between layers) -> dropout -> Linear(H, V), truncated BPTT with the hidden state carried (detached) from
// segment to segment and reset at each epoch, gradient norm clipped, lr divided by 10 at the milestones.
//
// Learning rates (defaults; every one is a flag: --optim "adam:lr=2e-3"):
//   SGD       lr 20 (--paper: 30), no momentum: the SGD scale of LSTM language models (PyTorch's example: 20;
//             the public re-run: 30)
//   AdaGrad   lr 0.01 (the paper's code for its other experiments)
//   Adam, AMSGrad          lr 1e-3 (--paper: 1e-2, the re-run's rate for the adaptive methods)
//   AdaBound, AMSBound     lr 1e-3 (--paper: 1e-2), final_lr = SGD's lr (20; --paper 30), gamma 1e-3: the
//                          bounds converge to the SGD scale, as the re-run sets them
// --paper also takes the re-run's sizes and schedule: embedding 400, hidden 1150, BPTT 70, dropout 0.4,
// clip 0.25, weight decay 1.2e-6, 200 epochs, lr / 10 after epochs 100 and 145. The re-run's AWD-LSTM also
// uses weight-drop (DropConnect on the recurrent weights), embedding dropout and variational (locked) masks;
// this model has none of those, so its perplexities are not expected to reach the re-run's.
//
// Data: Penn Treebank from --data DIR (ptb.train.txt, ptb.valid.txt, ptb.test.txt). Without it, the King James
// Bible in the same layout (datasets/fetch kjv, --kjv DIR), said loudly on the terminal and in the results.
// The CPU default trains on the first 500,000 tokens (--train-tokens) for 2 epochs: about ten minutes for the
// six optimizers at one depth on two cores.
//
// Output in --out (default results/ptb/L<layers>, --paper: results/ptb-paper/L<layers>): per optimizer a JSON
// line per epoch (train loss and perplexity, valid and test perplexity, lr, seconds, tokens/s) and a checkpoint
// rewritten after every epoch (--resume continues bit for bit with the same --threads), summary.json and
// summary.md (the table of perplexities). The dropout masks of epoch e come from a generator seeded with
// (seed, e), the data order is fixed: an epoch's work is a function of the checkpoint alone.
#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "experiment.hpp"
#include "tapegrad/datasets/loader.hpp"
#include "tapegrad/datasets/text.hpp"
#include "tapegrad/dist.hpp"
#include "tapegrad/models/lstm_lm.hpp"
#include "tapegrad/nn/utils.hpp"
#include "tapegrad/ops.hpp"

namespace fs = std::filesystem;
using namespace tapegrad;
using namespace tapegrad::tools;

namespace {

// The first line of the README that datasets/kjv_to_ptb.py writes beside a converted KJV.
const char* kKjvStamp = "The King James Bible in the Penn Treebank layout (datasets/kjv_to_ptb.py, version 1)";

struct Config : CommonConfig, DeviceConfig {
  int64_t layers = 2;
  int64_t emb = 200, hidden = 200;
  int64_t bptt = 35, batch = 20, eval_batch = 10;
  double dropout = 0.2;
  double clip = 0.25;
  bool tie = false;
  bool paper = false;
  std::string data, kjv, dataset = "auto";
  // 0: all. The CPU default trains on the first 500,000 tokens (about two thirds of the KJV corpus, half of
  // Penn Treebank's) so that six optimizers take about ten minutes per depth on two cores; --paper: all.
  int64_t train_tokens = 500000, eval_tokens = 0;
};

std::string default_kjv_dir() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  const fs::path cache = xdg && *xdg ? fs::path(xdg) : fs::path(home && *home ? home : ".") / ".cache";
  return (cache / "tapegrad" / "kjv").string();
}

bool is_kjv_dir(const std::string& dir) {
  std::ifstream in(fs::path(dir) / "README");
  std::string first;
  std::getline(in, first);
  return first == kKjvStamp;
}

// The six with the learning rates documented at the top; weight decay appended for --paper.
std::vector<RunSpec> lm_runs(bool paper) {
  const std::string sgd = paper ? "30" : "20", ada = paper ? "1e-2" : "1e-3", wd = paper ? ",weight_decay=1.2e-6" : "";
  return {{"SGD", "sgd:lr=" + sgd + wd},
          {"AdaGrad", "adagrad:lr=0.01" + wd},
          {"Adam", "adam:lr=" + ada + wd},
          {"AMSGrad", "amsgrad:lr=" + ada + wd},
          {"AdaBound", "adabound:lr=" + ada + ",final_lr=" + sgd + ",gamma=1e-3" + wd},
          {"AMSBound", "amsbound:lr=" + ada + ",final_lr=" + sgd + ",gamma=1e-3" + wd}};
}

struct DataChoice {
  std::string dataset, title, dir, note;
};

DataChoice choose_data(const Config& c) {
  const std::string ds = lower(c.dataset);
  TG_CHECK(ds == "auto" || ds == "ptb" || ds == "kjv", "--dataset '", c.dataset, "': expected ptb, kjv or auto");
  const auto missing = [](const std::string& dir) { return datasets::missing_corpus_files(dir); };
  if (ds == "ptb" || (ds == "auto" && !c.data.empty())) {
    TG_CHECK(!c.data.empty(), "--dataset ptb: no --data DIR given (the directory holding ptb.train.txt, "
                              "ptb.valid.txt, ptb.test.txt)");
    TG_CHECK(fs::is_directory(c.data), "--data ", c.data, ": not a directory");
    TG_CHECK(missing(c.data).empty(), "--data ", c.data, " lacks ", join(missing(c.data), ", "));
    if (!is_kjv_dir(c.data)) return {"ptb", "Penn Treebank", c.data, ""};
  }
  const std::string dir = ds == "auto" && !c.data.empty() ? c.data : c.kjv.empty() ? default_kjv_dir() : c.kjv;
  DataChoice d{"kjv", "King James Bible (PTB layout)", dir, ""};
  TG_CHECK(fs::is_directory(dir) && missing(dir).empty(), "the King James Bible corpus is not in ", dir,
           fs::is_directory(dir) ? " (lacks " + join(missing(dir), ", ") + ")" : std::string(" (no such directory)"),
           ": run datasets/fetch kjv", c.kjv.empty() ? "" : " --data " + dir,
           " first, or give Penn Treebank with --data DIR");
  d.note = (c.data.empty() ? std::string("no --data DIR with Penn Treebank given")
                           : ds == "kjv" ? std::string("--dataset kjv") : "--data " + c.data + " holds the KJV") +
           ": running on the King James Bible (Debian's bible-kjv-text in the PTB layout, " + dir +
           "). Perplexities are NOT comparable to the paper's Penn Treebank figures.";
  return d;
}

// Mean cross-entropy per token of the model over a batchified text [n, B], the state carried across segments.
// dist: each rank evaluates its columns of the text; the sums are added over the ranks. Segments are cut on the
// host and sent to the model's device.
double evaluate_text(models::LSTMLanguageModel& model, const Tensor& text, int64_t bptt, Device dev) {
  const auto cols = datasets::shard_range(text.size(1), dist::rank(), dist::world_size());
  const Tensor source = text.slice(1, cols.begin, cols.end);
  double sum = 0.0;
  int64_t count = 0;
  nn::LSTMState state;
  for (int64_t i = 0; i < datasets::num_segments(source, bptt); ++i) {
    const datasets::Segment s = datasets::segment(source, i, bptt);
    const models::LMOutput out = model(s.input.to(dev), state);
    sum += cross_entropy(out.logits, s.target.to(dev), Reduction::Sum).item();
    count += s.target.numel();
    state = out.state;
  }
  const auto sums = dist::all_reduce_sum({sum, static_cast<double>(count)});
  return sums[0] / sums[1];
}

std::vector<int64_t> head(const std::vector<int64_t>& ids, int64_t n) {
  if (n <= 0 || n >= static_cast<int64_t>(ids.size())) return ids;
  return {ids.begin(), ids.begin() + n};
}

int run(Config c, const CLI::App& app) {
  if (c.paper) {  // the re-run's sizes and schedule, unless a flag says otherwise
    auto unset = [&](const char* flag) { return app.count(flag) == 0; };
    if (unset("--emb")) c.emb = 400;
    if (unset("--hidden")) c.hidden = 1150;
    if (unset("--bptt")) c.bptt = 70;
    if (unset("--dropout")) c.dropout = 0.4;
    if (unset("--epochs")) c.epochs = 200;
    if (unset("--milestones")) c.milestones = {100, 145};
    if (unset("--train-tokens")) c.train_tokens = 0;
  }
  if (c.out.empty()) c.out = std::string(c.paper ? "results/ptb-paper/L" : "results/ptb/L") + std::to_string(c.layers);
  check_common_flags(c);
  TG_CHECK(c.val_fraction == 0, "--val-fraction ", c.val_fraction,
           ": the text corpus has its own validation text (valid_ppl); drop the flag");
  TG_CHECK(c.layers >= 1, "--layers ", c.layers, ": must be at least 1");
  TG_CHECK(c.emb >= 1 && c.hidden >= 1, "--emb ", c.emb, " and --hidden ", c.hidden, ": must be at least 1");
  TG_CHECK(c.bptt >= 1, "--bptt ", c.bptt, ": must be at least 1");
  TG_CHECK(c.batch >= 1 && c.eval_batch >= 1, "--batch ", c.batch, " and --eval-batch ", c.eval_batch,
           ": must be at least 1");
  TG_CHECK(c.dropout >= 0 && c.dropout < 1, "--dropout ", c.dropout, ": must be in [0, 1)");
  TG_CHECK(c.clip > 0 && std::isfinite(c.clip), "--clip ", c.clip, ": must be > 0");
  TG_CHECK(!c.tie || c.emb == c.hidden, "--tie needs --emb == --hidden, got ", c.emb, " and ", c.hidden);
  TG_CHECK(c.train_tokens >= 0 && c.eval_tokens >= 0, "--train-tokens/--eval-tokens must be >= 0");
  const std::vector<RunSpec> runs = parse_runs(c.optim, lm_runs(c.paper));
  if (check_runs(c, runs)) return 0;  // --check-optim

  const DataChoice data = choose_data(c);
  if (!data.note.empty()) banner(data.note);
  const Device dev = choose_device(c, data.dataset == "ptb");
  const datasets::TextCorpus corpus = datasets::load_corpus(data.dir);
  // dist: each rank trains on its columns (streams) of the batch; the others' columns are the rest of it
  TG_CHECK(c.batch >= dist::world_size() && c.eval_batch >= dist::world_size(), "--batch ", c.batch,
           " / --eval-batch ", c.eval_batch, ": with ", dist::world_size(),
           " ranks each needs at least one column per rank");
  const Tensor all_train = datasets::batchify(head(corpus.train, c.train_tokens), c.batch, data.dir + " train");
  const auto my_cols = datasets::shard_range(c.batch, dist::rank(), dist::world_size());
  const Tensor train = all_train.slice(1, my_cols.begin, my_cols.end);
  const Tensor valid = datasets::batchify(head(corpus.valid, c.eval_tokens), c.eval_batch, data.dir + " valid");
  const Tensor test = datasets::batchify(head(corpus.test, c.eval_tokens), c.eval_batch, data.dir + " test");
  const int64_t V = corpus.vocab.size();
  std::cerr << "dataset: " << data.title << " from " << data.dir << ": vocabulary " << V << ", tokens train "
            << corpus.train.size() << ", valid " << corpus.valid.size() << ", test " << corpus.test.size()
            << (c.train_tokens || c.eval_tokens ? " (limited by --train-tokens/--eval-tokens)" : "") << "\n"
            << "model: " << c.layers << "-layer LSTM, embedding " << c.emb << ", hidden " << c.hidden << ", dropout "
            << c.dropout << (c.tie ? ", tied weights" : "") << "; batch " << c.batch << " x BPTT " << c.bptt
            << ", clip " << c.clip << ", " << c.epochs << (c.epochs == 1 ? " epoch" : " epochs") << ", seed " << c.seed
            << ", " << num_threads() << " threads" << (c.paper ? " (--paper; no weight-drop)" : "") << "\n";

  std::optional<models::LSTMLanguageModel> model;
  nn::LSTMState state;
  const models::LMOptions lm{.vocab = V, .emb = c.emb, .hidden = c.hidden, .layers = c.layers,
                             .dropout = c.dropout, .tie_weights = c.tie, .dropout_seed = c.seed};
  const std::string size = std::to_string(c.layers) + "-layer LSTM " + std::to_string(c.emb) + "/" +
                           std::to_string(c.hidden);

  Experiment ex;
  ex.name = "ptb";
  ex.title = data.title + ", " + size + " language model, " + std::to_string(c.epochs) +
             (c.epochs == 1 ? " epoch" : " epochs") + ", batch " + std::to_string(c.batch) + " x BPTT " +
             std::to_string(c.bptt) +
             (c.train_tokens > 0 && c.train_tokens < static_cast<int64_t>(corpus.train.size())
                  ? ", first " + std::to_string(c.train_tokens) + " training tokens"
                  : "") +
             ", seed " + std::to_string(c.seed) + (c.paper ? " (--paper)" : "");
  ex.dataset = data.dataset;
  ex.note = data.note;
  if (c.paper) ex.note += std::string(ex.note.empty() ? "" : " ") + "--paper: the re-run's sizes and schedule, "
                          "without its weight-drop, embedding and locked dropout.";
  ex.unit = "tokens";
  ex.identity = {{"layers", std::to_string(c.layers)}, {"emb", std::to_string(c.emb)},
                 {"hidden", std::to_string(c.hidden)}, {"bptt", std::to_string(c.bptt)},
                 {"batch", std::to_string(c.batch)},   {"dropout", optim::format_number(c.dropout)},
                 {"clip", optim::format_number(c.clip)}, {"tie", c.tie ? "true" : "false"},
                 {"vocab", std::to_string(V)},         {"train_tokens", std::to_string(all_train.numel())},
                 {"data", std::to_string(dist::fingerprint(all_train))}};
  ex.summary_fields = {{"dataset_title", data.title}, {"data_dir", data.dir},     {"vocab", V},
                       {"train_tokens", all_train.numel()}, {"valid_tokens", valid.numel()},
                       {"test_tokens", test.numel()}, {"layers", c.layers},     {"emb", c.emb},
                       {"hidden", c.hidden},          {"bptt", c.bptt},         {"batch", c.batch},
                       {"eval_batch", c.eval_batch},  {"dropout", c.dropout},   {"clip", c.clip},
                       {"tie", c.tie},                {"paper_mode", c.paper},  {"weight_drop", false}};
  ex.steps_per_epoch = datasets::num_segments(train, c.bptt);
  ex.make_model = [&](Generator& init) -> nn::Module& {
    model.emplace(lm, init);  // on the CPU: the same weights on every device
    model->to(dev);
    return *model;
  };
  ex.begin_epoch = [&](int64_t epoch) {
    state = {};  // the hidden state starts from zeros every epoch
    // dist: on several ranks each draws its own masks (rank in the seed): the same kind of training, not the
    // masks of one process (ranks and one process agree exactly with --dropout 0)
    model->dropout_generator().seed(datasets::DataLoader::epoch_seed(
        dist::world_size() > 1 ? c.seed ^ (0x9E3779B97F4A7C15ull * (dist::rank() + 1)) : c.seed, epoch));
  };
  ex.step = [&](int64_t, int64_t b) {
    const datasets::Segment s = datasets::segment(train, b, c.bptt);
    const models::LMOutput out = (*model)(s.input.to(dev), state);
    state = {out.state.h.detach(), out.state.c.detach()};
    return StepResult{cross_entropy(out.logits, s.target.to(dev)), s.target.numel(), -1};
  };
  ex.before_update = [&] { nn::clip_grad_norm(model->parameters(), c.clip); };
  ex.evaluate = [&] {
    const double v = evaluate_text(*model, valid, c.bptt, dev), t = evaluate_text(*model, test, c.bptt, dev);
    return json{{"valid_loss", v}, {"valid_ppl", std::exp(v)}, {"test_loss", t}, {"test_ppl", std::exp(t)}};
  };
  ex.decorate = [](json& line) { line["train_ppl"] = std::exp(line["train_loss"].get<double>()); };
  ex.best_key = "test_ppl";
  ex.higher_is_better = false;
  ex.percent = false;
  if (data.dataset == "ptb") {
    static const double paper_ppl[3][3] = {{84.8, 84.3, 85.1}, {67.5, 67.3, 67.4}, {63.6, 64.3, 63.8}};
    if (c.layers <= 3) {
      const auto& p = paper_ppl[c.layers - 1];
      ex.paper = {{"AdaBound", p[0]}, {"Adam", p[1]}, {"SGD", p[2]}};
      ex.paper_caption = "the public re-run's best test perplexity (AdaBelief paper, AWD-LSTM code: embedding 400, "
                         "hidden 1150, 200 epochs, weight-drop); the paper itself gives only curves";
    }
  }
  return run_experiment(c, runs, ex);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "ptb: the AdaBound paper's LSTM language-model experiment. Trains an L-layer LSTM language model with each "
      "optimizer from the same initial weights on the same text (Penn Treebank with --data DIR, else the King "
      "James Bible), and writes per-epoch perplexities as JSON lines, checkpoints and a summary."};
  app.get_formatter()->column_width(34);
  Config c;
  c.epochs = 2;
  c.milestones = {};
  add_common_flags(app, c);
  app.add_option("--layers", c.layers, "LSTM layers (the paper: 1, 2, 3)")->capture_default_str();
  app.add_option("--emb", c.emb, "embedding size (--paper: 400)")->capture_default_str();
  app.add_option("--hidden", c.hidden, "hidden units per layer (--paper: 1150)")->capture_default_str();
  app.add_option("--bptt", c.bptt, "truncated-BPTT length (--paper: 70)")->capture_default_str();
  app.add_option("--batch", c.batch, "training batch (columns)")->capture_default_str();
  app.add_option("--eval-batch", c.eval_batch, "batch of the validation and test passes")->capture_default_str();
  app.add_option("--dropout", c.dropout, "dropout on embedding, between layers and on the output (--paper: 0.4)")
      ->capture_default_str();
  app.add_option("--clip", c.clip, "gradient norm clipping")->capture_default_str();
  app.add_flag("--tie", c.tie, "tie the decoder's weight to the embedding (needs --emb == --hidden)");
  app.add_flag("--paper", c.paper,
               "the public re-run's sizes and schedule: emb 400, hidden 1150, BPTT 70, dropout 0.4, weight decay "
               "1.2e-6, 200 epochs, lr / 10 after 100 and 145, SGD lr 30, adaptive lr 1e-2, final_lr 30 (no "
               "weight-drop)");
  app.add_option("--data", c.data, "directory with ptb.train.txt, ptb.valid.txt, ptb.test.txt (Penn Treebank)");
  app.add_option("--kjv", c.kjv, "directory of the KJV corpus made by datasets/fetch kjv (default: the cache)");
  app.add_option("--dataset", c.dataset, "ptb, kjv or auto (PTB when --data has it, else the KJV)")
      ->capture_default_str();
  app.add_option("--train-tokens", c.train_tokens,
                 "use only the first N training tokens (0: all; --paper: all): the CPU default's budget")
      ->capture_default_str();
  app.add_option("--eval-tokens", c.eval_tokens, "use only the first N validation and test tokens (0: all)");
  add_device_flags(app, c);
  return main_of("ptb", app, argc, argv, [&] { return run(c, app); });
}
