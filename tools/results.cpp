// The results writer of the training driver: see results.hpp.
#include "results.hpp"

#include <filesystem>
#include <iostream>
#include <optional>
#include <sstream>

#include "tapegrad/io.hpp"
#include "tapegrad/ops.hpp"

namespace fs = std::filesystem;

namespace tapegrad::tools {

namespace {

json summary_json(const RunSummary& r, const Experiment& ex, const std::string& out_dir) {
  json s = {{"optimizer", r.run.label}, {"spec", r.run.spec}, {"resolved", r.resolved},
            {"epochs_done", r.epochs.size()}, {"seconds", r.seconds}, {"diverged", r.diverged},
            {"stopped", r.stopped.empty() ? json(nullptr) : json(r.stopped)},
            {"results", (fs::path(out_dir) / (lower(r.run.label) + ".jsonl")).string()}};
  std::optional<double> best;
  int64_t best_epoch = 0;
  for (const json& e : r.epochs) {
    if (!e.contains(ex.best_key) || !e[ex.best_key].is_number()) continue;
    const double v = e[ex.best_key].get<double>();
    if (!best || (ex.higher_is_better ? v > *best : v < *best)) best = v, best_epoch = e["epoch"].get<int64_t>();
  }
  s["best_" + ex.best_key] = best ? json(*best) : json(nullptr);
  s["best_epoch"] = best_epoch;
  if (!r.epochs.empty())
    for (const auto& [k, v] : r.epochs.back().items())
      if (k.rfind("train_", 0) == 0 || k.rfind("test_", 0) == 0 || k.rfind("valid_", 0) == 0) s["final_" + k] = v;
  const auto paper = ex.paper.find(r.run.label);
  if (paper != ex.paper.end()) s["paper_" + ex.best_key] = paper->second;
  return s;
}

std::string summary_table(const json& summary, const Experiment& ex) {
  const auto metric = [&](const json& v) {
    if (!v.is_number()) return std::string("-");
    return ex.percent ? fmt("%.2f", 100.0 * v.get<double>()) : fmt("%.2f", v.get<double>());
  };
  const std::string name = ex.best_key + (ex.percent ? " %" : "");
  const bool paper = !ex.paper.empty();
  std::ostringstream os;
  os << "| optimizer | best " << name << " (epoch) | final " << name << " | final train loss | time (s) |"
     << (paper ? " paper: best " + name + " |" : "") << "\n|---|---|---|---|---|" << (paper ? "---|" : "") << "\n";
  for (const json& r : summary["runs"]) {
    const json& final_loss = r.contains("final_train_loss") ? r["final_train_loss"] : json();
    os << "| " << r["optimizer"].get<std::string>() << (r["diverged"].get<bool>() ? " (diverged)" : "") << " | "
       << metric(r["best_" + ex.best_key]) << " (" << r["best_epoch"].get<int64_t>() << ") | "
       << metric(r.value("final_" + ex.best_key, json())) << " | "
       << (final_loss.is_number() ? fmt("%.4f", final_loss.get<double>()) : "-") << " | "
       << fmt("%.1f", r["seconds"].get<double>()) << " |";
    if (paper) {
      const auto it = ex.paper.find(r["optimizer"].get<std::string>());
      os << " " << (it == ex.paper.end() ? std::string("-") : metric(json(it->second))) << " |";
    }
    os << "\n";
  }
  if (paper && !ex.paper_caption.empty()) os << "\nPaper column: " << ex.paper_caption << ".\n";
  return os.str();
}

json quantiles_json(const optim::LrQuantiles& q) {
  return {{"min", q.min}, {"p5", q.p5}, {"p25", q.p25}, {"median", q.median}, {"p75", q.p75}, {"p95", q.p95},
          {"max", q.max}};
}

}  // namespace

std::vector<json> read_results(const std::string& path, int64_t keep_epochs) {
  std::vector<json> lines;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (trim(line).empty()) continue;
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.contains("epoch")) continue;  // a line cut short by a crash
    if (j["epoch"].get<int64_t>() <= keep_epochs) lines.push_back(j);
  }
  return lines;
}

std::ofstream open_results(const std::string& path, const std::vector<json>& lines) {
  std::string text;
  for (const json& j : lines) text += j.dump() + "\n";
  write_file_atomically(path, text);
  std::ofstream results(path, std::ios::app);
  TG_CHECK(results.good(), "cannot write ", path);
  return results;
}

std::string telemetry_lines(const std::string& label, int64_t epoch, const optim::Optimizer& opt,
                            const std::vector<std::pair<std::string, Tensor>>& named) {
  std::string text;
  for (const optim::LrStats& s : opt.lr_telemetry()) {
    json j = {{"optimizer", label}, {"epoch", epoch}, {"step", s.step}, {"param", named.at(s.param).first},
              {"numel", named.at(s.param).second.numel()}, {"lr", quantiles_json(s.lr)}};
    if (s.bounded) {
      j["lr_unclamped"] = quantiles_json(s.lr_unclamped);
      j["lower_bound"] = s.lower_bound;
      j["upper_bound"] = s.upper_bound;
      j["frac_at_lower"] = s.frac_at_lower;
      j["frac_at_upper"] = s.frac_at_upper;
    }
    text += j.dump() + "\n";
  }
  return text;
}

void trim_telemetry(const std::string& path, const std::string& label, int64_t keep_steps) {
  std::ifstream in(path);
  std::string line, kept;
  while (std::getline(in, line)) {
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded()) continue;
    if (j.value("optimizer", "") != label || j.value("step", int64_t{0}) <= keep_steps) kept += line + "\n";
  }
  in.close();
  write_file_atomically(path, kept);
}

void write_summary(const CommonConfig& c, const Experiment& ex, const std::vector<RunSummary>& runs) {
  json summary = {{"experiment", ex.name}, {"title", ex.title}, {"dataset", ex.dataset}, {"note", ex.note}};
  for (const auto& [k, v] : ex.summary_fields.items()) summary[k] = v;
  summary["epochs"] = c.epochs;
  summary["seed"] = c.seed;
  summary["threads"] = num_threads();
  summary["cpu_isa"] = cpu_isa();
  summary["milestones"] = c.milestones;
  summary["lr_decay"] = c.lr_decay;
  summary["best_key"] = ex.best_key;
  summary["runs"] = json::array();
  for (const RunSummary& r : runs) summary["runs"].push_back(summary_json(r, ex, c.out));
  const std::string table = summary_table(summary, ex);
  const std::string title = "# " + ex.title + "\n\n";
  const std::string note = ex.note.empty() ? "" : "**Note:** " + ex.note + "\n\n";
  write_file_atomically((fs::path(c.out) / "summary.json").string(), summary.dump(2) + "\n");
  write_file_atomically((fs::path(c.out) / "summary.md").string(),
                   title + note + "Per-epoch results: `<optimizer>.jsonl` beside this file.\n\n" + table);
  std::cout << '\n' << title << note << table << "\nresults in " << c.out << "/ (summary.json, summary.md, *.jsonl)\n";
  if (!ex.note.empty()) std::cerr << "NOTE: " << ex.note << '\n';
}

}  // namespace tapegrad::tools
