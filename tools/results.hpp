// The results writer of the training driver: one JSON-lines file per optimizer (one line per epoch), the
// telemetry lines, and summary.json / summary.md with the best and final metric per optimizer. Only the
// process that writes results calls these (under MPI: rank 0).
#pragma once

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "experiment.hpp"
#include "tapegrad/optim.hpp"

namespace tapegrad::tools {

// What one optimizer's run left: its epochs' JSON lines, time, and whether a NaN/Inf stopped it.
struct RunSummary {
  RunSpec run;
  std::string resolved;  // Optimizer::describe()
  std::vector<json> epochs;
  double seconds = 0.0;
  bool diverged = false;
  std::string stopped;  // the step, parameter and optimizer that stopped it, when one did
};

// JSON-lines results of one optimizer: the lines of epochs <= keep_epochs are kept, the rest dropped
// (a crash between the results line and the checkpoint leaves one line too many).
std::vector<json> read_results(const std::string& path, int64_t keep_epochs);
// Rewrites path (atomically) with `lines` and opens it for appending the next epochs' lines.
std::ofstream open_results(const std::string& path, const std::vector<json>& lines);

// The telemetry lines of one optimizer step: one per parameter tensor that has state.
std::string telemetry_lines(const std::string& label, int64_t epoch, const optim::Optimizer& opt,
                            const std::vector<std::pair<std::string, Tensor>>& named);
// Drops the telemetry lines of `label` after step `keep_steps` (what a resumed optimizer will write again).
void trim_telemetry(const std::string& path, const std::string& label, int64_t keep_steps);

// summary.json and summary.md in c.out, and the table on stdout.
void write_summary(const CommonConfig& c, const Experiment& ex, const std::vector<RunSummary>& runs);

}  // namespace tapegrad::tools
