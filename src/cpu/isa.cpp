// Choosing the instruction-set level once (see isa.hpp).
#include "isa.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "tapegrad/error.hpp"

namespace tapegrad::cpu::isa {

// __builtin_cpu_supports also checks that the operating system saves the AVX state.
bool supported(Level level) {
#if defined(__x86_64__)
  __builtin_cpu_init();  // may run before the constructors that would call it
  switch (level) {
    case Level::Avx512: return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
                               __builtin_cpu_supports("fma");
    case Level::Avx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Level::Baseline: return true;
  }
  return false;
#else
  return level == Level::Baseline;  // no x86 level was compiled (meson.build): Eigen's own paths (NEON on aarch64)
#endif
}

namespace {

// Blocking fitted to this CPU's caches: a packed block of A of mc x kc floats takes at most a quarter of L2
// (the level's measured default is the upper bound: 200 rows x 384 on a 2 MiB L2).
void fit(Kernel& k) {
  long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
  if (l2 <= 0) l2 = 1 << 20;  // unknown: 1 MiB
  const int64_t rows = l2 / 4 / (k.kc * static_cast<int64_t>(sizeof(float)));
  k.mc = std::max(k.mr, std::min(k.mc, rows / k.mr * k.mr));
}

#if !defined(__x86_64__)
#if defined(__aarch64__)
constexpr const char* kMachine = "aarch64";
#else
constexpr const char* kMachine = "a machine that is not x86-64";
#endif
#endif

const char* name(Level level) {
  return level == Level::Avx512 ? "avx512" : level == Level::Avx2 ? "avx2" : "baseline";
}

// The table of a level this CPU supports (the per-level functions are themselves compiled for their level:
// never call one the CPU lacks).
Table make([[maybe_unused]] Level level) {  // unused off x86-64
  Table t;  // baseline: no micro-kernel
#if defined(__x86_64__)
  if (level == Level::Avx512) t = avx512_table();
  if (level == Level::Avx2) t = avx2_table();
#endif
  if (t.gemm.micro) fit(t.gemm);
  return t;
}

Table choose() {
  constexpr Level levels[] = {Level::Avx512, Level::Avx2, Level::Baseline};  // best first
  const char* env = std::getenv("TG_CPU_ISA");
  if (env == nullptr || *env == '\0') {
    for (Level l : levels)
      if (supported(l)) return make(l);
    return make(Level::Baseline);
  }
  const std::string want = env;
  std::string have;
  for (Level l : levels)
    if (supported(l)) have += std::string(have.empty() ? "" : ", ") + name(l);
  for (Level l : levels) {
    if (want != name(l)) continue;
#if defined(__x86_64__)
    TG_CHECK(supported(l), "TG_CPU_ISA=", want, ": this CPU lacks ",
             l == Level::Avx512 ? "AVX-512F" : "AVX2 with FMA", " (levels it supports: ", have, ")");
#else
    TG_CHECK(supported(l), "TG_CPU_ISA=", want, ": an x86-64 level, and this library is built for ", kMachine,
             " (levels it supports: ", have, ")");
#endif
    return make(l);
  }
  TG_FAIL("TG_CPU_ISA=", want, ": unknown level (expected avx512, avx2 or baseline; this CPU supports ", have, ")");
}

}  // namespace

const Table& table() {
  static const Table chosen = choose();  // a throw leaves it unset: the next call tries (and throws) again
  return chosen;
}

}  // namespace tapegrad::cpu::isa

namespace tapegrad {
const char* cpu_isa() { return cpu::isa::table().name; }
}  // namespace tapegrad
