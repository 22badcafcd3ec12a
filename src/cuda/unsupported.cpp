// The LSTM twins of the CUDA backend (cuDNN RNN) are not written yet: they throw, naming the kernel, so that a
// model that needs them fails at once instead of falling back to the CPU. (Convolution, batch norm and pooling:
// dnn.cpp, dnn_kernels.cu.)
#include "cuda.hpp"

namespace tapegrad::cuda {

[[noreturn]] static void not_yet(const char* kernel) {
  TG_FAIL(kernel, ": not implemented on CUDA yet (the LSTM comes with part 2 of the CUDA backend); run this model "
                  "on the CPU");
}

void lstm_forward(const Tensor&, const Tensor&, const Tensor&, const LstmWeights&, Tensor&, Tensor&, Tensor&, Tensor&) {
  not_yet("lstm");
}
void lstm_backward(const Tensor&, const Tensor&, const Tensor&, const LstmWeights&, const Tensor&, const Tensor&,
                   const Tensor&, const Tensor&, const Tensor&, Tensor&, Tensor&, Tensor&, LstmWeights&) {
  not_yet("lstm_backward");
}

}  // namespace tapegrad::cuda
