// The CPU twin of the backend facade: Eigen for matrix products, OpenMP loops for the rest.
#pragma once

#include "../backend.hpp"

namespace tapegrad::cpu {
using backend::Binary;
using backend::LstmWeights;
using backend::Unary;
using backend::Window2d;
#include "../kernels.inc"

// A tensor's elements as T (nullptr for an undefined tensor: optional operands such as a bias).
template <class T>
T* ptr(Tensor& t) { return t.defined() ? static_cast<T*>(t.raw_data()) : nullptr; }
template <class T>
const T* ptr(const Tensor& t) { return t.defined() ? static_cast<const T*>(t.raw_data()) : nullptr; }
}  // namespace tapegrad::cpu
