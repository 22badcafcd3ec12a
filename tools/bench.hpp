// Timing for the benchmark programs, in the shape of ../shared/bench/benchlib.py: warm-up, then blocks
// of at least min_block_s each, median / min / max seconds per iteration over `repeats` blocks, one JSON
// line per program on stdout ({"bench", "meta", "results": [{"name", "sec_per_iter", <unit>: {...}}]}),
// progress on stderr. Same figures, same field names: report.py puts both sides next to each other.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tapegrad/ops.hpp"

namespace bench {

using json = nlohmann::ordered_json;

// Wall-clock seconds; with TG_BENCH_CPU_CLOCK=1 in the environment, the process's CPU seconds instead (for
// comparing two variants of a kernel with --threads 1 on a machine that other work keeps busy: a program
// that waits for the CPU accrues no CPU time). Published figures are wall-clock.
inline double now() {
  static const bool cpu = [] {
    const char* v = std::getenv("TG_BENCH_CPU_CLOCK");
    return v && *v == '1';
  }();
  if (cpu) {
    timespec t{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Per-iteration seconds of `repeats` timed blocks after `warmup` untimed calls.
inline std::vector<double> time_blocks(const std::function<void()>& fn, int repeats = 7, int warmup = 10,
                                       double min_block_s = 0.5) {
  for (int i = 0; i < warmup; ++i) fn();
  double t0 = now();
  fn();
  double one = std::max(now() - t0, 1e-9);
  int iters = std::max(1, static_cast<int>(std::ceil(min_block_s / one)));
  std::vector<double> secs;
  for (int r = 0; r < repeats; ++r) {
    t0 = now();
    for (int i = 0; i < iters; ++i) fn();
    secs.push_back((now() - t0) / iters);
  }
  return secs;
}

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// A result entry: sec_per_iter plus one throughput per unit (work per iteration / seconds).
inline json summarize(const std::string& name, const std::vector<double>& secs,
                      const std::map<std::string, double>& work, json config = json::object()) {
  double med = median(secs), lo = *std::min_element(secs.begin(), secs.end()),
         hi = *std::max_element(secs.begin(), secs.end());
  json r = {{"name", name}, {"config", config}, {"repeats", secs.size()},
            {"sec_per_iter", {{"median", med}, {"min", lo}, {"max", hi}}}};
  for (auto& [unit, amount] : work) r[unit] = {{"median", amount / med}, {"min", amount / hi}, {"max", amount / lo}};
  return r;
}

inline json meta() {
  std::ifstream la("/proc/loadavg");
  std::string a, b, c;
  la >> a >> b >> c;
  return {{"framework", "tapegrad"}, {"threads", tapegrad::num_threads()}, {"loadavg_start", {a, b, c}}};
}

inline void progress(const std::string& msg) { std::fprintf(stderr, "%s\n", msg.c_str()); }

}  // namespace bench
