#pragma once
// What the algorithm files of meta/ share (maml.cpp, reptile.cpp, metric.cpp): inner-loop steps on fast
// weights, the gradients of a task's loss, prediction with adapted weights, and the factories the registry
// (registry.cpp) lists. Internal to meta/.
#include <memory>
#include <vector>

#include "meta/algorithm.h"

namespace metafew::meta {

std::vector<Variable> slice_params(const std::vector<Variable>& p, size_t begin, size_t end);
// Writes the gradients of `loss` with respect to `wrt` into grads (zeros where unused).
void write_grads(const Variable& loss, const std::vector<Variable>& wrt, std::vector<Tensor>& grads);
// One gradient step on fast weights: fast_i - lr_i * dL/dfast_i (recorded when create_graph). With `adapted`,
// only the parameters it marks step; the others are kept, and no gradient is computed for them.
std::vector<Variable> sgd_step(const std::vector<Variable>& fast, const Variable& loss, bool create_graph,
                               double lr, const std::vector<Variable>* rates,
                               const std::vector<bool>* adapted = nullptr);
// An adapted model's weights as variables, and the support and query features they give (embed_pair, so
// under the model's batch-norm mode); for the methods that classify features against the support set.
// Call under a NoGradGuard.
struct AdaptedFeatures {
  std::vector<Variable> weights;
  Variable support, query;
};
AdaptedFeatures adapted_features(const nn::Model& model, const Adapted& a, const Tensor& query_x);
// Query outputs of an adapted gradient-based model (weights = a full parameter list of the model).
Tensor forward_query(const nn::Model& model, const Adapted& a, const Tensor& query_x);

// The factories of the registered algorithms.
// MAML (second order unless config.first_order), with per-parameter inner rates (Meta-SGD) or one rate.
std::unique_ptr<Algorithm> make_maml(const nn::Model& model, const AlgoConfig& config, core::Rng& rng,
                                     bool per_parameter_rates);
std::unique_ptr<Algorithm> make_anil(const nn::Model& model, const AlgoConfig& config, core::Rng& rng);
std::unique_ptr<Algorithm> make_reptile(const nn::Model& model, const AlgoConfig& config, core::Rng& rng);
// The metric methods: the query logits from support features by prototypes (ProtoNets), attention (Matching
// Networks) or a predicted linear head (ParamNet).
enum class MetricHead { prototypes, matching, paramnet };
// Supervised pretraining on mini-batches of every training class (Note [Pretraining] in pretrain.cpp).
std::unique_ptr<Algorithm> make_pretrain(const nn::Model& model, const AlgoConfig& config, core::Rng& rng);
std::unique_ptr<Algorithm> make_metric(const nn::Model& model, const AlgoConfig& config, core::Rng& rng,
                                       MetricHead head);

}  // namespace metafew::meta
