#pragma once
// Layers for backbones, each a pure function of its parameters and input.
//
// Note [Batch-norm context]: a backbone's forward carries a Stream: the batch, and under bn = support the
// support batch alongside it. Every layer applies to both; a batch-norm layer normalises both with the
// support batch's statistics, so a query's features depend only on the support set and itself (Note [Batch
// norm in meta-learning], nn/options.h). A backbone written with these layers gets every batch-norm mode
// without code of its own: transductive and nontransductive forward an unpaired stream (Model arranges the
// batches, nn/model.cpp), support a paired one.
#include "ops/ops.h"

namespace metafew::nn {

using autograd::Variable;

struct Stream {
  Variable x;        // the batch whose features are wanted
  Variable support;  // bn = support: the support batch, whose statistics every batch-norm layer uses
  bool paired() const { return support.defined(); }
};

inline constexpr double kBnEps = 1e-5;

Stream conv2d(const Stream& s, const Variable& w, const Variable& b, const ops::Conv2dParams& p);
Stream conv2d(const Stream& s, const Variable& w, const ops::Conv2dParams& p);  // without a bias
Stream linear(const Stream& s, const Variable& w, const Variable& b);
Stream relu(const Stream& s);
Stream leaky_relu(const Stream& s, double slope);
Stream add(const Stream& a, const Stream& b);
Stream max_pool2x2(const Stream& s);
// Batch norm with the batch's own statistics, or the support batch's when the stream is paired.
Stream batch_norm(const Stream& s, const Variable& gamma, const Variable& beta);
// leaky_relu(batch_norm(s)): one op (ops::batch_norm_leaky_relu) when the stream is not paired.
Stream batch_norm_leaky_relu(const Stream& s, const Variable& gamma, const Variable& beta, double slope);
// leaky_relu(batch_norm(a) + batch_norm(b)): one op (ops::batch_norm_add_leaky_relu) when neither stream is
// paired.
Stream batch_norm_add_leaky_relu(const Stream& a, const Variable& ga, const Variable& ba, const Stream& b,
                                 const Variable& gb, const Variable& bb, double slope);
// conv -> batch norm -> 2x2 max-pool (when `pool`) -> ReLU: the one place where a block of this shape
// reaches the fused kernels (Note [Batch norm and max-pool fused]); any backbone whose block has this form
// gets them.
Stream conv_bn_pool_relu(const Stream& s, const Variable& w, const Variable& b, const Variable& gamma,
                         const Variable& beta, const ops::Conv2dParams& p, bool pool);
// The mean over the pixels (N, C, H, W) -> (N, C), or the flattened tensor (N, C*H*W).
Stream spatial_mean(const Stream& s);
Stream flatten(const Stream& s);

}  // namespace metafew::nn
