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

// Note [First block fused] (in the .cpp): conv (one input channel, 3x3, stride 1, padding 1) -> batch norm with
// batch statistics -> 2x2 max-pool, without the full-size convolution output. The statistics come from the
// moments of the input's 3x3 patches (9 means and a 9x9 centred second-moment matrix, `moments`:
// kFirstBlockMoments doubles), which the backward reuses.
constexpr int64_t kFirstBlockMoments = 9 + 81;

// True when the fused first-block kernels take s: a one-input-channel 3x3 convolution with stride 1 and
// padding 1 whose output has at least 2x2 pixels.
bool first_block_supported(const ConvShape& s);

// y = max_pool2x2(batch_norm(conv(x, w) + bias, gamma, beta, eps)) with the batch statistics: y, the argmax
// positions idx (offsets in the oh x ow plane, as max_pool2d's), mean and invstd (oc) of the convolution's
// output per channel, and the moments for the backward. y, idx: (n, oc, oh / 2, ow / 2). Overwrites all
// outputs.
// requires: first_block_supported(s); no aliasing.
// relu: y is relu of the pooled output (unary relu's arithmetic); idx unchanged.
void first_block_forward(const float* x, const float* w, const float* bias, const float* gamma, const float* beta,
                         double eps, bool relu, const ConvShape& s, float* y, int32_t* idx, float* mean,
                         float* invstd, double* moments);

// The first-order backward of first_block_forward for the gradient g of y: gw (oc, 1, 3, 3), ggamma and
// gbeta (oc). The bias gradient is zero (batch norm removes any per-channel constant) and not written.
// requires: the forward's x, w, idx, gamma, invstd and moments for the same s; no aliasing.
// relu_y: the forward's output when it took the relu (g is then relu_grad's input), else null.
void first_block_backward(const float* x, const float* w, const float* g, const float* relu_y, const int32_t* idx,
                          const float* gamma, const float* invstd, const double* moments, const ConvShape& s,
                          float* gw, float* ggamma, float* gbeta);

}  // namespace metafew::tensor
