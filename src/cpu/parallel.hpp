// parallel_for: the one way the CPU kernels split work across OpenMP threads.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>

namespace tapegrad::cpu {

// Below this many elements a loop runs on one thread: starting a parallel region costs more.
constexpr int64_t kGrain = 32768;

// Calls body(begin, end) on contiguous blocks covering [0, n), one per thread when n >= grain (and not
// already inside a parallel region). Blocks start on multiples of 16 items, so that threads writing
// f32 elements never share a 64-byte cache line.
template <class Body>
void parallel_for(int64_t n, Body&& body, int64_t grain = kGrain) {
  if (n < grain || omp_get_max_threads() == 1 || omp_in_parallel()) {
    body(int64_t{0}, n);
    return;
  }
#pragma omp parallel
  {
    const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t per = ((n + nt - 1) / nt + 15) / 16 * 16;
    const int64_t begin = std::min(n, t * per), end = std::min(n, begin + per);
    if (begin < end) body(begin, end);
  }
}

}  // namespace tapegrad::cpu
