#include "meta/options.h"

#include "core/error.h"
#include "meta/registry.h"

namespace metafew::meta {

MatchingAttention parse_matching_attention(const std::string& name) {
  if (name == "cosine") return MatchingAttention::cosine;
  if (name == "supnorm") return MatchingAttention::supnorm;
  throw Error(detail::concat("--matching-attention must be cosine or supnorm, got '", name, "'"),
              ErrorKind::usage);
}

std::string matching_attention_name(MatchingAttention a) { return a == MatchingAttention::cosine ? "cosine" : "supnorm"; }

std::vector<core::Setting> algorithm_settings() {
  const AlgoConfig d;
  return {
      core::text_setting("algo", d.algo, core::join(core::names_of(algorithms())), [](const std::string& v) { find_algorithm(v); }),
      core::integer_setting("inner_steps", d.inner_steps, 0, 100000,
                            "inner-loop steps in meta-training (Reptile: inner iterations)"),
      core::number_setting("inner_lr", d.inner_lr,
                           "inner-loop learning rate, a step on the support loss averaged over the support examples "
                           "(cbfinn/maml sums its loss over the classes: its rate r for N-way tasks is N x r here)"),
      core::boolean_setting("first_order", d.first_order,
                            "drop second-order terms (MAML family, ANIL, ParamNet refinement)"),
      core::boolean_setting("inner_bn", d.inner_bn,
                            "MAML family: the inner loop adapts batch-norm parameters too (false: only convolutions "
                            "and head, as MAML's code)"),
      core::integer_setting("inner_batch", d.inner_batch, 1, 100000, "Reptile: inner mini-batch size"),
      core::text_setting("inner_optimizer", d.inner_optimizer, "Reptile: inner optimizer, adam (beta1 = 0) or sgd",
                         [](const std::string& v) { core::require_one_of("--inner-optimizer", v, {"adam", "sgd"}); }),
      core::text_setting("inner_state", d.carry_inner_state ? "carry" : "fresh",
                         "Reptile: inner Adam state, carry (from task to task, as supervised-reptile) or fresh (per "
                         "task)",
                         [](const std::string& v) { core::require_one_of("--inner-state", v, {"carry", "fresh"}); }),
      core::integer_setting("refine_steps", d.refine_steps, 0, 100000,
                            "ParamNet: inner steps refining the predicted head"),
      core::text_setting("matching_attention", matching_attention_name(d.matching_attention),
                         "Matching Networks: cosine (the paper) or supnorm (q.s/|s|, as the reference code)",
                         [](const std::string& v) { parse_matching_attention(v); }),
      core::integer_setting("batch_size", d.batch_size, 1, 100000,
                            "pretrain: images per mini-batch, drawn from every class of the training split"),
      core::integer_setting("pretrain_classes", d.pretrain_classes, 0, 10000000,
                            "pretrain: classes of the classifier (0: the training split's, filled in when a run "
                            "starts)"),
      core::text_setting("head", test_head_name(d.head),
                         "head at validation and test time: own (the algorithm's), centroid (nearest centroid of "
                         "L2-normalised features) or logreg (logistic regression on them, as RFS)",
                         [](const std::string& v) { parse_test_head(v); }),
      core::Setting{"logreg_c", d.logreg_c,
              "logreg head: inverse L2 strength, scikit-learn's C (RFS: 1); the fit minimises C x the summed "
              "cross-entropy + |W|^2/2", 1e-6, 1e6, {}},
      core::text_setting("distance", d.cosine_prototypes ? "cosine" : "euclidean",
                         "protonet: euclidean (minus the squared distance to each prototype, the paper) or cosine "
                         "(a learned scale, starting at 10, times the cosine similarity: Meta-Baseline)",
                         [](const std::string& v) { core::require_one_of("--distance", v, {"euclidean", "cosine"}); }),
  };
}

AlgoConfig algo_config(const nlohmann::json& cfg) {
  AlgoConfig a;
  a.algo = cfg["algo"];
  a.inner_steps = cfg["inner_steps"];
  a.inner_lr = cfg["inner_lr"];
  a.first_order = cfg["first_order"];
  a.inner_bn = cfg["inner_bn"];
  a.inner_batch = cfg["inner_batch"];
  a.inner_optimizer = cfg["inner_optimizer"];
  a.carry_inner_state = cfg["inner_state"] == "carry";
  a.refine_steps = cfg["refine_steps"];
  a.matching_attention = parse_matching_attention(cfg["matching_attention"]);
  a.batch_size = cfg["batch_size"];
  a.pretrain_classes = cfg["pretrain_classes"];
  a.head = parse_test_head(cfg["head"]);
  a.logreg_c = cfg["logreg_c"];
  a.cosine_prototypes = cfg["distance"] == "cosine";
  return a;
}

}  // namespace metafew::meta
