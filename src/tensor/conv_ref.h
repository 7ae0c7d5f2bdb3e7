#pragma once
// Naive reference kernels for the convolution triple (ARCHITECTURE.md, decision 2): the ground truth that the
// oneDNN kernels are fuzzed against and the f64 kernels that gradient checks run on.
//
// Layouts: x, gx, y, gy contiguous NCHW; w, gw contiguous OIHW; shapes from `s` (see conv_shape.h).
// Every kernel overwrites its output, accumulates in double whatever T is, and writes each output element
// from exactly one thread, so results do not depend on the thread count. The three kernels are the same
// bilinear form read three ways, so for any x, w, gy:
//   <conv2d_ref(x, w), gy> == <x, conv2d_grad_input_ref(gy, w)> == <w, conv2d_grad_weight_ref(x, gy)>
// up to rounding of the double accumulations.
#include "tensor/conv_shape.h"

namespace metafew::tensor {

// requires: s.valid(); x has s.x_numel() elements, w has s.w_numel(), y has s.y_numel(); no aliasing.
// ensures:  y[n,o,i,j] = sum_{c,a,b} x[n, c, i*sh - ph + a, j*sw - pw + b] * w[o,c,a,b]
//           (x outside the image reads as 0).
template <class T>
void conv2d_ref(const T* x, const T* w, T* y, const ConvShape& s);

// requires: s.valid(); gy has s.y_numel() elements, w has s.w_numel(), gx has s.x_numel(); no aliasing.
// ensures:  gx = (d conv2d / d x)^T gy, i.e. gx[n,c,p,q] = sum of gy[n,o,i,j] * w[o,c,a,b]
//           over all (o,i,j,a,b) with i*sh - ph + a == p and j*sw - pw + b == q.
template <class T>
void conv2d_grad_input_ref(const T* gy, const T* w, T* gx, const ConvShape& s);

// requires: s.valid(); x has s.x_numel() elements, gy has s.y_numel(), gw has s.w_numel(); no aliasing.
// ensures:  gw[o,c,a,b] = sum_{n,i,j} gy[n,o,i,j] * x[n, c, i*sh - ph + a, j*sw - pw + b].
template <class T>
void conv2d_grad_weight_ref(const T* x, const T* gy, T* gw, const ConvShape& s);

extern template void conv2d_ref<float>(const float*, const float*, float*, const ConvShape&);
extern template void conv2d_ref<double>(const double*, const double*, double*, const ConvShape&);
extern template void conv2d_grad_input_ref<float>(const float*, const float*, float*, const ConvShape&);
extern template void conv2d_grad_input_ref<double>(const double*, const double*, double*, const ConvShape&);
extern template void conv2d_grad_weight_ref<float>(const float*, const float*, float*, const ConvShape&);
extern template void conv2d_grad_weight_ref<double>(const double*, const double*, double*, const ConvShape&);

}  // namespace metafew::tensor
