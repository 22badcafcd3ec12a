// The CPU twin of the backend facade: Eigen for matrix products, OpenMP loops for the rest.
#pragma once

#include "../backend.hpp"

namespace tapegrad::cpu {
using backend::Binary;
using backend::LstmWeights;
using backend::Unary;
using backend::Window2d;
#include "../kernels.inc"
}  // namespace tapegrad::cpu
