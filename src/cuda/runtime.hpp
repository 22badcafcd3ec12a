// The CUDA runtime as the core sees it (tensor.cpp: storage, copies, waiting): plain C++, no CUDA headers.
// One device (the current one), one stream: kernels, copies and frees are ordered on it, so the host waits
// only where it reads results (copies to the host, synchronize()).
#pragma once

#include <cstddef>

namespace tapegrad::cuda {

// GPUs visible to this process; 0 when cudaGetDeviceCount fails (no driver, no device).
int device_count();
// Memory from the caching allocator (size-bucketed free lists; cudaMalloc only on a miss). Throws "no CUDA
// device" without a GPU, and on exhaustion an error saying how much was asked, cached and free.
void* allocate(size_t bytes);
// Back to the free list of its size (not to the driver): work queued on the stream that still reads it
// runs before any later use, the stream being the one queue.
void release(void* p, size_t bytes);
// bytes from src to dst, each on the host or the device. Host to device goes through pinned staging and
// does not wait; device to host waits for the copy (and everything queued before it).
void copy(void* dst, bool dst_on_device, const void* src, bool src_on_device, size_t bytes);
// Waits for everything queued on the stream.
void synchronize();
// The allocator's counters (tests, out-of-memory messages, benchmarks): bytes handed out, bytes cached for
// reuse, and the most bytes handed out at once since the start or reset_peak().
struct MemoryStats {
  size_t in_use = 0, cached = 0, peak = 0;
};
MemoryStats memory_stats();
void reset_peak();  // the peak starts again from what is in use now

}  // namespace tapegrad::cuda
