// Every algorithm learns: builtin:glyphs 5-way 1-shot well above chance within a small budget, and MAML on
// builtin:sinusoid adapts (post-adaptation MSE well below pre-adaptation MSE). Small models and budgets keep
// each case to seconds; the accuracy targets of the papers are benchmarks, not tests.
#include <doctest/doctest.h>

#include "data/dataset.h"
#include "data/episode.h"
#include "data/sinusoid.h"
#include "meta/registry.h"
#include "meta/trainer.h"

namespace metafew::testing {
namespace {

std::shared_ptr<const data::Dataset> glyphs() {
  static std::shared_ptr<const data::Dataset> ds = data::open_dataset("builtin:glyphs", {});
  return ds;
}

meta::Task from_episode(const data::Episode& e, uint64_t seed) {
  meta::Task t;
  t.support_x = e.support_x;
  t.support_y = e.support_y;
  t.query_x = e.query_x;
  t.query_y = e.query_y;
  t.ways = 5;
  t.seed = seed;
  return t;
}

double train_and_test(const std::string& algo) {
  nn::ModelConfig mc;
  mc.filters = 16;
  mc.outputs = meta::find_algorithm(algo).uses_head ? 5 : 0;
  meta::AlgoConfig ac;
  ac.algo = algo;
  ac.inner_lr = 0.4;
  int64_t shots = 1, eval_steps = 5;
  std::unique_ptr<optim::Optimizer> opt = std::make_unique<optim::Adam>(1e-3);
  if (algo == "reptile") {
    ac.inner_steps = 5;
    ac.inner_lr = 1e-3;
    shots = 10;
    eval_steps = 50;
    opt = std::make_unique<optim::Sgd>(1.0, optim::Schedule{"linear", 0, 0, 100});
  }
  core::Rng init(1);
  auto a = meta::make_algorithm(nn::Model(mc), ac, init);
  data::EpisodeSampler train(glyphs(), "train", {5, shots, 5}, 1);
  data::EpisodeSampler test(glyphs(), "test", {5, 1, 5}, 2);
  for (uint64_t it = 0; it < 100; ++it) {
    std::vector<meta::Task> batch;
    for (uint64_t b = 0; b < 4; ++b) batch.push_back(from_episode(train.episode(it * 4 + b), it * 4 + b));
    meta::meta_step(*a, batch, *opt);
  }
  auto result = meta::evaluate(*a, [&](uint64_t i) { return from_episode(test.episode(i), i); }, 100, eval_steps);
  MESSAGE(algo << ": 5-way 1-shot test accuracy " << result.mean << " +- " << result.ci95 << " after 100 iterations");
  return result.mean;
}

// Chance is 0.2; 0.5 leaves a wide margin under what each method reaches here (0.7 to 0.9) and far above
// what an algorithm that does not learn would score.
TEST_CASE("learning: MAML learns builtin:glyphs") { CHECK(train_and_test("maml") > 0.5); }
TEST_CASE("learning: first-order MAML learns builtin:glyphs") { CHECK(train_and_test("fomaml") > 0.5); }
TEST_CASE("learning: Meta-SGD learns builtin:glyphs") { CHECK(train_and_test("metasgd") > 0.5); }
TEST_CASE("learning: ANIL learns builtin:glyphs") { CHECK(train_and_test("anil") > 0.5); }
TEST_CASE("learning: Reptile learns builtin:glyphs") { CHECK(train_and_test("reptile") > 0.5); }
TEST_CASE("learning: ProtoNets learns builtin:glyphs") { CHECK(train_and_test("protonet") > 0.5); }
TEST_CASE("learning: Matching Networks learns builtin:glyphs") { CHECK(train_and_test("matchingnet") > 0.5); }
TEST_CASE("learning: ParamNet learns builtin:glyphs") { CHECK(train_and_test("paramnet") > 0.5); }

TEST_CASE("learning: MAML on builtin:sinusoid adapts far below its pre-adaptation error") {
  nn::ModelConfig mc;
  mc.arch = "mlp";
  mc.in_features = 1;
  mc.outputs = 1;
  meta::AlgoConfig ac;
  ac.algo = "maml";
  ac.inner_lr = 0.01;
  core::Rng init(1);
  auto a = meta::make_algorithm(nn::Model(mc), ac, init);
  optim::Adam opt(5e-3);  // larger than the paper's 1e-3 so that a short run gets far
  auto task = [](const char* split, uint64_t i) {
    data::RegressionTask r = data::sinusoid_task(1, split, i, 10, 10);
    meta::Task t;
    t.support_x = r.support_x;
    t.support_y = r.support_y;
    t.query_x = r.query_x;
    t.query_y = r.query_y;
    return t;
  };
  for (uint64_t it = 0; it < 1500; ++it) {
    std::vector<meta::Task> batch;
    for (uint64_t b = 0; b < 10; ++b) batch.push_back(task("train", it * 10 + b));
    meta::meta_step(*a, batch, opt);
  }
  auto at = [&](uint64_t i) { return task("test", i); };
  const double pre = -meta::evaluate(*a, at, 200, 0).mean;
  // Ten inner steps at test time, as in the MAML paper's sinusoid figures (meta-trained with one).
  const double post = -meta::evaluate(*a, at, 200, 10).mean;
  MESSAGE("sinusoid 10-shot MSE: " << pre << " before adaptation, " << post << " after ten steps");
  CHECK(post < 0.25 * pre);
}

}  // namespace
}  // namespace metafew::testing
