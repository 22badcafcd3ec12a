// Timing for the benchmark programs, in the shape of ../shared/bench/benchlib.py: warm-up, then blocks
// of at least min_block_s each (timed again when other processes disturbed them, see time_blocks),
// median / min / max seconds per iteration over `repeats` blocks, one JSON
// line per program on stdout ({"bench", "meta", "results": [{"name", "sec_per_iter", <unit>: {...}}]}),
// progress on stderr. Same figures, same field names: report.py puts both sides next to each other.
#pragma once

#include <unistd.h>

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
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tapegrad/ops.hpp"

namespace bench {

using json = nlohmann::ordered_json;

// Wall-clock seconds; with TG_BENCH_CPU_CLOCK=1 in the environment, the process's CPU seconds instead (for
// comparing two variants of a kernel with --threads 1 on a machine that other work keeps busy: a program
// that waits for the CPU accrues no CPU time). Published figures are wall-clock.
inline bool cpu_clock() {
  static const bool cpu = [] {
    const char* v = std::getenv("TG_BENCH_CPU_CLOCK");
    return v && *v == '1';
  }();
  return cpu;
}
inline double wall() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
inline double now() {
  if (cpu_clock()) {
    timespec t{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
  }
  return wall();
}

// Noise control, as ../shared/bench/benchlib.py does it (the machine may be shared with builds): before each
// timed block, wait until other processes use less than BENCH_QUIET (default 0.05) of all CPUs over half a
// second (at most BENCH_MAX_WAIT seconds, default 90, in all); a block during which they used more is timed
// again, up to BENCH_ATTEMPTS (default 3) x repeats blocks, and then the least disturbed ones are kept.
// last_noise() reports what happened, for the result's "noise" field. With TG_BENCH_CPU_CLOCK=1 nothing waits
// (CPU time does not count what others take).
namespace detail {
inline double env_or(const char* name, double fallback) {
  const char* v = std::getenv(name);
  return v ? std::atof(v) : fallback;
}
// (busy jiffies of all CPUs, this process's user + system jiffies)
inline std::pair<double, double> busy_jiffies() {
  std::ifstream stat("/proc/stat");
  std::string cpu;
  double v[10] = {0}, total = 0;
  stat >> cpu;
  for (double& x : v) stat >> x, total += x;
  std::ifstream self("/proc/self/stat");
  std::string text((std::istreambuf_iterator<char>(self)), {});
  std::istringstream rest(text.substr(text.rfind(')') + 2));
  std::string field;
  double mine = 0;
  for (int i = 0; i < 15 && rest >> field; ++i)
    if (i >= 11) mine += std::atof(field.c_str());  // utime, stime, cutime, cstime
  return {total - v[3] - v[4], mine};
}
// The share of all CPUs that other processes used since (b0, s0), over dt seconds.
inline double foreign_share(std::pair<double, double> start, double dt) {
  const auto end = busy_jiffies();
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK)), cpus = static_cast<double>(sysconf(_SC_NPROCESSORS_ONLN));
  return std::max(0.0, ((end.first - start.first) - (end.second - start.second)) / ticks / (dt * cpus));
}
inline json& noise() {
  static json n = json::object();
  return n;
}
}  // namespace detail

inline const json& last_noise() { return detail::noise(); }

// Sleeps until other processes use less than BENCH_QUIET of the CPUs over half a second, or max_wait passed.
inline double wait_quiet(double max_wait) {
  if (cpu_clock()) return 0.0;
  const double quiet = detail::env_or("BENCH_QUIET", 0.05), t0 = wall();
  while (true) {
    const auto start = detail::busy_jiffies();
    const double p0 = wall();
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    if (detail::foreign_share(start, wall() - p0) < quiet || wall() - t0 > max_wait) return wall() - t0;
  }
}

// Per-iteration seconds of `repeats` timed blocks after `warmup` untimed calls (blocks of >= min_block_s).
inline std::vector<double> time_blocks(const std::function<void()>& fn, int repeats = 7, int warmup = 10,
                                       double min_block_s = 0.5) {
  const double quiet = detail::env_or("BENCH_QUIET", 0.05), attempts = detail::env_or("BENCH_ATTEMPTS", 3);
  double wait_budget = detail::env_or("BENCH_MAX_WAIT", 90), waited = wait_quiet(wait_budget);
  for (int i = 0; i < warmup; ++i) fn();
  double t0 = now();
  fn();
  double one = std::max(now() - t0, 1e-9);
  int iters = std::max(1, static_cast<int>(std::ceil(min_block_s / one)));
  std::vector<std::pair<double, double>> clean, dirty;  // (seconds per iteration, foreign share)
  int tries = 0;
  while (static_cast<int>(clean.size()) < repeats && tries < std::max<int>(repeats, static_cast<int>(attempts * repeats))) {
    ++tries;
    waited += wait_quiet(std::max(0.0, detail::env_or("BENCH_MAX_WAIT", 90) - waited));
    const auto start = detail::busy_jiffies();
    t0 = now();
    const double w0 = wall();
    for (int i = 0; i < iters; ++i) fn();
    const double dt = now() - t0, f = cpu_clock() ? 0.0 : detail::foreign_share(start, wall() - w0);
    (f < quiet ? clean : dirty).push_back({dt / iters, f});
  }
  std::sort(dirty.begin(), dirty.end(), [](auto& a, auto& b) { return a.second < b.second; });
  std::vector<std::pair<double, double>> kept = clean;
  for (size_t i = 0; kept.size() < static_cast<size_t>(repeats) && i < dirty.size(); ++i) kept.push_back(dirty[i]);
  double worst = 0;
  std::vector<double> secs;
  for (auto& [t, f] : kept) secs.push_back(t), worst = std::max(worst, f);
  detail::noise() = {{"foreign_cpu_share_max", std::round(worst * 1000) / 1000}, {"blocks_timed", tries},
                     {"blocks_discarded", tries - static_cast<int>(kept.size())},
                     {"disturbed_blocks_kept", kept.size() - clean.size()}, {"waited_s", std::round(waited * 10) / 10},
                     {"iters", iters}};
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
            {"sec_per_iter", {{"median", med}, {"min", lo}, {"max", hi}}}, {"noise", detail::noise()}};
  for (auto& [unit, amount] : work) r[unit] = {{"median", amount / med}, {"min", amount / hi}, {"max", amount / lo}};
  return r;
}

inline json meta() {
  std::ifstream la("/proc/loadavg");
  std::string a, b, c;
  la >> a >> b >> c;
  return {{"framework", "tapegrad"}, {"threads", tapegrad::num_threads()}, {"cpu_isa", tapegrad::cpu_isa()},
          {"loadavg_start", {a, b, c}}};
}

inline std::string fmt_ms(double seconds) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", seconds * 1e3);
  return buf;
}

inline void progress(const std::string& msg) { std::fprintf(stderr, "%s\n", msg.c_str()); }

// Sets the thread count and says it, with the CPU level the kernels run at (TG_CPU_ISA forces one).
inline void start(int threads) {
  tapegrad::set_num_threads(threads);
  progress("tapegrad: " + std::to_string(threads) + " threads, CPU kernels " + tapegrad::cpu_isa());
}

}  // namespace bench
