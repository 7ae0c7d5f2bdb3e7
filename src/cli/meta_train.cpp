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
#include "core/dist.h"
#include "io/config.h"
#include "io/run_dir.h"
#include "io/settings.h"
#include "data/options.h"
#include "meta/registry.h"
#include "meta/training.h"
#include "nn/options.h"
#include "optim/options.h"

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
      "json", "print the final summary as JSON")("h,help", "show this help");  // --threads: a setting
  add_config_options(opts, defaults, "settings");
  cxxopts::ParseResult args = parse_options(opts, argc, argv, "meta-train");
  if (args.count("help")) {
    std::printf("%s\n", opts.help({"run", "settings"}).c_str());
    return 0;
  }

  // Over several processes (Note [Processes] in core/dist.h) process 0 alone owns the run folder and the
  // terminal; the others read the same data and checkpoint, train their share, and stay silent.
  const bool root = dist::rank() == 0;
  json flags = flags_given(args, defaults);
  json cfg;
  std::string out;
  io::Checkpoint resume_from;
  const bool resuming = args.count("resume") > 0;
  std::unique_ptr<io::RunDir> run_holder;
  bool channels_chosen = resuming || flags.contains("channels");  // else the default: colour read as gray is news
  if (resuming) {
    MF_USAGE_CHECK(!args.count("out") && !args.count("config") && !args.count("overwrite"),
                   "meta-train --resume continues the run in its own folder with its own settings; --out, --config "
                   "and --overwrite cannot be given with it");
    out = args["resume"].as<std::string>();
    if (root) {
      run_holder = std::make_unique<io::RunDir>(out, false);
      run_holder->lock();  // before reading `last`: no other process may be writing it
    }
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
    channels_chosen = channels_chosen || file.contains("channels");
    cfg = resolve_config(file, flags);
    out = args["out"].as<std::string>();
    if (root) {
      run_holder = std::make_unique<io::RunDir>(out, true);
      run_holder->lock();
      MF_USAGE_CHECK(!run_holder->holds_run() || args.count("overwrite"), "meta-train: ", out,
                     " already holds a run (config.json, metrics.jsonl or checkpoints); continue it with --resume ",
                     out, ", start over with --overwrite (deletes its checkpoints and metrics), or choose another --out");
    }
  }
  set_threads(cfg["threads"]);

  auto ds = open_data(cfg);
  const bool regression = data::is_regression(cfg);
  const int64_t ways = regression ? 0 : cfg["ways"].get<int64_t>();
  const int64_t test_ways = regression ? 0 : cfg["test_ways"].get<int64_t>();
  const meta::AlgorithmEntry& entry = meta::find_algorithm(cfg["algo"]);
  const bool head = entry.uses_head;
  MF_USAGE_CHECK(!head || regression || test_ways == ways, "meta-train: --algo ", cfg["algo"].get<std::string>(),
                 " has a ", ways, "-way head, so --test-ways must equal --ways (got ", test_ways, ")");
  if (ds) {
    if (root) warn_about_data(*ds, "meta-train", channels_chosen);
    // Pretraining draws batches from every training class, not ways-class episodes (2 classes at least).
    require_split_fits(cfg, *ds, cfg["train_split"], entry.batch_training ? 2 : ways, "meta-train");
    if (!cfg["val_split"].get<std::string>().empty()) require_split_fits(cfg, *ds, cfg["val_split"], test_ways, "meta-train");
  }
  if (entry.batch_training && !resuming) {
    // The classifier's size: the training split's classes (Note [Pretraining] in meta/pretrain.cpp).
    const int64_t classes = ds->class_count(cfg["train_split"]);
    MF_USAGE_CHECK(cfg["pretrain_classes"] == 0 || cfg["pretrain_classes"] == classes, "meta-train: --pretrain-classes ",
                   cfg["pretrain_classes"].get<int64_t>(), " does not match the ", classes, " classes of split '",
                   cfg["train_split"].get<std::string>(), "' (leave it unset: meta-train fills it in)");
    cfg["pretrain_classes"] = classes;
  }
  if (ds && !resuming && nn::parse_normalize(cfg["normalize"]) == nn::Normalize::channel && cfg["input_mean"] == "") {
    // Note [Input normalisation] in nn/options.cpp: the training split's statistics, recorded in the config.
    const data::ChannelStatistics st = data::channel_statistics(*ds, cfg["train_split"]);
    cfg["input_mean"] = nn::channel_values_name(st.mean);
    cfg["input_std"] = nn::channel_values_name(st.std);
    if (root)
      std::fprintf(stderr, "meta-train: inputs normalised per channel with split '%s': mean %s, std %s\n",
                   cfg["train_split"].get<std::string>().c_str(), cfg["input_mean"].get<std::string>().c_str(),
                   cfg["input_std"].get<std::string>().c_str());
  }
  const uint64_t seed = cfg["seed"];
  TaskSource train = entry.batch_training
                         ? batch_source(cfg, ds, cfg["train_split"], seed)
                         : task_source(cfg, ds, cfg["train_split"], ways, cfg["shots"], cfg["queries"], seed,
                                       data::parse_within(cfg["episodes_within"]), data::parse_augment(cfg["augment"]));
  const std::string val_split = cfg["val_split"];
  TaskSource val;
  if (!val_split.empty())
    val = task_source(cfg, ds, val_split, test_ways, cfg["test_shots"], cfg["test_queries"],
                      core::derive_key(seed, {0x76616cULL}), data::parse_within(cfg["test_episodes_within"]));

  std::unique_ptr<meta::Algorithm> algo;
  std::unique_ptr<optim::Optimizer> opt = optim::make_optimizer(cfg);
  meta::TrainStart start;
  if (resuming) {
    algo = algorithm_from_checkpoint(resume_from);
    std::vector<tensor::Tensor> state;
    for (int64_t i = 0; i < resume_from.header.value("optimizer_state", int64_t{0}); ++i)
      state.push_back(io::find_tensor(resume_from, "optimizer/" + std::to_string(i)));
    opt->load_state(resume_from.header["optimizer_steps"], state);
    start.iteration = resume_from.header["iteration"];
    if (resume_from.header.contains("best_score") && resume_from.header["best_score"].is_number())
      start.best_score = resume_from.header["best_score"];
    start.validation_pending = resume_from.header.value("validation_pending", false);
  } else {
    core::Rng init(core::derive_key(seed, {0x696e6974ULL}));
    algo = meta::make_algorithm(nn::Model(nn::model_config(cfg, head_outputs(cfg))), meta::algo_config(cfg), init);
    if (!cfg["init_from"].get<std::string>().empty()) {
      const std::string report = init_parameters_from(*algo, cfg["init_from"]);
      if (root) std::fprintf(stderr, "meta-train: --init-from: %s\n", report.c_str());
    }
  }

  if (root) {
    io::RunDir& run = *run_holder;
    if (!resuming) {
      run.clear_run();  // --overwrite: the old run goes only now that the new one is ready to start
    } else {
      const int64_t dropped = run.trim_metrics(start.iteration);
      if (dropped > 0)
        std::fprintf(stderr, "meta-train: dropped %lld metrics lines logged after iteration %lld (or incomplete)\n",
                     static_cast<long long>(dropped), static_cast<long long>(start.iteration));
    }
    run.write_json("config.json", cfg);
  }
  const meta::TrainOptions options = meta::train_options(cfg);
  const std::string last_file = (std::filesystem::path(out) / "last").string();
  MF_USAGE_CHECK(start.iteration <= options.iterations, "meta-train --resume: the run is already at iteration ",
                 start.iteration, " of ", options.iterations, "; pass a larger --iterations to continue it");
  const std::string threads = dist::active() ? detail::concat(omp_get_max_threads(), " threads x ", dist::size(),
                                                               " processes")
                                            : detail::concat(omp_get_max_threads(), " threads");
  if (root) {
    if (entry.batch_training)
      std::fprintf(
          stderr,
          "meta-train: %s on %s, %s (%lld classes), batches of %lld images, %lld iterations, %s -> %s\n",
          cfg["algo"].get<std::string>().c_str(), cfg["data"].get<std::string>().c_str(),
          cfg["train_split"].get<std::string>().c_str(),
          static_cast<long long>(cfg["pretrain_classes"].get<int64_t>()),
          static_cast<long long>(cfg["batch_size"].get<int64_t>()),
          static_cast<long long>(options.iterations), threads.c_str(), out.c_str());
    else
      std::fprintf(
          stderr,
          "meta-train: %s on %s, %s, %lld-way %lld-shot, meta-batch %lld, %lld iterations, %s -> %s\n",
          cfg["algo"].get<std::string>().c_str(), cfg["data"].get<std::string>().c_str(),
          cfg["train_split"].get<std::string>().c_str(), static_cast<long long>(ways),
          static_cast<long long>(cfg["shots"].get<int64_t>()), static_cast<long long>(options.meta_batch),
          static_cast<long long>(options.iterations), threads.c_str(), out.c_str());
  }
  if (root && dist::size() > options.meta_batch)
    std::fprintf(stderr,
                 "meta-train: warning: only %lld of the %d processes train (%s; a task is the unit divided, Note "
                 "[Task-order reduction]); the others share only the validation episodes\n",
                 static_cast<long long>(options.meta_batch), dist::size(),
                 entry.batch_training ? "pretraining draws one batch per iteration"
                                      : detail::concat("meta-batch ", options.meta_batch).c_str());
  if (resuming && root) std::fprintf(stderr, "meta-train: resumed at iteration %lld\n", static_cast<long long>(start.iteration));

  // The trainer (meta/training.h) runs the loop; this front end writes the run folder and the terminal.
  const json extra{{"preprocessing", ds ? preprocessing_of(*ds) : json{{"kind", "sinusoid"}}}};
  std::unique_ptr<Progress> progress;
  meta::TrainHooks hooks;
  if (root) {
    io::RunDir& run = *run_holder;
    progress = std::make_unique<Progress>("meta-train", options.iterations, start.iteration);
    hooks.save = [&](const std::string& name, int64_t iteration, bool pending, double best) {
      json e = extra;
      e["validation_pending"] = pending;
      e["best_score"] = std::isfinite(best) ? json(best) : json(nullptr);
      io::save_checkpoint(run.file(name), training_checkpoint(cfg, *algo, *opt, iteration, e));
    };
    hooks.metrics = [&](const json& line, const std::string& summary) {
      json l = line;
      if (!l.contains("split")) l["rss_mb"] = resident_mb();  // training windows
      run.append_metrics(l);
      progress->metrics(l.dump(), summary);
    };
    hooks.progress = [&](int64_t iteration, double loss) { progress->update(iteration, detail::concat("loss ", loss)); };
  } else {
    hooks.save = [](const std::string&, int64_t, bool, double) {};
  }
  hooks.stop_requested = [] { return g_signal.load() != 0; };
  hooks.last_checkpoint = last_file;
  meta::TrainOutcome result;
  {
    SignalScope signals;
    meta::Trainer trainer(*algo, *opt, options, train, val, val_split, regression, hooks);
    result = trainer.run(start);
  }
  const int64_t it = result.iteration;
  const bool interrupted = result.interrupted;
  if (!root) return interrupted ? kExitInterrupted : 0;
  progress->finish();

  json summary{{"run", out}, {"iterations", it}, {"algo", cfg["algo"]}, {"interrupted", interrupted}};
  if (result.validated) {
    summary[regression ? "val_neg_mse" : "val_accuracy"] = result.last_validation.mean;
    summary["val_ci95"] = result.last_validation.ci95;
    summary["best_val"] = result.best_score;
  }
  if (args.count("json")) {
    std::printf("%s\n", summary.dump().c_str());
  } else if (interrupted) {
    std::printf("interrupted at iteration %lld; checkpoint saved to %s (continue with --resume %s)\n",
                static_cast<long long>(it), last_file.c_str(), out.c_str());
  } else {
    std::printf("meta-trained %s for %lld iterations; checkpoints in %s", cfg["algo"].get<std::string>().c_str(),
                static_cast<long long>(it), out.c_str());
    if (result.validated)
      std::printf("; validation %s %.4f +- %.4f", regression ? "-MSE" : "accuracy", result.last_validation.mean,
                  result.last_validation.ci95);
    std::printf("\n");
  }
  if (interrupted) std::fprintf(stderr, "meta-train: interrupted by signal %d; saved %s\n", g_signal.load(),
                                last_file.c_str());
  return interrupted ? kExitInterrupted : 0;
}

}  // namespace metafew::cli
