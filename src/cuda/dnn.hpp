// Shared by the cuDNN twins (dnn.cpp, rnn.cpp) and their small kernels (dnn_kernels.cu): the handle, error checks.
#pragma once

#include <cudnn.h>

#include "common.hpp"
#include "cuda.hpp"

namespace tapegrad::cuda {

#define TG_CUDNN_CHECK(call)                                                                           \
  do {                                                                                                 \
    cudnnStatus_t s_ = (call);                                                                         \
    TG_CHECK(s_ == CUDNN_STATUS_SUCCESS, "cudnn: ", #call, " failed: ", cudnnGetErrorString(s_), " (", \
             __FILE__, ":", __LINE__, ")");                                                            \
  } while (0)

// The one cuDNN handle, on the backend's stream (created on first use; throws without a device).
cudnnHandle_t dnn_handle();

// Batch norm's input gradient in evaluation (constant mean and invstd): gx [N, C, inner] = weight[c] invstd[c]
// gy (weight undefined: 1). dnn_kernels.cu.
void batch_norm_backward_constant_stats(const Tensor& gy, const Tensor& weight, const Tensor& invstd, int64_t N,
                                        int64_t C, int64_t inner, Tensor& gx);

}  // namespace tapegrad::cuda
