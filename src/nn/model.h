#pragma once
// Models as pure functions of an explicit parameter list, so inner loops can run on fast weights.
//
// Note [Batch norm in meta-learning]: batch norm always uses the statistics of the batch it is given, in
// meta-training, adaptation and prediction alike (no running averages), as MAML's reference code does. With
// bn = transductive (the default) the query set is normalised with its own statistics, which makes the
// prediction of one query depend on the others in its batch (the usual "transductive" setting of the
// papers). With bn = support the query set is normalised with the support set's statistics at every layer,
// so each query is classified on its own. With bn = nontransductive each query is forwarded in one batch with
// the support set (support + that query, statistics over both), so each query is again classified on its own:
// the non-transductive protocol of supervised-reptile (its default test mode, behind the 95.39% 5-way 1-shot
// Reptile figure). It costs one forward pass of (support + 1) inputs per query. In the last two modes the
// support features come from the support set alone.
#include <string>
#include <vector>

#include "autograd/variable.h"
#include "core/rng.h"

namespace metafew::nn {

using autograd::Variable;
using tensor::Shape;

enum class BnMode { transductive, support, nontransductive };
// "transductive", "support", "nontransductive"; throws a usage error naming the accepted values otherwise.
BnMode parse_bn_mode(const std::string& name);

struct ModelConfig {
  std::string arch = "conv4";   // conv4 | mlp
  int64_t in_channels = 1, height = 28, width = 28;
  int64_t filters = 64;          // conv4: filters per block
  bool max_pool = true;          // conv4: 3x3 conv + 2x2 max-pool; false = MAML's stride-2 conv variant
  // conv4: the head's input (Note [Omniglot head as MAML's code]): the last block's output flattened
  // (filters x h x w), or its mean over the pixels (filters), as cbfinn/maml's Omniglot model.
  enum class Features { flatten, mean } features = Features::flatten;
  // The head's initial weights: LeCun-uniform (bound sqrt(3 / fan_in)), or standard normal as cbfinn/maml's
  // Omniglot head (tf.random_normal).
  enum class HeadInit { lecun, normal } head_init = HeadInit::lecun;
  BnMode bn = BnMode::transductive;
  // conv4: batch norm with a learned per-channel scale (bn.weight), or without one (scale fixed at 1, no
  // parameter), as cbfinn/maml's tf.contrib.layers.batch_norm (scale=False). Its shift is always learned.
  bool bn_scale = true;
  int64_t outputs = 5;           // head outputs (ways, or 1 for regression); 0 = no head (metric methods)
  std::vector<int64_t> hidden = {40, 40};  // mlp: hidden widths
  int64_t in_features = 1;       // mlp: input width
};

// "flatten" / "mean" and "lecun" / "normal"; throw a usage error naming the accepted values otherwise.
ModelConfig::Features parse_features(const std::string& name);
ModelConfig::HeadInit parse_head_init(const std::string& name);

struct ParamSpec {
  std::string name;
  Shape shape;
};

class Model {
 public:
  explicit Model(ModelConfig config);

  const ModelConfig& config() const { return config_; }
  const std::vector<ParamSpec>& specs() const { return specs_; }
  // Parameters [0, head_begin()) form the backbone; the rest the linear head (if any).
  size_t head_begin() const { return head_begin_; }
  int64_t feature_dim() const { return feature_dim_; }

  // Freshly initialised parameters (He-uniform for weights, zero biases, unit batch-norm scales).
  std::vector<Variable> init(core::Rng& rng) const;

  // Backbone features (N, feature_dim) of x. `params` may hold only the backbone or all parameters.
  Variable embed(const std::vector<Variable>& params, const Variable& x) const;
  // Features of a query batch normalised with the support batch's statistics (bn = support), with the
  // support batch and each query in turn (bn = nontransductive), or with their own (bn = transductive).
  // Returns {support features, query features}.
  std::pair<Variable, Variable> embed_pair(const std::vector<Variable>& params, const Variable& xs,
                                           const Variable& xq) const;
  // The linear head on features; head_params = {weight (outputs, D), bias (outputs)}.
  static Variable head(const Variable& w, const Variable& b, const Variable& features);
  // embed + head.
  Variable forward(const std::vector<Variable>& params, const Variable& x) const;

  // Multiply-adds of one forward pass over a batch of n inputs (for FLOP counts).
  double forward_macs(int64_t n) const;

 private:
  Variable embed_impl(const std::vector<Variable>& params, const Variable& x, const Variable* support_x,
                      Variable* support_out) const;

  ModelConfig config_;
  std::vector<ParamSpec> specs_;
  size_t head_begin_ = 0;
  int64_t feature_dim_ = 0;
  size_t per_block_ = 0;  // conv4: parameters per block (4 with a batch-norm scale, 3 without)
  std::vector<tensor::Shape> block_out_;  // conv4: (C, H, W) after each block
};

}  // namespace metafew::nn
