// The CUDA twin of the backend facade: the same signatures as the CPU's (kernels.inc), compiled only with
// -Dcuda=enabled. Elementwise, reductions, softmax, losses, layout: small kernels (kernels.cu); gemm and
// linear_forward: cuBLAS / cuBLASLt (blas.cpp); convolution and batch norm: cuDNN (dnn.cpp); pooling: small
// kernels (dnn_kernels.cu); LSTM: cuDNN's RNN API (rnn.cpp).
#pragma once

#include "../backend.hpp"

namespace tapegrad::cuda {
using backend::Binary;
using backend::LstmWeights;
using backend::Unary;
using backend::Window2d;
#include "../kernels.inc"

// A tensor's elements as T (nullptr for an undefined tensor): device memory, for kernels only.
template <class T>
T* ptr(const Tensor& t) { return t.defined() ? static_cast<T*>(t.raw_data()) : nullptr; }

// Errors a kernel finds in its data (a label or index out of range) are recorded on the device and thrown at
// the next point where the host waits anyway (a copy to the host, synchronize()): checking at once would
// make every loss wait for the GPU.
void throw_device_error();
}  // namespace tapegrad::cuda
