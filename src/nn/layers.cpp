#include "nn/layers.h"

namespace metafew::nn {

namespace {

template <class F>
Stream each(const Stream& s, F f) {
  return {f(s.x), s.paired() ? f(s.support) : Variable()};
}

// Batch norm of hs with its own statistics and of hq with hs's (bn = support), written with ops so that every
// derivative order exists.
std::pair<Variable, Variable> bn_support_stats(const Variable& hs, const Variable& hq, const Variable& gamma,
                                               const Variable& beta) {
  const std::vector<int64_t> axes = hs.dim() == 4 ? std::vector<int64_t>{0, 2, 3} : std::vector<int64_t>{0};
  const tensor::Shape bshape = hs.dim() == 4 ? tensor::Shape{1, hs.shape()[1], 1, 1} : tensor::Shape{1, hs.shape()[1]};
  Variable mu = ops::mean(hs, axes, true);
  Variable xc = ops::sub(hs, mu);
  Variable inv = ops::rsqrt(ops::add_scalar(ops::mean(ops::mul(xc, xc), axes, true), kBnEps));
  Variable scale = ops::mul(inv, ops::reshape(gamma, bshape));
  Variable shift = ops::reshape(beta, bshape);
  return {ops::add(ops::mul(xc, scale), shift), ops::add(ops::mul(ops::sub(hq, mu), scale), shift)};
}

}  // namespace

Stream conv2d(const Stream& s, const Variable& w, const Variable& b, const ops::Conv2dParams& p) {
  return each(s, [&](const Variable& v) { return ops::conv2d(v, w, b, p); });
}

Stream conv2d(const Stream& s, const Variable& w, const ops::Conv2dParams& p) {
  return each(s, [&](const Variable& v) { return ops::conv2d(v, w, p); });
}

Stream leaky_relu(const Stream& s, double slope) {
  return each(s, [&](const Variable& v) { return ops::leaky_relu(v, slope); });
}

Stream add(const Stream& a, const Stream& b) {
  MF_CHECK(a.paired() == b.paired(), "add: one stream carries the support batch and the other does not");
  return {ops::add(a.x, b.x), a.paired() ? ops::add(a.support, b.support) : Variable()};
}

Stream linear(const Stream& s, const Variable& w, const Variable& b) {
  return each(s, [&](const Variable& v) { return ops::linear(v, w, b); });
}

Stream relu(const Stream& s) { return each(s, [](const Variable& v) { return ops::relu(v); }); }

Stream max_pool2x2(const Stream& s) { return each(s, [](const Variable& v) { return ops::max_pool2d(v, 2, 2); }); }

Stream batch_norm(const Stream& s, const Variable& gamma, const Variable& beta) {
  if (!s.paired()) return {ops::batch_norm(s.x, gamma, beta, kBnEps), Variable()};
  auto [ns, nq] = bn_support_stats(s.support, s.x, gamma, beta);
  return {nq, ns};
}

Stream batch_norm_leaky_relu(const Stream& s, const Variable& gamma, const Variable& beta, double slope) {
  if (s.paired()) return leaky_relu(batch_norm(s, gamma, beta), slope);
  return {ops::batch_norm_leaky_relu(s.x, gamma, beta, kBnEps, slope), Variable()};
}

Stream batch_norm_add_leaky_relu(const Stream& a, const Variable& ga, const Variable& ba, const Stream& b,
                                 const Variable& gb, const Variable& bb, double slope) {
  if (a.paired() || b.paired()) return leaky_relu(add(batch_norm(a, ga, ba), batch_norm(b, gb, bb)), slope);
  return {ops::batch_norm_add_leaky_relu(a.x, ga, ba, b.x, gb, bb, kBnEps, slope), Variable()};
}

Stream conv_bn_pool_relu(const Stream& s, const Variable& w, const Variable& b, const Variable& gamma,
                         const Variable& beta, const ops::Conv2dParams& p, bool pool) {
  // Note [Pool before ReLU]: max-pooling commutes with ReLU (both monotone: max of relu = relu of max, and the
  // gradients agree almost everywhere), so the block computes conv -> BN -> pool -> ReLU, the same function as
  // the papers' conv -> BN -> ReLU -> pool with the ReLU and its backward on a quarter of the activations.
  if (!s.paired() && pool) {
    // Note [Batch norm and max-pool fused]: one op with the convolution and the ReLU, without the full-size
    // normalised tensor: on a first block from the input's patch moments (Note [First block fused]), on
    // 64-channel blocks in oneDNN's blocked layout (Note [Blocked conv block]); ops picks by shape.
    return {ops::conv_bn_max_pool(s.x, w, b, gamma, beta, p, kBnEps, /*relu=*/true), Variable()};
  }
  Stream h = batch_norm(conv2d(s, w, b, p), gamma, beta);
  return relu(pool ? max_pool2x2(h) : h);
}

Stream spatial_mean(const Stream& s) { return each(s, [](const Variable& v) { return ops::mean(v, {2, 3}, false); }); }

Stream flatten(const Stream& s) { return each(s, [](const Variable& v) { return ops::flatten(v); }); }

}  // namespace metafew::nn
