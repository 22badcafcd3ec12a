#include "cudnn.hpp"

#include "common.hpp"

namespace tapegrad::cuda {

cudnnHandle_t dnn_handle() {
  static cudnnHandle_t h = [] {
    require_device("cudnn");
    cudnnHandle_t c;
    TG_CUDNN_CHECK(cudnnCreate(&c));
    TG_CUDNN_CHECK(cudnnSetStream(c, stream()));
    return c;
  }();
  return h;
}

}  // namespace tapegrad::cuda
