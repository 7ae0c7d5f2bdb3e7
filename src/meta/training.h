#pragma once
// The meta-training loop: iterations of meta-steps over task batches, logging windows, validation with the
// best model kept, checkpoints, stopping on a signal, and divergence checks. It owns no files and no
// terminal: what is saved, logged and shown goes through the callbacks (the CLI writes the run folder and the
// progress line), so the loop is the same for every front end and a distributed trainer can wrap it.
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/setting.h"
#include "meta/trainer.h"

namespace metafew::meta {

struct TrainOptions {
  int64_t iterations = 1000;
  int64_t meta_batch = 32;
  int64_t eval_steps = 10;  // inner steps when adapting at validation (and test) time
  int64_t seed = 1;
  int64_t threads = 0;      // OpenMP threads (0: all cores)
  int64_t log_every = 50, val_every = 500, val_episodes = 100, checkpoint_every = 500;
  // A file whose parameters start a new run instead of a fresh initialisation (the front end loads it:
  // Note [Initialising from a file] in cli/common.cpp); empty: none.
  std::string init_from;
  // Pretraining: images per batch (a batch is one "task"; the logs count images per second); 0: episodes.
  int64_t batch_images = 0;
};

// iterations, meta_batch, eval_steps, seed, threads, log_every, val_every, val_episodes, checkpoint_every,
// init_from.
std::vector<core::Setting> training_settings();
TrainOptions train_options(const nlohmann::json& cfg);

using TaskAt = std::function<Task(uint64_t)>;

struct TrainHooks {
  // Writes checkpoint `name` ("last" or "best") of the current parameters at `iteration`; `validation_pending`
  // marks a `last` whose iteration's validation a signal cut short (a resume runs it first), `best_score` is
  // the best validation score so far (-inf: none). Called only with every parameter finite.
  std::function<void(const std::string& name, int64_t iteration, bool validation_pending, double best_score)> save;
  // A metrics line: a training window or a validation; `summary` is a short text for a live line ("" for
  // none).
  std::function<void(const nlohmann::json& line, const std::string& summary)> metrics;
  // After each meta-step.
  std::function<void(int64_t iteration, double loss)> progress;
  // Polled between steps, while a batch is drawn and between validation episodes: true stops the run (it
  // saves `last` first).
  std::function<bool()> stop_requested;
  // Seconds since an arbitrary start (tasks per second of the logging windows); steady_clock by default.
  std::function<double()> clock;
  // The path of `last`, for the message of a diverged run.
  std::string last_checkpoint;
};

// Where a run starts: 0 for a new run, or a checkpoint's iteration, best score and pending mark.
struct TrainStart {
  int64_t iteration = 0;
  double best_score = -std::numeric_limits<double>::infinity();
  bool validation_pending = false;
};

struct TrainOutcome {
  int64_t iteration = 0;      // the iteration reached
  bool interrupted = false;   // a stop request ended the run before its last iteration (`last` saved)
  bool validated = false;     // a validation ran to the end in this process
  EvalResult last_validation;
  double best_score = 0;
};

class Trainer {
 public:
  // `val` may be empty (no validation: `best` is then the final parameters). `regression` names the scores
  // (-MSE instead of accuracy) in the metrics lines; `val_split` is recorded in them.
  Trainer(Algorithm& algo, optim::Optimizer& opt, TrainOptions options, TaskAt train, TaskAt val,
          std::string val_split, bool regression, TrainHooks hooks);
  // Runs from `start` to options.iterations (or a stop request). A new run saves `last` at iteration 0 first,
  // so a usable checkpoint exists whatever happens next. Throws naming the iteration and the last good
  // checkpoint's iteration when the model diverges.
  TrainOutcome run(const TrainStart& start);

 private:
  bool validate(int64_t at);
  bool stop_now();
  void save(const std::string& name, int64_t at);

  Algorithm& algo_;
  optim::Optimizer& opt_;
  TrainOptions o_;
  TaskAt train_, val_;
  std::string val_split_;
  bool regression_;
  TrainHooks hooks_;
  double best_ = 0;
  bool pending_ = false;
  int64_t last_saved_ = 0;
  TrainOutcome outcome_;
};

}  // namespace metafew::meta
