// cuDNN for the CUDA twin: one handle on the backend's stream, and the status check. (The convolution part
// of the backend keeps its own accessor for now; the two are to become this one.)
#pragma once

#include <cudnn.h>

#include "tapegrad/error.hpp"

namespace tapegrad::cuda {

// The handle, created on first use and bound to stream() (throws without a device).
cudnnHandle_t dnn_handle();

#define TG_CUDNN_CHECK(call)                                                                            \
  do {                                                                                                  \
    cudnnStatus_t s_ = (call);                                                                          \
    TG_CHECK(s_ == CUDNN_STATUS_SUCCESS, "cudnn: ", #call, " failed: ", cudnnGetErrorString(s_), " (", \
             __FILE__, ":", __LINE__, ")");                                                             \
  } while (0)

}  // namespace tapegrad::cuda
