#pragma once
// A model: a registered backbone (nn/backbone.h) and, for the methods that need one, a linear head, as pure
// functions of an explicit parameter list, so inner loops can run on fast weights. The batch-norm modes
// (Note [Batch norm in meta-learning], nn/options.h) are arranged here for every backbone.
#include <memory>
#include <string>
#include <vector>

#include "autograd/variable.h"
#include "core/rng.h"
#include "nn/backbone.h"
#include "nn/options.h"

namespace metafew::nn {

using autograd::Variable;
using tensor::Shape;

class Model {
 public:
  explicit Model(ModelConfig config);

  const ModelConfig& config() const { return config_; }
  const std::vector<ParamSpec>& specs() const { return specs_; }
  // Parameters [0, head_begin()) form the backbone; the rest the linear head (if any).
  size_t head_begin() const { return head_begin_; }
  int64_t feature_dim() const { return backbone_->feature_dim(); }
  // Whether the query features depend on the support set's statistics (bn support or nontransductive with a
  // backbone that has batch norm): prediction then goes through embed_pair.
  bool queries_use_support() const {
    return config_.bn != BnMode::transductive && backbone_->has_batch_norm();
  }

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
  // The backbone's convolutions over a batch of n inputs.
  std::vector<tensor::ConvShape> conv_layers(int64_t n) const { return backbone_->conv_layers(n); }

 private:
  // x as the backbone takes it: normalised per channel when the config says so (a constant: no gradient).
  Variable input(const Variable& x) const;

  ModelConfig config_;
  std::shared_ptr<const Backbone> backbone_;
  std::vector<ParamSpec> specs_;
  size_t head_begin_ = 0;
};

}  // namespace metafew::nn
