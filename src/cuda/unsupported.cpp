// Part 2 of the CUDA backend (cuDNN convolution, batch norm, pooling) is not written yet: these twins
// throw, naming the kernel, so that a model that needs them fails at once instead of falling back to the CPU.
#include "cuda.hpp"

namespace tapegrad::cuda {

[[noreturn]] static void not_yet(const char* kernel) {
  TG_FAIL(kernel, ": not implemented on CUDA yet (convolution, batch norm and pooling come with part 2 of the "
                  "CUDA backend); run this model on the CPU");
}

void conv2d_forward(const Tensor&, const Tensor&, const Tensor&, const Window2d&, Tensor&) { not_yet("conv2d"); }
void conv2d_backward_input(const Tensor&, const Tensor&, const Window2d&, Tensor&) { not_yet("conv2d_backward_input"); }
void conv2d_backward_weight(const Tensor&, const Tensor&, const Window2d&, Tensor&, Tensor&) {
  not_yet("conv2d_backward_weight");
}
void batch_norm_forward_training(const Tensor&, const Tensor&, const Tensor&, double, double, Tensor&, Tensor&,
                                 Tensor&, Tensor&, Tensor&) {
  not_yet("batch_norm");
}
void batch_norm_forward_inference(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, double,
                                  Tensor&) {
  not_yet("batch_norm");
}
void batch_norm_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, bool, Tensor&,
                         Tensor&, Tensor&) {
  not_yet("batch_norm_backward");
}
void max_pool2d_forward(const Tensor&, const Window2d&, Tensor&, Tensor&) { not_yet("max_pool2d"); }
void max_pool2d_backward(const Tensor&, const Tensor&, const Window2d&, Tensor&) { not_yet("max_pool2d_backward"); }
void avg_pool2d_forward(const Tensor&, const Window2d&, Tensor&) { not_yet("avg_pool2d"); }
void avg_pool2d_backward(const Tensor&, const Window2d&, Tensor&) { not_yet("avg_pool2d_backward"); }

}  // namespace tapegrad::cuda
