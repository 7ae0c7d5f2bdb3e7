#include "meta/training.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "core/dist.h"
#include "meta/registry.h"

namespace metafew::meta {

std::vector<core::Setting> training_settings() {
  const TrainOptions d;
  using core::integer_setting, core::kMaxCount;
  return {
      integer_setting("meta_batch", d.meta_batch, 1, 100000, "tasks per meta-iteration"),
      integer_setting("eval_steps", d.eval_steps, 0, 100000, "inner-loop steps when adapting at validation and test time"),
      integer_setting("iterations", d.iterations, 1, kMaxCount, "meta-iterations"),
      integer_setting("seed", d.seed, 0, 1e18, "random seed (initialisation, tasks, splits)"),
      integer_setting("threads", d.threads, 0, 4096, "OpenMP threads (0: all cores)"),
      integer_setting("log_every", d.log_every, 1, kMaxCount, "iterations between log lines"),
      integer_setting("val_every", d.val_every, 1, kMaxCount, "iterations between validations"),
      integer_setting("val_episodes", d.val_episodes, 1, 1e7, "episodes per validation"),
      integer_setting("checkpoint_every", d.checkpoint_every, 1, kMaxCount,
                      "iterations between checkpoints of RUN/last"),
      core::text_setting("init_from", d.init_from,
                         "start from the parameters of this file instead of a fresh initialisation: a safetensors "
                         "file (metafew export, or PyTorch's by the same names), a metafew checkpoint or run "
                         "folder; every backbone parameter must be there with its shape, the head and Meta-SGD's "
                         "rates start fresh when absent"),
  };
}

TrainOptions train_options(const nlohmann::json& cfg) {
  TrainOptions o;
  o.iterations = cfg["iterations"];
  o.meta_batch = cfg["meta_batch"];
  o.eval_steps = cfg["eval_steps"];
  o.seed = cfg["seed"];
  o.threads = cfg["threads"];
  o.log_every = cfg["log_every"];
  o.val_every = cfg["val_every"];
  o.val_episodes = cfg["val_episodes"];
  o.checkpoint_every = cfg["checkpoint_every"];
  o.init_from = cfg["init_from"];
  if (find_algorithm(cfg["algo"]).batch_training) o.batch_images = cfg["batch_size"];
  return o;
}

Trainer::Trainer(Algorithm& algo, optim::Optimizer& opt, TrainOptions options, TaskAt train, TaskAt val,
                 std::string val_split, bool regression, TrainHooks hooks)
    : algo_(algo),
      opt_(opt),
      o_(options),
      train_(std::move(train)),
      val_(std::move(val)),
      val_split_(std::move(val_split)),
      regression_(regression),
      hooks_(std::move(hooks)) {
  if (!hooks_.clock)
    hooks_.clock = [] {
      return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
    };
  if (!hooks_.stop_requested) hooks_.stop_requested = [] { return false; };
  if (!hooks_.progress) hooks_.progress = [](int64_t, double) {};
  if (!hooks_.metrics) hooks_.metrics = [](const nlohmann::json&, const std::string&) {};
}

void Trainer::save(const std::string& name, int64_t at) {
  // Never write a non-finite value (Note [No NaN in a checkpoint] in meta/trainer.cpp).
  const std::string bad = first_non_finite(algo_);
  MF_CHECK(bad.empty(), "meta-train: not saving ", name, " at iteration ", at, ": ", bad);
  if (name == "last") last_saved_ = at;
  hooks_.save(name, at, name == "last" && pending_, best_);
}

// A validation, logged and kept as `best` when it improves; false when a stop request cut it short, which saves
// `last` marked so that a resume runs this validation first (the run then continues exactly as if never
// stopped, `best` included).
bool Trainer::validate(int64_t at) {
  EvalResult r = evaluate(algo_, val_, o_.val_episodes, o_.eval_steps, hooks_.stop_requested);
  if (r.cancelled) {
    pending_ = true;
    save("last", at);
    return false;
  }
  pending_ = false;
  outcome_.validated = true;
  outcome_.last_validation = r;
  nlohmann::json line{{"iteration", at},
                      {"split", val_split_},
                      {regression_ ? "val_neg_mse" : "val_accuracy", r.mean},
                      {"val_ci95", r.ci95},
                      {"val_episodes", o_.val_episodes}};
  char summary[96];
  std::snprintf(summary, sizeof summary, regression_ ? "val -MSE %.4f +- %.4f @%lld" : "val %.2f%% +- %.2f @%lld",
                regression_ ? r.mean : 100 * r.mean, regression_ ? r.ci95 : 100 * r.ci95, static_cast<long long>(at));
  hooks_.metrics(line, summary);
  if (r.mean > best_) {
    best_ = r.mean;
    save("best", at);
  }
  dist::take_stats();  // a validation's communication is not the meta-steps'
  return true;
}

// A stop request, agreed by every process (each polls its own signal flag; all stop at the same iteration).
// Called at the same points by every process.
bool Trainer::stop_now() {
  const bool mine = hooks_.stop_requested();
  return dist::active() ? dist::any(mine) : mine;
}

TrainOutcome Trainer::run(const TrainStart& start) {
  outcome_ = TrainOutcome{};
  best_ = start.best_score;
  pending_ = start.validation_pending;
  last_saved_ = start.iteration;
  int64_t it = start.iteration;
  bool interrupted = false;
  if (it == 0 && !pending_) save("last", 0);  // a usable checkpoint exists from the start
  if (pending_ && val_) {
    if (validate(it))
      save("last", it);  // clears the mark (a run stopped in its final validation has no later save)
    else
      interrupted = true;
  }
  double window_loss = 0, window_acc = 0;
  int64_t window = 0;
  double t_window = hooks_.clock();
  dist::take_stats();  // the windows count the meta-steps' communication only
  while (it < o_.iterations && !interrupted) {
    // This process's block of the meta-batch (all of it in one process).
    const auto [first, end] = dist::block(o_.meta_batch, dist::rank(), dist::size());
    std::vector<Task> tasks;
    tasks.reserve(static_cast<size_t>(end - first));
    // A stop request while the batch is drawn (a large meta-batch takes a while) stops before the step.
    bool stop = false;
    for (int64_t b = first; b < end && !(stop = !dist::active() && hooks_.stop_requested()); ++b)
      tasks.push_back(train_(static_cast<uint64_t>(it * o_.meta_batch + b)));
    if (stop || stop_now()) {
      interrupted = true;
      save("last", it);
      break;
    }
    StepResult r = meta_step(algo_, tasks, first, o_.meta_batch, opt_);
    const std::string diverged =
        std::isfinite(r.loss) ? first_non_finite(algo_) : detail::concat("the meta-loss became ", r.loss);
    if (!diverged.empty())
      throw Error(detail::concat("meta-train: ", diverged, " at iteration ", it + 1,
                                 " (diverged: try a smaller --outer-lr or --inner-lr); the last good checkpoint is ",
                                 hooks_.last_checkpoint, " (iteration ", last_saved_, ", every parameter finite)"));
    ++it;
    window_loss += r.loss;
    window_acc += r.accuracy;
    ++window;
    hooks_.progress(it, r.loss);
    if (it % o_.log_every == 0 || it == o_.iterations) {
      const double secs = hooks_.clock() - t_window;
      nlohmann::json line{{"iteration", it},
                          {"loss", window_loss / static_cast<double>(window)},
                          {regression_ ? "neg_mse" : "accuracy", window_acc / static_cast<double>(window)},
                          {o_.batch_images > 0 ? "images_per_second" : "tasks_per_second",
                           secs > 0 ? static_cast<double>(window * o_.meta_batch * std::max<int64_t>(o_.batch_images, 1)) / secs
                                    : 0.0},
                          {"lr", opt_.current_lr()}};
      if (dist::active()) {
        // Communication per iteration of this process (rank 0's, the one that logs): Note [Processes].
        const dist::Stats c = dist::take_stats();
        line["processes"] = dist::size();
        line["comm_seconds_per_iteration"] = c.seconds / static_cast<double>(window);
        line["comm_mb_per_iteration"] = static_cast<double>(c.bytes) / 1e6 / static_cast<double>(window);
      }
      hooks_.metrics(line, "");  // a live line shows the loss already
      window_loss = window_acc = 0;
      window = 0;
      t_window = hooks_.clock();
    }
    if (val_ && (it % o_.val_every == 0 || it == o_.iterations) && !validate(it)) {
      interrupted = true;
      break;
    }
    if (it % o_.checkpoint_every == 0 || it == o_.iterations) save("last", it);
    if (stop_now()) {
      interrupted = it < o_.iterations;
      if (interrupted) save("last", it);
      break;
    }
  }
  if (!val_) save("best", it);  // without validation the final parameters are the best we know
  outcome_.iteration = it;
  outcome_.interrupted = interrupted;
  outcome_.best_score = best_;
  return outcome_;
}

}  // namespace metafew::meta
