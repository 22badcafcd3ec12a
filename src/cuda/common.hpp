// Shared by the CUDA twin's sources: the stream, error checks, launch geometry.
#pragma once

#include <cuda_runtime.h>

#include <cstring>

#include "tapegrad/error.hpp"

namespace tapegrad::cuda {

// The one stream all work is queued on (created on first use; throws without a device).
cudaStream_t stream();
// Throws "no CUDA device" naming `what` when there is none.
void require_device(const char* what);

#define TG_CUDA_CHECK(call)                                                                        \
  do {                                                                                             \
    cudaError_t e_ = (call);                                                                       \
    TG_CHECK(e_ == cudaSuccess, "cuda: ", #call, " failed: ", cudaGetErrorString(e_), " (", __FILE__, \
             ":", __LINE__, ")");                                                                  \
  } while (0)

}  // namespace tapegrad::cuda
