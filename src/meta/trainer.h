#pragma once
// The outer loop's building blocks: one meta-update over a batch of tasks, and the evaluation protocol.
//
// Note [Task parallelism]: tasks of a meta-batch run one per OpenMP thread, each building its own graph on
// the shared (read-only) parameters; each task's result lands in its own slot and the slots are summed in
// task order, so the update does not depend on the thread count (ARCHITECTURE.md, decision 3). Inside the
// parallel region every kernel, oneDNN's included, runs single-threaded. Exceptions are captured per task
// and rethrown after the region.
#include <functional>

#include "meta/algorithm.h"
#include "optim/optimizer.h"

namespace metafew::meta {

struct StepResult {
  double loss = 0;      // mean query loss after adaptation
  double accuracy = 0;  // mean query accuracy (or -MSE)
};

// Mean of the tasks' meta-gradients, then one step of `opt` on algo.parameters(); an algorithm that carries a
// state gets the task-order mean of the tasks' final states (Note [Task-order reduction] in trainer.cpp).
StepResult meta_step(Algorithm& algo, const std::vector<Task>& tasks, optim::Optimizer& opt);
// The same over several processes: `tasks` are this process's block of a meta-batch of `total`, starting at
// task `first` (dist::block); every process calls it, and every one ends with the same parameters.
StepResult meta_step(Algorithm& algo, const std::vector<Task>& tasks, int64_t first, int64_t total,
                     optim::Optimizer& opt);

// One task's share of a meta-step: its tensors (meta-gradient, then final carried state) and scalars.
struct TaskShare {
  std::vector<Tensor> tensors;
  std::vector<double> scalars;
};
// Note [Task-order reduction]: over every process, each f32 tensor summed in task order and scaled by 1/total
// (in f32), each i32 tensor the same in every task (else throws naming it from `names`), each scalar summed
// in task order from 0. `local` are this process's tasks, from task `first` of `total`; `like` gives the
// tensors' shapes and dtypes.
TaskShare reduce_in_task_order(std::vector<TaskShare>& local, int64_t first, int64_t total,
                               const std::vector<Tensor>& like, const std::vector<std::string>& names,
                               size_t scalars);

// "" when every parameter and carried-state value of `algo` is finite; otherwise names the first tensor that is
// not and counts its NaN and infinite values ("parameter conv0.weight: 12 of 576 values are NaN or
// infinite"). The trainer checks it after every step and before every save (Note [No NaN in a checkpoint]).
std::string first_non_finite(const Algorithm& algo);
// The same for a list of named tensors (f32 or f64; other dtypes are finite by construction).
std::string first_non_finite(const std::vector<Tensor>& tensors, const std::vector<std::string>& names,
                             const std::string& what);

// The mean meta-gradient alone (for tests and the benchmark).
StepResult mean_meta_gradient(const Algorithm& algo, const std::vector<Task>& tasks, std::vector<Tensor>& mean);

struct EvalResult {
  double mean = 0;
  double ci95 = 0;    // 1.96 * std / sqrt(episodes), std over episodes (population, as MAML's code computes it)
  double stddev = 0;
  int64_t episodes = 0;
  bool cancelled = false;
};

// Runs `episodes` tasks (task_at(i) must be a pure function of i), adapting with `steps` inner steps, and
// reports the mean score with its 95% interval. Episodes run in parallel, and over several processes each runs
// a block of them (every process calls it); the result depends on neither.
// `stop` (optional) is polled before each episode; once it returns true the remaining episodes are skipped
// and the result has `cancelled` set (its figures are then of a partial run and must not be used).
// `observe` (optional) sees each episode's task and outputs, from the thread that ran it, in no fixed order
// (over several processes, each process sees its own episodes only).
using EpisodeObserver = std::function<void(int64_t episode, const Task& task, const Tensor& outputs)>;
EvalResult evaluate(const Algorithm& algo, const std::function<Task(uint64_t)>& task_at, int64_t episodes,
                    int64_t steps, const std::function<bool()>& stop = {}, const EpisodeObserver& observe = {});

// mean and 95% interval of a list of scores.
EvalResult summarize(const std::vector<double>& scores);

}  // namespace metafew::meta
