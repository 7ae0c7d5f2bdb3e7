#pragma once
// Note [Kernels by concern]: elementwise.cpp, shape_kernels.cpp, pool_softmax.cpp and batch_norm.cpp implement
// what this header declares; tensor/ holds no oneDNN call (matrix products are in backend/dnnl/matmul.h).
// Raw kernels on tensors: no gradients here. Floating kernels accept f32 and f64 (f64 exists for gradient
// checks); inputs must share a dtype. Element-wise work is split across OpenMP threads when large enough and
// not already inside a parallel region (ARCHITECTURE.md, decision 3); reductions run in a fixed order, so
// results do not depend on the thread count.
#include <optional>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace metafew::tensor {

enum class BinaryOp { add, sub, mul, div };
enum class UnaryOp { neg, exp, log, sqrt, rsqrt, relu, leaky_relu, step, pow, add_scalar, mul_scalar };

// a (op) b with numpy broadcasting.
Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b);
// f(a); `param` is the exponent of pow, the scalar of add_scalar / mul_scalar and the negative slope of
// leaky_relu (x > 0 ? x : slope x). step(x) = x > 0 ? 1 : 0.
Tensor unary(UnaryOp op, const Tensor& a, double param = 0.0);

// g where x > 0, else 0: the backward of relu in one pass.
Tensor relu_grad(const Tensor& g, const Tensor& x);
// g where x > 0, else slope * g: the backward of leaky_relu.
Tensor leaky_relu_grad(const Tensor& g, const Tensor& x, double slope);

// Sums x down to `target` (x's shape must broadcast from target): the adjoint of broadcast_to.
Tensor sum_to(const Tensor& x, const Shape& target);
Tensor broadcast_to(const Tensor& x, const Shape& target);

Tensor permute(const Tensor& x, const std::vector<int64_t>& perm);
// x[..., start:end, ...] along `axis`, and its adjoint: zeros of `full` with g written at [start, start+len).
Tensor slice(const Tensor& x, int64_t axis, int64_t start, int64_t end);
Tensor slice_scatter(const Tensor& g, const Shape& full, int64_t axis, int64_t start);
Tensor concat(const std::vector<Tensor>& xs, int64_t axis);
// Rows of x along `axis` picked by i32 indices, and its adjoint: zeros with extent `size` along axis, g added.
Tensor index_select(const Tensor& x, int64_t axis, const Tensor& index);
Tensor index_add(const Tensor& g, int64_t axis, const Tensor& index, int64_t size);

// Matrix products are backend::dnnl_backend::matmul (backend/dnnl/matmul.h): f32 runs oneDNN's sgemm.

// Max pooling of NCHW with a square window, no padding; returns (y, i32 argmax within each input plane).
std::pair<Tensor, Tensor> max_pool2d(const Tensor& x, int64_t kernel, int64_t stride);
// y-shaped g sent to the argmax positions of an `input_shape` tensor (summing collisions), and its adjoint.
Tensor pool_scatter(const Tensor& g, const Tensor& index, const Shape& input_shape);
Tensor pool_gather(const Tensor& x, const Tensor& index, const Shape& output_shape);

Tensor log_softmax(const Tensor& x, int64_t axis);
Tensor softmax(const Tensor& x, int64_t axis);

// Batch norm over (N, H, W) of an NCHW tensor (or over N of an (N, C) one) with batch statistics:
// y = (x - mean) / sqrt(var + eps) * gamma + beta, var biased. Returns y; mean and invstd if asked. With a
// leaky_slope, y goes through leaky_relu with that slope as it is written (unary leaky_relu's arithmetic:
// the same numbers as the two kernels, without the normalised tensor).
Tensor batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps, Tensor* mean = nullptr,
                  Tensor* invstd = nullptr, std::optional<double> leaky_slope = std::nullopt);

// Batch norm backward in two passes, given the forward's per-channel mean and invstd (C elements):
//   sums (2, C): row 0 = sum over (N, H, W) of g * xh, row 1 = sum of g, with xh = (x - mean) * invstd;
//   dx = gamma * invstd * (g - sums[1] / M - xh * sums[0] / M), M = N * H * W.
Tensor batch_norm_grad_sums(const Tensor& g, const Tensor& x, const Tensor& mean, const Tensor& invstd);
Tensor batch_norm_grad_input(const Tensor& g, const Tensor& x, const Tensor& gamma, const Tensor& mean,
                             const Tensor& invstd, const Tensor& sums);
// Per-channel mean and invstd = 1 / sqrt(var + eps) of x (biased variance), as batch_norm computes them.
void batch_norm_stats(const Tensor& x, double eps, Tensor* mean, Tensor* invstd);

// Note [Batch norm double backward, fused] (ops/norm.cpp): the backward rules of the two ops above, each in
// one or two passes, for when no graph is recorded (the rules' values; with create_graph the composition of
// differentiable ops is used instead). M = N * H * W, r = invstd, xh = (x - mean) * r.
// Rule of batch_norm_grad_input(g, x, gamma, sums) for the cotangent v (shaped like x):
//   dg = B(v, x, gamma, 0), dx, dgamma (C) and dsums (2, C) as Note [Batch norm double backward] states them;
//   dg and dx are formed only when asked (want_dg, want_dx).
struct BnGradInputRule {
  Tensor dg, dx, dgamma, dsums;
};
BnGradInputRule batch_norm_grad_input_rule(const Tensor& v, const Tensor& g, const Tensor& x, const Tensor& gamma,
                                           const Tensor& mean, const Tensor& invstd, const Tensor& sums,
                                           bool want_dg, bool want_dx, const Tensor* index = nullptr);
// Rule of batch_norm_grad_sums(g, x) (whose value is `sums`) for the per-channel cotangent u (2, C):
//   dg = u[0] * xh + u[1];   dx = u[0] * r * (g - sums[1] / M - xh * sums[0] / M).
std::pair<Tensor, Tensor> batch_norm_grad_sums_rule(const Tensor& u, const Tensor& g, const Tensor& x,
                                                    const Tensor& mean, const Tensor& invstd, const Tensor& sums,
                                                    bool want_dg, bool want_dx, const Tensor* index = nullptr);
// With `index` (both rules): g is 2x2-pooled, standing for pool_scatter(g, *index, x.shape()) (2x2 windows, at
// most one position each), and dg is pooled too: the rule's dg gathered at those positions (pool_gather).
// The full-size scattered gradient and dg are never formed.

// Note [Batch norm and max-pool fused]: max_pool2d(batch_norm(x), 2, 2) in one kernel: the statistics (two
// passes over x, as batch_norm), then one pass that normalises each 2x2 window and keeps its maximum, so the
// full-size normalised tensor is never written. Returns (y, i32 argmax within each input plane) exactly as
// max_pool2d on batch_norm's output (same arithmetic, same tie rule); mean and invstd as batch_norm;
// `selected` (when not null): x at each window's argmax (the input before normalisation, shaped as y), which
// the backward reads instead of gathering it from x. NCHW only.
// relu: the output is relu(y) (unary relu's arithmetic), with the same index and `selected`.
std::pair<Tensor, Tensor> batch_norm_max_pool(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps,
                                              Tensor* mean, Tensor* invstd, Tensor* selected = nullptr,
                                              bool relu = false);
// Its first backward in one pass over x: with gz = pool_scatter(g, index, x.shape()) (never formed),
//   sums (2, C) = [sum(gz * xh); sum(gz)] (read from the pooled positions only, through `selected`) and
//   dx = gamma * invstd * (gz - sums[1] / M - xh * sums[0] / M), M = N * H * W.
// Returns (dx, sums); dx is left undefined when want_dx is false.
// relu_y (when not null): the forward's relu output, and g its gradient: the kernel takes relu_grad(g, relu_y)
// = g * (relu_y > 0) as it reads g.
std::pair<Tensor, Tensor> batch_norm_max_pool_backward(const Tensor& g, const Tensor& index, const Tensor& selected,
                                                       const Tensor& x, const Tensor& gamma, const Tensor& mean,
                                                       const Tensor& invstd, bool want_dx,
                                                       const Tensor* relu_y = nullptr);

// Largest |a - b| and largest |b|: test helpers.
double max_abs_diff(const Tensor& a, const Tensor& b);
double max_abs(const Tensor& a);

// True when kernels may start their own OpenMP team (not already inside one).
bool may_parallelize(int64_t work);

}  // namespace metafew::tensor
