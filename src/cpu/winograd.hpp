// Winograd's F(4x4, 3x3) for the CPU twin's 3x3 stride-1 convolutions in f32 (src/cpu/winograd.cpp); the other
// convolutions, f64 and the baseline level run src/cpu/conv.cpp's im2col products.
#pragma once

#include "../backend.hpp"

namespace tapegrad::cpu {

// True when a f32 convolution of this geometry runs winograd_forward: 3x3, stride 1, a level with Winograd's
// transforms (AVX2, AVX-512), and conv_algorithm() (tensor.hpp; TG_CONV) Winograd, or Auto and a geometry where
// it measured faster (32 channels and more in and out, 64 and more on one side, planes of 8x8 and more: see
// winograd.cpp). Throws tapegrad::Error for an unknown TG_CONV.
bool use_winograd(const backend::Window2d& g);

// True when conv2d_backward_weight runs winograd_backward_weight for this (forward) geometry: as use_winograd, on
// the geometries where the weight gradient measured faster than the direct one.
bool use_winograd_weight(const backend::Window2d& g);

// y [N, K, P, Q] = the convolution of x [N, C, H, W] with w [K, C, 3, 3] (+ bias [K] when not nullptr), stride 1,
// padding g.pad_h, g.pad_w, as conv2d_forward.
void winograd_forward(const float* x, const float* w, const float* bias, const backend::Window2d& g, float* y);

// gw [K, C, 3, 3] = the weight gradient of that convolution for its output gradient gy [N, K, P, Q] and input x
// (the bias gradient is the caller's). The results do not depend on the thread count.
void winograd_backward_weight(const float* gy, const float* x, const backend::Window2d& g, float* gw);

}  // namespace tapegrad::cpu
