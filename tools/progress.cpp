// The progress line: see progress.hpp.
#include "progress.hpp"

#include <unistd.h>

#include <iostream>

#include "tapegrad/dist.hpp"
#include "util.hpp"

using Clock = std::chrono::steady_clock;

namespace tapegrad::tools {

Progress::Progress(int64_t total_steps, std::string unit)
    : tty_(isatty(STDERR_FILENO)), total_(total_steps), unit_(std::move(unit)), start_(Clock::now()),
      last_(start_) {}

void Progress::step(const std::string& head, int64_t step, int64_t steps, double loss, double per_second) {
  if (dist::rank() != 0) return;  // dist: only rank 0 reports
  ++done_;
  const auto now = Clock::now();
  const double since = std::chrono::duration<double>(now - last_).count();
  if (tty_ ? since < 0.2 && step != steps : since < 5.0) return;
  last_ = now;
  const std::string line = head + " step " + std::to_string(step) + "/" + std::to_string(steps) + "  loss " +
                           fmt("%.4f", loss) + "  " + fmt("%.0f ", per_second) + unit_ + "/s  ETA " + eta();
  if (tty_) {
    std::cerr << '\r' << line << "\033[K" << std::flush;
    open_ = true;
  } else {
    std::cerr << line << '\n' << std::flush;
  }
}

void Progress::skip(int64_t steps) { done_ += steps, done_at_start_ += steps; }

void Progress::say(const std::string& line) {
  if (dist::rank() != 0) return;  // dist: only rank 0 reports
  if (open_) std::cerr << "\r\033[K";
  open_ = false;
  std::cerr << line << '\n' << std::flush;
}

std::string Progress::eta() const {
  const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
  const int64_t done = done_ - done_at_start_;
  if (done <= 0) return "?";
  return hms(elapsed / done * static_cast<double>(total_ - done_));
}

}  // namespace tapegrad::tools
