#pragma once
// Direct f32 kernels for convolutions with one input channel and a 3x3 kernel: the first layer of every
// Omniglot network (1 -> 64 channels at 28x28). Note [Single-channel convolution] in the .cpp says why they
// exist beside oneDNN and how they are built.
//
// Layouts as everywhere in tensor/: x, y, gy contiguous NCHW, w, gw contiguous OIHW (here (oc, 1, 3, 3)),
// bias and gbias contiguous (oc). Any stride and padding.
// Determinism: each output element is summed in one fixed order whatever the thread count; the kernels use
// several OpenMP threads only outside a parallel region and when omp_get_max_threads() > 1.
#include "tensor/conv_shape.h"

namespace metafew::tensor {

// True when the kernels below take s: s.valid(), s.ic == 1, s.kh == s.kw == 3.
bool conv_single_channel_supported(const ConvShape& s);

// y = conv(x, w) (+ bias[o] when bias != nullptr). Overwrites y.
// requires: conv_single_channel_supported(s); x: s.x_numel(), w: s.w_numel(), y: s.y_numel(); y aliases
//           nothing.
void conv2d_single_channel(const float* x, const float* w, const float* bias, float* y, const ConvShape& s);

// gw = (d conv / d w)^T gy and, when gbias != nullptr, gbias[o] = sum_{n,i,j} gy[n,o,i,j]. Overwrites both.
// requires: conv_single_channel_supported(s); x: s.x_numel(), gy: s.y_numel(), gw: s.w_numel(),
//           gbias: s.oc or nullptr; no aliasing.
void conv2d_grad_weight_single_channel(const float* x, const float* gy, float* gw, float* gbias,
                                       const ConvShape& s);

}  // namespace metafew::tensor
