#pragma once
// Batch norm (batch statistics) + 2x2 max-pool (+ ReLU) on a convolution's output kept in oneDNN's nChw16c
// layout, and its first-order backward writing the convolution's output gradient in that layout: the middle
// of a conv-4 block with no reorder between the convolution and these kernels (Note [Blocked conv block] in
// ops/norm.cpp; Note [Blocked batch norm and pooling] in the .cpp).
//
// Layouts: yb, gyb (n, c, h, w) in nChw16c ([n][c / 16][h * w][16]); code, sel (n, c, h / 2, w / 2) in
// nChw16c; out, g, relu_out (n, c, h / 2, w / 2) NCHW. c a multiple of 16, h, w >= 2. Buffers do not overlap.
// Determinism: every value is computed in one fixed order whatever the thread count; outside an OpenMP
// parallel region large calls split their channel blocks over threads.
#include <cstdint>

namespace metafew::tensor {

// out = max_pool2x2(batch_norm(yb, gamma, beta, eps)) (relu'd when relu) with mean and invstd (c) of yb per
// channel; code: the argmax corner of each window (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right;
// ties keep the first in that order, as max_pool2d); sel: yb at the argmax. Overwrites all outputs.
void bn_max_pool_nchw16c(const float* yb, const float* gamma, const float* beta, double eps, bool relu,
                         int64_t n, int64_t c, int64_t h, int64_t w, float* out, int32_t* code, float* sel,
                         float* mean, float* invstd);

// For the gradient g of out: sums (2, c) = [sum gz (sel - mean) invstd; sum gz] (the gamma and beta
// gradients) with gz = g, or g * (relu_out > 0) when relu_out is not null; and, when gyb is not null, the
// gradient of yb (batch_norm_max_pool_backward's arithmetic). Overwrites sums and gyb.
void bn_max_pool_nchw16c_backward(const float* g, const float* relu_out, const int32_t* code,
                                  const float* sel, const float* yb, const float* gamma, const float* mean,
                                  const float* invstd, int64_t n, int64_t c, int64_t h, int64_t w,
                                  float* sums, float* gyb);

// The argmax positions of `code` as max_pool2d's indices: (n, c, h / 2, w / 2) NCHW offsets in the h x w
// plane.
void pool_code_to_index(const int32_t* code, int64_t n, int64_t c, int64_t h, int64_t w, int32_t* index);

}  // namespace metafew::tensor
