#include "cli/meta_train.h"

#include <omp.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>

#include "cli/common.h"
#include "cli/progress.h"
#include "io/config.h"
#include "io/run_dir.h"
#include "io/settings.h"
#include "meta/trainer.h"

namespace metafew::cli {

namespace {

std::atomic<int> g_signal{0};
extern "C" void on_signal(int sig) { g_signal.store(sig); }

// Installs SIGINT/SIGTERM handlers for the scope: the loop finishes its step, saves and exits with 130.
class SignalScope {
 public:
  SignalScope() {
    g_signal.store(0);
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~SignalScope() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }

 private:
  struct sigaction old_int_ {};
  struct sigaction old_term_ {};
};

struct Validation {
  meta::EvalResult result;
  bool ran = false;
};

}  // namespace

int run_meta_train(int argc, char** argv) {
  cxxopts::Options opts("metafew meta-train", "Meta-train a few-shot learner; results on stdout, progress on stderr.");
  const json defaults = meta_train_defaults();
  opts.set_width(100);
  opts.add_options("run")("out", "run folder: config.json, metrics.jsonl, checkpoints last and best",
                          cxxopts::value<std::string>()->default_value("runs/latest"))(
      "config", "JSON file of settings (defaults < file < flags)", cxxopts::value<std::string>())(
      "resume", "continue the run in this folder from its last checkpoint", cxxopts::value<std::string>())(
      "overwrite", "start over in a --out folder that already holds a run (its checkpoints and metrics are deleted)")(
      "json", "print the final summary as JSON")("h,help", "show this help");
  add_config_options(opts, defaults, "settings");
  cxxopts::ParseResult args = parse_options(opts, argc, argv, "meta-train");
  if (args.count("help")) {
    std::printf("%s\n", opts.help({"run", "settings"}).c_str());
    return 0;
  }

  json flags = flags_given(args, defaults);
  json cfg;
  std::string out;
  io::Checkpoint resume_from;
  const bool resuming = args.count("resume") > 0;
  std::unique_ptr<io::RunDir> run_holder;
  if (resuming) {
    MF_USAGE_CHECK(!args.count("out") && !args.count("config") && !args.count("overwrite"),
                   "meta-train --resume continues the run in its own folder with its own settings; --out, --config "
                   "and --overwrite cannot be given with it");
    out = args["resume"].as<std::string>();
    run_holder = std::make_unique<io::RunDir>(out, false);
    run_holder->lock();  // before reading `last`: no other process may be writing it
    resume_from = io::load_checkpoint((std::filesystem::path(out) / "last").string());
    cfg = checkpoint_config(resume_from);
    MF_USAGE_CHECK(resume_from.header["kind"] == "training", "meta-train --resume: ", out,
                   "/last is an adapted model (made by adapt --save-adapted), not a training checkpoint; resume "
                   "the run it was adapted from");
    MF_USAGE_CHECK(!resume_from.header.contains("exported_from"), "meta-train --resume: ", out,
                   "/last was written by metafew export without the optimizer state, so the run cannot continue "
                   "exactly; resume from the run's own last checkpoint");
    // Only the length of the run may change on resume; anything else would not continue the same run.
    for (auto it = flags.begin(); it != flags.end(); ++it)
      MF_USAGE_CHECK(it.key() == "iterations" || it.key() == "threads" || cfg[it.key()] == it.value(),
                     "meta-train --resume: --", it.key(), " differs from the run's setting (", cfg[it.key()].dump(),
                     "); only --iterations and --threads may change when resuming");
    if (flags.contains("iterations")) cfg["iterations"] = flags["iterations"];
    if (flags.contains("threads")) cfg["threads"] = flags["threads"];
    io::validate_settings(cfg, "");  // the new --iterations and --threads get the checks of a new run's
  } else {
    json file = args.count("config") ? io::read_config_file(args["config"].as<std::string>()) : json::object();
    cfg = resolve_config(file, flags);
    out = args["out"].as<std::string>();
    run_holder = std::make_unique<io::RunDir>(out, true);
    run_holder->lock();
    MF_USAGE_CHECK(!run_holder->holds_run() || args.count("overwrite"), "meta-train: ", out,
                   " already holds a run (config.json, metrics.jsonl or checkpoints); continue it with --resume ",
                   out, ", start over with --overwrite (deletes its checkpoints and metrics), or choose another --out");
  }
  if (cfg["threads"].get<int64_t>() > 0) omp_set_num_threads(static_cast<int>(cfg["threads"].get<int64_t>()));

  auto ds = open_data(cfg);
  const bool regression = is_regression(cfg);
  const int64_t ways = regression ? 0 : cfg["ways"].get<int64_t>();
  const int64_t test_ways = regression ? 0 : cfg["test_ways"].get<int64_t>();
  const bool head = meta::algorithm_uses_head(cfg["algo"]);
  MF_USAGE_CHECK(!head || regression || test_ways == ways, "meta-train: --algo ", cfg["algo"].get<std::string>(),
                 " has a ", ways, "-way head, so --test-ways must equal --ways (got ", test_ways, ")");
  const uint64_t seed = cfg["seed"];
  TaskSource train = task_source(cfg, ds, cfg["train_split"], ways, cfg["shots"], cfg["queries"], seed);
  const std::string val_split = cfg["val_split"];
  TaskSource val;
  if (!val_split.empty())
    val = task_source(cfg, ds, val_split, test_ways, cfg["test_shots"], cfg["test_queries"],
                      core::derive_key(seed, {0x76616cULL}));

  std::unique_ptr<meta::Algorithm> algo;
  std::unique_ptr<optim::Optimizer> opt = make_optimizer(cfg);
  int64_t start = 0;
  double best_acc = -INFINITY;
  if (resuming) {
    algo = algorithm_from_checkpoint(resume_from);
    std::vector<tensor::Tensor> state;
    for (int64_t i = 0; i < resume_from.header.value("optimizer_state", int64_t{0}); ++i)
      state.push_back(io::find_tensor(resume_from, "optimizer/" + std::to_string(i)));
    opt->load_state(resume_from.header["optimizer_steps"], state);
    start = resume_from.header["iteration"];
    if (resume_from.header.contains("best_score") && resume_from.header["best_score"].is_number())
      best_acc = resume_from.header["best_score"];
  } else {
    core::Rng init(core::derive_key(seed, {0x696e6974ULL}));
    const int64_t outputs = head ? (regression ? 1 : ways) : 0;
    algo = meta::make_algorithm(nn::Model(model_config(cfg, outputs)), algo_config(cfg), init);
  }

  io::RunDir& run = *run_holder;
  if (!resuming) {
    run.clear_run();  // --overwrite: the old run goes only now that the new one is ready to start
  } else {
    const int64_t dropped = run.trim_metrics(start);
    if (dropped > 0)
      std::fprintf(stderr, "meta-train: dropped %lld metrics lines logged after iteration %lld (or incomplete)\n",
                   static_cast<long long>(dropped), static_cast<long long>(start));
  }
  run.write_json("config.json", cfg);
  json extra{{"preprocessing", ds ? preprocessing_of(*ds) : json{{"kind", "sinusoid"}}}};
  int64_t last_saved = start;  // the iteration RUN/last holds
  // Set when a signal cut the validation of `last`'s iteration short (see `validate` below).
  bool validation_pending = resuming && resume_from.header.value("validation_pending", false);
  auto save = [&](const std::string& name, int64_t iteration) {
    // Never write a non-finite value (Note [No NaN in a checkpoint] in src/meta/trainer.cpp).
    const std::string bad = meta::first_non_finite(*algo);
    MF_CHECK(bad.empty(), "meta-train: not saving ", run.file(name), " at iteration ", iteration, ": ", bad);
    if (name == "last") last_saved = iteration;
    json e = extra;
    e["validation_pending"] = name == "last" && validation_pending;
    e["best_score"] = std::isfinite(best_acc) ? json(best_acc) : json(nullptr);
    io::save_checkpoint(run.file(name), training_checkpoint(cfg, *algo, *opt, iteration, e));
  };

  const int64_t iterations = cfg["iterations"], meta_batch = cfg["meta_batch"], log_every = cfg["log_every"];
  const int64_t val_every = cfg["val_every"], ckpt_every = cfg["checkpoint_every"];
  const int64_t eval_steps = cfg["eval_steps"], val_episodes = cfg["val_episodes"];
  MF_USAGE_CHECK(start <= iterations, "meta-train --resume: the run is already at iteration ", start, " of ",
                 iterations, "; pass a larger --iterations to continue it");
  std::fprintf(stderr, "meta-train: %s on %s, %s, %lld-way %lld-shot, meta-batch %lld, %lld iterations, %d threads -> %s\n",
               cfg["algo"].get<std::string>().c_str(), cfg["data"].get<std::string>().c_str(),
               cfg["train_split"].get<std::string>().c_str(), static_cast<long long>(ways),
               static_cast<long long>(cfg["shots"].get<int64_t>()), static_cast<long long>(meta_batch),
               static_cast<long long>(iterations), omp_get_max_threads(), out.c_str());
  if (resuming) std::fprintf(stderr, "meta-train: resumed at iteration %lld\n", static_cast<long long>(start));

  if (!resuming) save("last", 0);  // a usable checkpoint exists from the start, whatever happens next
  SignalScope signals;
  Progress progress("meta-train", iterations, start);
  double window_loss = 0, window_acc = 0;
  int64_t window = 0;
  Validation last_val;
  auto t_window = std::chrono::steady_clock::now();
  int64_t it = start;
  bool interrupted = false;
  // A validation, logged and kept as `best` when it improves; false when a signal cut it short, which saves
  // `last` marked so that a resume runs this validation first (the run then continues exactly as if never
  // stopped, `best` included).
  auto validate = [&](int64_t at) {
    last_val.result = meta::evaluate(*algo, val, val_episodes, eval_steps, [] { return g_signal.load() != 0; });
    if (last_val.result.cancelled) {
      validation_pending = true;
      save("last", at);
      return false;
    }
    validation_pending = false;
    last_val.ran = true;
    json line{{"iteration", at},
              {"split", val_split},
              {regression ? "val_neg_mse" : "val_accuracy", last_val.result.mean},
              {"val_ci95", last_val.result.ci95},
              {"val_episodes", val_episodes}};
    run.append_metrics(line);
    char summary[96];
    std::snprintf(summary, sizeof summary, regression ? "val -MSE %.4f +- %.4f @%lld" : "val %.2f%% +- %.2f @%lld",
                  regression ? last_val.result.mean : 100 * last_val.result.mean,
                  regression ? last_val.result.ci95 : 100 * last_val.result.ci95, static_cast<long long>(at));
    progress.metrics(line.dump(), summary);
    if (last_val.result.mean > best_acc) {
      best_acc = last_val.result.mean;
      save("best", at);
    }
    return true;
  };
  if (validation_pending && val) {
    if (validate(it))
      save("last", it);  // clears the mark (a run stopped in its final validation has no later save)
    else
      interrupted = true;
  }
  while (it < iterations && !interrupted) {
    std::vector<meta::Task> tasks;
    tasks.reserve(static_cast<size_t>(meta_batch));
    // A signal while the batch is drawn (a large meta-batch takes a while) stops before the step.
    for (int64_t b = 0; b < meta_batch && g_signal.load() == 0; ++b)
      tasks.push_back(train(static_cast<uint64_t>(it * meta_batch + b)));
    if (g_signal.load() != 0) {
      interrupted = true;
      save("last", it);
      break;
    }
    meta::StepResult r = meta::meta_step(*algo, tasks, *opt);
    std::string diverged = std::isfinite(r.loss) ? meta::first_non_finite(*algo)
                                                 : detail::concat("the meta-loss became ", r.loss);
    if (!diverged.empty()) {
      throw Error(detail::concat("meta-train: ", diverged, " at iteration ", it + 1,
                                 " (diverged: try a smaller --outer-lr or --inner-lr); the last good checkpoint is ",
                                 run.file("last"), " (iteration ", last_saved, ", every parameter finite)"));
    }
    ++it;
    window_loss += r.loss;
    window_acc += r.accuracy;
    ++window;
    progress.update(it, detail::concat("loss ", r.loss));
    if (it % log_every == 0 || it == iterations) {
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_window).count();
      json line{{"iteration", it},
                {"loss", window_loss / window},
                {regression ? "neg_mse" : "accuracy", window_acc / window},
                {"tasks_per_second", secs > 0 ? static_cast<double>(window * meta_batch) / secs : 0.0},
                {"lr", opt->current_lr()},
                {"rss_mb", resident_mb()}};
      run.append_metrics(line);
      progress.metrics(line.dump(), "");  // the live line shows the loss already
      window_loss = window_acc = 0;
      window = 0;
      t_window = std::chrono::steady_clock::now();
    }
    if (val && (it % val_every == 0 || it == iterations) && !validate(it)) {
      interrupted = true;
      break;
    }
    if (it % ckpt_every == 0 || it == iterations) save("last", it);
    if (g_signal.load() != 0) {
      interrupted = it < iterations;
      if (interrupted) save("last", it);
      break;
    }
  }
  progress.finish();
  if (!val) save("best", it);  // without validation the final parameters are the best we know

  json summary{{"run", out}, {"iterations", it}, {"algo", cfg["algo"]}, {"interrupted", interrupted}};
  if (last_val.ran) {
    summary[regression ? "val_neg_mse" : "val_accuracy"] = last_val.result.mean;
    summary["val_ci95"] = last_val.result.ci95;
    summary["best_val"] = best_acc;
  }
  if (args.count("json")) {
    std::printf("%s\n", summary.dump().c_str());
  } else if (interrupted) {
    std::printf("interrupted at iteration %lld; checkpoint saved to %s (continue with --resume %s)\n",
                static_cast<long long>(it), run.file("last").c_str(), out.c_str());
  } else {
    std::printf("meta-trained %s for %lld iterations; checkpoints in %s", cfg["algo"].get<std::string>().c_str(),
                static_cast<long long>(it), out.c_str());
    if (last_val.ran)
      std::printf("; validation %s %.4f +- %.4f", regression ? "-MSE" : "accuracy", last_val.result.mean,
                  last_val.result.ci95);
    std::printf("\n");
  }
  if (interrupted) std::fprintf(stderr, "meta-train: interrupted by signal %d; saved %s\n", g_signal.load(),
                                run.file("last").c_str());
  return interrupted ? kExitInterrupted : 0;
}

}  // namespace metafew::cli
