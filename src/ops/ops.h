#pragma once
// Differentiable ops on Variables. Every op keeps its forward, its backward rule and its shape checks in one
// place, and every backward rule is written with these same ops, so derivatives of any order exist
// (ARCHITECTURE.md, decision 1): a rule never reads raw buffers of its gradient argument.
#include <vector>

#include "autograd/variable.h"
#include "tensor/conv_shape.h"

namespace metafew::ops {

using autograd::Variable;
using tensor::Shape;
using tensor::Tensor;

// ---- element-wise (numpy broadcasting) ----
Variable add(const Variable& a, const Variable& b);
Variable sub(const Variable& a, const Variable& b);
Variable mul(const Variable& a, const Variable& b);
Variable div(const Variable& a, const Variable& b);
Variable neg(const Variable& x);
Variable exp(const Variable& x);
Variable log(const Variable& x);
Variable pow(const Variable& x, double exponent);
Variable sqrt(const Variable& x);
Variable rsqrt(const Variable& x);
Variable relu(const Variable& x);
// g * (x > 0): relu's backward. Its derivative in x is zero almost everywhere, so only g is differentiated.
Variable relu_grad(const Variable& g, const Variable& x);
// x > 0 ? x : slope x (ResNet-12's activation, slope 0.1), and its backward g * (x > 0 ? 1 : slope), whose
// derivative in x is zero almost everywhere (only g is differentiated).
Variable leaky_relu(const Variable& x, double slope);
Variable leaky_relu_grad(const Variable& g, const Variable& x, double slope);
Variable add_scalar(const Variable& x, double c);
Variable mul_scalar(const Variable& x, double c);

// ---- broadcasting and reductions ----
Variable sum_to(const Variable& x, const Shape& shape);        // adjoint of broadcast_to
Variable broadcast_to(const Variable& x, const Shape& shape);
Variable sum(const Variable& x, const std::vector<int64_t>& axes, bool keepdim = false);
Variable sum(const Variable& x);  // all elements, a scalar
Variable mean(const Variable& x, const std::vector<int64_t>& axes, bool keepdim = false);
Variable mean(const Variable& x);

// ---- shape ----
Variable reshape(const Variable& x, const Shape& shape);
Variable flatten(const Variable& x, int64_t start_axis = 1);  // keeps axes before start_axis
Variable permute(const Variable& x, const std::vector<int64_t>& perm);
Variable transpose(const Variable& x, int64_t axis0 = 0, int64_t axis1 = 1);
Variable slice(const Variable& x, int64_t axis, int64_t start, int64_t end);
Variable slice_scatter(const Variable& g, const Shape& full, int64_t axis, int64_t start);
Variable concat(const std::vector<Variable>& xs, int64_t axis);
Variable index_select(const Variable& x, int64_t axis, const Tensor& index);  // i32 index
Variable index_add(const Variable& g, int64_t axis, const Tensor& index, int64_t size);

// ---- linear algebra ----
Variable matmul(const Variable& a, const Variable& b, bool trans_a = false, bool trans_b = false);
// x (N, in) @ w (out, in)^T + b (out); b may be undefined.
Variable linear(const Variable& x, const Variable& w, const Variable& b);

// ---- convolution: the closed triple (Note [Double backward of conv] in conv.cpp) ----
struct Conv2dParams {
  int64_t stride = 1;
  int64_t padding = 0;
  tensor::ConvAlgorithm algorithm = tensor::ConvAlgorithm::direct;  // f32 only; every derivative uses it too
};
tensor::ConvShape conv_shape(const Shape& x_shape, const Shape& w_shape, const Conv2dParams& p, const char* op);
// x (N, C, H, W), w (O, C, kh, kw), b (O) or undefined.
Variable conv2d(const Variable& x, const Variable& w, const Variable& b, const Conv2dParams& p);
Variable conv2d(const Variable& x, const Variable& w, const Conv2dParams& p);
Variable conv2d_grad_input(const Variable& gy, const Variable& w, const Shape& x_shape, const Conv2dParams& p);
Variable conv2d_grad_weight(const Variable& x, const Variable& gy, const Shape& w_shape, const Conv2dParams& p);

// ---- pooling (indices kept; scatter and gather are each other's adjoint) ----
Variable max_pool2d(const Variable& x, int64_t kernel, int64_t stride);
Variable pool_scatter(const Variable& g, const Tensor& index, const Shape& input_shape);
Variable pool_gather(const Variable& x, const Tensor& index, const Shape& output_shape);

// ---- normalisation: batch statistics over (N, H, W), affine gamma and beta of C elements ----
Variable batch_norm(const Variable& x, const Variable& gamma, const Variable& beta, double eps = 1e-5);
// leaky_relu(batch_norm(x, gamma, beta, eps), slope) as one op (slope > 0): the same values and derivatives of
// every order, without keeping the normalised tensor (the backward reads the output, which is positive
// exactly where the normalised value is).
Variable batch_norm_leaky_relu(const Variable& x, const Variable& gamma, const Variable& beta, double eps,
                               double slope);
// leaky_relu(batch_norm(a, ga, ba, eps) + batch_norm(b, gb, bb, eps), slope) as one op (slope > 0): a
// residual block's end. The same values and derivatives of every order as the composition; the graph keeps
// a, b and the output only, not the two normalised tensors and their sum.
Variable batch_norm_add_leaky_relu(const Variable& a, const Variable& ga, const Variable& ba, const Variable& b,
                                   const Variable& gb, const Variable& bb, double eps, double slope);
// max_pool2d(batch_norm(x, gamma, beta, eps), 2, 2) as one op (Note [Batch norm and max-pool fused]); with
// relu, relu of it (the same values and derivatives as ops::relu after it, one pass fewer each way).
Variable batch_norm_max_pool(const Variable& x, const Variable& gamma, const Variable& beta, double eps = 1e-5,
                             bool relu = false);
// batch_norm_max_pool(conv2d(x, w, b, p), gamma, beta, eps) as one op where x is data (no gradient) of one
// channel in f32 and the convolution 3x3 with stride 1 and padding 1 (Note [First block fused] in
// tensor/conv_single_channel.cpp); where x and the output have multiples of 16 channels, everything is f32
// and oneDNN computes the convolution in its blocked layout, with the convolution's output and gradient kept
// in that layout (Note [Blocked conv block] in norm.cpp); the composition of the two ops otherwise. b must
// be defined. relu as batch_norm_max_pool's.
Variable conv_bn_max_pool(const Variable& x, const Variable& w, const Variable& b, const Variable& gamma,
                          const Variable& beta, const Conv2dParams& p, double eps = 1e-5, bool relu = false);
// Its backward as two fused ops (Note [Batch norm backward] in norm.cpp): sums (2, C) = [sum(g * xh); sum(g)]
// over (N, H, W), and dx = gamma * invstd * (g - sums[1] / M - xh * sums[0] / M).
Variable batch_norm_grad_sums(const Variable& g, const Variable& x, double eps = 1e-5);
Variable batch_norm_grad_input(const Variable& g, const Variable& x, const Variable& gamma, const Variable& sums,
                               double eps = 1e-5);

// ---- softmax and losses ----
Variable log_softmax(const Variable& x, int64_t axis = -1);
Variable softmax(const Variable& x, int64_t axis = -1);
// Mean over rows of -log_softmax(logits)[row, label]; logits (N, C), labels i32 (N) in [0, C).
Variable cross_entropy(const Variable& logits, const Tensor& labels);
Variable mse(const Variable& prediction, const Variable& target);
// (N, D) and (M, D) -> (N, M): squared Euclidean distances, and cosine similarities.
Variable pairwise_sq_distance(const Variable& a, const Variable& b);
Variable cosine_similarity(const Variable& a, const Variable& b, double eps = 1e-8);

// ---- operators ----
inline Variable operator+(const Variable& a, const Variable& b) { return add(a, b); }
inline Variable operator-(const Variable& a, const Variable& b) { return sub(a, b); }
inline Variable operator*(const Variable& a, const Variable& b) { return mul(a, b); }
inline Variable operator/(const Variable& a, const Variable& b) { return div(a, b); }
inline Variable operator-(const Variable& x) { return neg(x); }
inline Variable operator*(const Variable& x, double c) { return mul_scalar(x, c); }
inline Variable operator*(double c, const Variable& x) { return mul_scalar(x, c); }
inline Variable operator+(const Variable& x, double c) { return add_scalar(x, c); }

}  // namespace metafew::ops
