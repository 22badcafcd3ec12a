// The progress line of a training run on stderr: rewritten in place on a terminal, a plain line every few
// seconds otherwise, with the throughput and an ETA over all the steps still to run.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace tapegrad::tools {

class Progress {
 public:
  Progress(int64_t total_steps, std::string unit);
  // One step done: "HEAD step S/STEPS  loss L  R UNIT/s  ETA".
  void step(const std::string& head, int64_t step, int64_t steps, double loss, double per_second);
  void skip(int64_t steps);               // steps that will not run (resumed, stopped)
  void say(const std::string& line);      // a line that stays
  std::string eta() const;

 private:
  bool tty_;
  int64_t total_, done_at_start_ = 0, done_ = 0;
  std::string unit_;
  std::chrono::steady_clock::time_point start_, last_;
  bool open_ = false;
};

}  // namespace tapegrad::tools
