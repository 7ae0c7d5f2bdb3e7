#include "meta/registry.h"

#include <cmath>

#include "core/error.h"
#include "meta/inner_loop.h"

namespace metafew::meta {

namespace {

// FLOP per task (1 MAC = 2 FLOP; a backward costs two forwards; the outer pass of second-order MAML through
// an inner step costs 6 forwards; element-wise work is not counted).
double second_order_flop(const FlopShape& s) { return 9 * s.steps * s.support * s.forward + 3 * s.query * s.forward; }
double first_order_flop(const FlopShape& s) { return 3 * s.steps * s.support * s.forward + 3 * s.query * s.forward; }
double one_pass_flop(const FlopShape& s) { return 3 * (s.support + s.query) * s.forward; }

const nlohmann::json kMetricDefaults = {{"meta_batch", 1}, {"eval_steps", 0}};

}  // namespace

const std::vector<AlgorithmEntry>& algorithms() {
  using C = const AlgoConfig&;
  static const std::vector<AlgorithmEntry> all{
      {"maml", true, true, false, false, nlohmann::json::object(), {"inner_bn"}, second_order_flop,
       [](const nn::Model& m, C c, core::Rng& r) { return make_maml(m, c, r, false); }},
      {"fomaml", true, true, false, false, nlohmann::json::object(), {"inner_bn"}, first_order_flop,
       [](const nn::Model& m, C c, core::Rng& r) {
         AlgoConfig first = c;
         first.first_order = true;
         return make_maml(m, first, r, false);
       }},
      {"metasgd", true, true, false, false, nlohmann::json::object(), {"inner_bn"}, second_order_flop,
       [](const nn::Model& m, C c, core::Rng& r) { return make_maml(m, c, r, true); }},
      {"anil", true, true, false, false, nlohmann::json::object(), {}, one_pass_flop, make_anil},
      // supervised-reptile's Omniglot recipe: SGD outer loop with step size 1 annealed linearly, 5 inner Adam
      // steps at 0.001 on batches of 10 from 10 shots, meta-batch 5, 50 steps at test time on 1-shot tasks.
      {"reptile", true, true, true, false,
       {{"optimizer", "sgd"},
        {"outer_lr", 1.0},
        {"schedule", "linear"},
        {"inner_steps", 5},
        {"inner_lr", 0.001},
        {"meta_batch", 5},
        {"eval_steps", 50},
        {"shots", 10},
        {"queries", 5},
        {"test_shots", 1},
        {"test_queries", 15}},
       {"inner_batch", "inner_optimizer", "inner_state"},
       [](const FlopShape& s) { return 3 * s.steps * s.inner_batch * s.forward; }, make_reptile},
      {"protonet", true, false, false, false, kMetricDefaults, {"distance"}, one_pass_flop,
       [](const nn::Model& m, C c, core::Rng& r) { return make_metric(m, c, r, MetricHead::prototypes); }},
      {"matchingnet", false, false, false, false, kMetricDefaults, {"matching_attention"}, one_pass_flop,
       [](const nn::Model& m, C c, core::Rng& r) { return make_metric(m, c, r, MetricHead::matching); }},
      {"paramnet", false, false, false, false, kMetricDefaults, {"refine_steps"}, one_pass_flop,
       [](const nn::Model& m, C c, core::Rng& r) { return make_metric(m, c, r, MetricHead::paramnet); }},
      {"pretrain", false, false, false, true, {{"meta_batch", 1}, {"eval_steps", 0}}, {"batch_size", "pretrain_classes"},
       [](const FlopShape& s) { return 3 * s.query * s.forward; }, make_pretrain},
  };
  return all;
}

const AlgorithmEntry& find_algorithm(const std::string& name) { return core::find_named(algorithms(), name, "--algo"); }

std::unique_ptr<Algorithm> make_algorithm(const nn::Model& model, const AlgoConfig& config, core::Rng& rng) {
  const AlgorithmEntry& entry = find_algorithm(config.algo);
  MF_USAGE_CHECK(!entry.uses_head || model.config().outputs > 0, config.algo, ": the model needs a head (outputs > 0)");
  MF_USAGE_CHECK(config.inner_steps >= 0, config.algo, ": inner steps must be >= 0, got ", config.inner_steps);
  MF_USAGE_CHECK(std::isfinite(config.inner_lr) && config.inner_lr >= 0, config.algo,
                 ": inner learning rate must be >= 0, got ", config.inner_lr);
  return entry.make(model, config, rng);
}

}  // namespace metafew::meta
