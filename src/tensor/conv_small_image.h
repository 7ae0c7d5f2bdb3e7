#pragma once
// A direct f32 backward-weights kernel for convolutions on tiny images (at most 16 pixels per input plane):
// the last layer of the Omniglot conv-4 network (64 -> 64 channels at 3x3 pixels). Note [Small-image weight
// gradient] in the .cpp says why it exists beside oneDNN and how it is built.
//
// Layouts as everywhere in tensor/: x, gy contiguous NCHW, gw contiguous OIHW, gbias contiguous (oc).
// Determinism: each output element is summed in one fixed order (over n, then output pixels) whatever the
// thread count; the kernel uses several OpenMP threads only outside a parallel region, when
// omp_get_max_threads() > 1 and the convolution is large enough to gain from it.
#include "tensor/conv_shape.h"

namespace metafew::tensor {

// True when conv2d_grad_weight_small_image takes s: s.valid(), s.ih * s.iw <= 16 and s.kh * s.kw <= 16.
bool conv_small_image_supported(const ConvShape& s);

// gw = (d conv / d w)^T gy and, when gbias != nullptr, gbias[o] = sum_{n,i,j} gy[n,o,i,j]. Overwrites both.
// requires: conv_small_image_supported(s); x: s.x_numel(), gy: s.y_numel(), gw: s.w_numel(), gbias: s.oc or
//           nullptr; no aliasing.
void conv2d_grad_weight_small_image(const float* x, const float* gy, float* gw, float* gbias, const ConvShape& s);

}  // namespace metafew::tensor
