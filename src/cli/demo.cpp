// metafew demo: second-order MAML on the sinusoid family, through the same registry, model, optimizer and
// training loop as `meta-train --data builtin:sinusoid --algo maml`, without a run folder.
#include "cli/demo.h"

#include <cstdio>
#include <cxxopts.hpp>

#include "cli/common.h"
#include "io/settings.h"
#include "meta/training.h"
#include "nn/model.h"
#include "optim/options.h"

namespace metafew::cli {

int run_demo(int argc, char** argv) {
  cxxopts::Options opts("metafew demo",
                        "Second-order MAML on sinusoid regression, MAML's recipe (MLP 1-40-40-1, 10 shots, "
                        "meta-batch 25, one inner step of 0.01): the post-adaptation MSE on held-out tasks before "
                        "and after meta-training. A smoke demo of the engine; no files are written.");
  opts.add_options()("iterations", "meta-iterations", cxxopts::value<int64_t>()->default_value("10000"))(
      "seed", "random seed", cxxopts::value<int64_t>()->default_value("1"));
  add_shared_flags(opts, {SharedFlag::threads});
  cxxopts::ParseResult args = parse_options(opts, argc, argv, "demo");
  if (args.count("help")) {
    std::printf("%s\n", opts.help().c_str());
    return 0;
  }
  const json cfg = io::resolve_settings(json::object(), json{{"data", "builtin:sinusoid"},
                                                             {"algo", "maml"},
                                                             {"iterations", args["iterations"].as<int64_t>()},
                                                             {"seed", args["seed"].as<int64_t>()},
                                                             {"threads", args["threads"].as<int64_t>()},
                                                             {"log_every", 200}});
  set_threads(cfg["threads"]);
  const uint64_t seed = cfg["seed"];
  core::Rng init(core::derive_key(seed, {0x696e6974ULL}));
  auto algo = meta::make_algorithm(nn::Model(nn::model_config(cfg, head_outputs(cfg))), meta::algo_config(cfg), init);
  auto opt = optim::make_optimizer(cfg);
  TaskSource train = task_source(cfg, nullptr, "train", 0, cfg["shots"], cfg["queries"], seed);
  TaskSource test = task_source(cfg, nullptr, "test", 0, cfg["test_shots"], cfg["test_queries"], seed + 1000);
  const int64_t steps = cfg["eval_steps"], test_tasks = 100;
  const double before = -meta::evaluate(*algo, test, test_tasks, steps).mean;
  std::fprintf(stderr, "demo: MAML (second order), sinusoid %lld-shot, MLP 1-40-40-1, meta-batch %lld, %lld iterations\n",
               static_cast<long long>(cfg["shots"].get<int64_t>()), static_cast<long long>(cfg["meta_batch"].get<int64_t>()),
               static_cast<long long>(cfg["iterations"].get<int64_t>()));
  meta::TrainHooks hooks;
  hooks.save = [](const std::string&, int64_t, bool, double) {};  // no run folder
  hooks.metrics = [](const json& line, const std::string&) { std::fprintf(stderr, "%s\n", line.dump().c_str()); };
  meta::Trainer(*algo, *opt, meta::train_options(cfg), train, {}, "", true, hooks).run({});
  const double after = -meta::evaluate(*algo, test, test_tasks, steps).mean;
  std::printf("post-adaptation MSE on %lld held-out tasks (%lld step, %lld shots): %.3f before meta-training, %.3f after\n",
              static_cast<long long>(test_tasks), static_cast<long long>(steps),
              static_cast<long long>(cfg["test_shots"].get<int64_t>()), before, after);
  return 0;
}

}  // namespace metafew::cli
