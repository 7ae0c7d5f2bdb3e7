#pragma once
// The algorithms' settings: the typed options (AlgoConfig), their declarations (key, default taken from the
// struct, help, valid values) and the options of a resolved configuration. Each algorithm's own defaults
// (Reptile's outer loop, the metric methods' meta-batch) are in its registry entry (meta/registry.cpp).
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/setting.h"
#include "meta/heads.h"

namespace metafew::meta {

// cosine: the paper's cos(q, s); supnorm: q . s / |s| (the query's norm acts as an inverse temperature).
enum class MatchingAttention { cosine, supnorm };
// "cosine" / "supnorm"; throws a usage error naming the accepted values for anything else.
MatchingAttention parse_matching_attention(const std::string& name);
std::string matching_attention_name(MatchingAttention attention);

struct AlgoConfig {
  std::string algo = "maml";  // a registered algorithm (meta/registry.h)
  int64_t inner_steps = 1;    // inner-loop steps in meta-training
  // The inner-loop rate: a step on the support loss averaged over the support examples.
  double inner_lr = 0.4;
  bool first_order = false;   // maml/anil/metasgd/paramnet: drop second-order terms (fomaml sets it)
  // MAML family: the inner loop adapts the batch-norm parameters too, or leaves them to the outer loop (Note
  // [Batch norm outside the inner loop]).
  bool inner_bn = true;
  // Reptile: inner mini-batch size and optimiser (adam with beta1 = 0, as in the paper's code, or sgd).
  int64_t inner_batch = 10;
  std::string inner_optimizer = "adam";
  // Reptile with the adam inner optimiser: carry its state from task to task (Note [Reptile's inner optimiser
  // state]) or start every task from a fresh optimiser.
  bool carry_inner_state = true;
  // ParamNet: inner steps refining the predicted head (0 = prediction only).
  int64_t refine_steps = 0;
  // Matching Networks: the attention's similarity (Note [Matching Networks attention]).
  MatchingAttention matching_attention = MatchingAttention::cosine;
  // Pretraining (--algo pretrain): images per mini-batch, and the classes of its classifier (the training
  // split's, set by meta-train when a run starts; 0 until then).
  int64_t batch_size = 64;
  int64_t pretrain_classes = 0;
  // The head at validation and test time: the algorithm's own, or a test-time head on frozen features (Note
  // [Test-time heads] in heads.cpp), and the logistic-regression head's inverse L2 strength.
  TestHead head = TestHead::own;
  double logreg_c = 1.0;
  // ProtoNets: logits from the squared Euclidean distance to each prototype (the paper), or Meta-Baseline's
  // learned scale times the cosine similarity to it (Note [Cosine prototypes] in metric.cpp).
  bool cosine_prototypes = false;
};

// The algorithm settings (algo, inner_steps, inner_lr, first_order, inner_bn, inner_batch, inner_optimizer,
// inner_state, refine_steps, matching_attention, batch_size, pretrain_classes, head, logreg_c, distance).
std::vector<core::Setting> algorithm_settings();
AlgoConfig algo_config(const nlohmann::json& cfg);

}  // namespace metafew::meta
