#include "meta/trainer.h"

#include <omp.h>

#include <atomic>
#include <cmath>
#include <exception>

#include "tensor/kernels.h"

namespace metafew::meta {

namespace {
// Runs fn(i) for i in [0, n) one index per thread; rethrows the first exception (by index) afterwards. One
// task runs on the calling thread outside any region, so that its kernels split their work over the threads
// themselves: inside even an inactive region (if false) each of their parallel regions is nested, and libgomp
// creates and joins new threads for a nested team every time (measured: 586 thread creations in 3 ResNet-12
// ProtoNets episodes at 2 threads, and a third of the time in page faults on the new threads' stacks).
template <class Fn>
void parallel_tasks(int64_t n, Fn&& fn) {
  if (n == 1) {
    fn(0);
    return;
  }
  std::vector<std::exception_ptr> errors(static_cast<size_t>(n));
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t i = 0; i < n; ++i) {
    try {
      fn(i);
    } catch (...) {
      errors[static_cast<size_t>(i)] = std::current_exception();
    }
  }
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

// The mean meta-gradient, with each task's output (its final carried state included) left in `outs`.
StepResult run_tasks(const Algorithm& algo, const std::vector<Task>& tasks, std::vector<Tensor>& mean,
                     std::vector<TaskOutput>& outs) {
  MF_CHECK(!tasks.empty(), "meta-step: the task batch is empty");
  const int64_t b = static_cast<int64_t>(tasks.size());
  std::vector<std::vector<Tensor>> grads(tasks.size());
  outs.assign(tasks.size(), TaskOutput{});
  parallel_tasks(b, [&](int64_t i) { outs[i] = algo.meta_gradient(tasks[i], grads[i]); });
  // Fixed-order reduction.
  const size_t np = algo.parameters().size();
  mean.assign(np, Tensor());
  for (size_t p = 0; p < np; ++p) {
    Tensor acc = grads[0][p].clone();
    float* a = acc.data<float>();
    for (int64_t t = 1; t < b; ++t) {
      const float* g = grads[t][p].data<float>();
      for (int64_t j = 0; j < acc.numel(); ++j) a[j] += g[j];
    }
    const float inv = 1.0f / static_cast<float>(b);
    for (int64_t j = 0; j < acc.numel(); ++j) a[j] *= inv;
    mean[p] = acc;
  }
  StepResult r;
  for (const TaskOutput& o : outs) {
    r.loss += o.loss / static_cast<double>(b);
    r.accuracy += o.accuracy / static_cast<double>(b);
  }
  return r;
}
}  // namespace

StepResult mean_meta_gradient(const Algorithm& algo, const std::vector<Task>& tasks,
                              std::vector<Tensor>& mean) {
  std::vector<TaskOutput> outs;
  return run_tasks(algo, tasks, mean, outs);
}

StepResult meta_step(Algorithm& algo, const std::vector<Task>& tasks, optim::Optimizer& opt) {
  std::vector<Tensor> mean;
  std::vector<TaskOutput> outs;
  StepResult r = run_tasks(algo, tasks, mean, outs);
  opt.step(algo.parameters(), mean);
  if (!algo.state().empty()) {
    std::vector<std::vector<Tensor>> states;
    for (TaskOutput& o : outs) states.push_back(std::move(o.state));
    algo.fold_state(states);  // in task order (Note [Reptile's inner optimiser state])
  }
  return r;
}

// Note [No NaN in a checkpoint]: a diverging run used to stop only when the logged loss was not finite, but
// a loss can stay finite while the parameters are not (ProtoNets with NaN features gives every class the same
// distance: loss ln 5), so runs exited 0 with NaN in `best` and `last`, and eval printed chance. The trainer
// now checks every parameter (and Reptile's carried state) after each step, which costs one pass over the
// parameters (0.1 ms for conv-4 against a meta-step of tens of ms), and refuses to save non-finite values at
// all, so the checkpoint a divergence names is always usable.
std::string first_non_finite(const std::vector<Tensor>& tensors, const std::vector<std::string>& names,
                             const std::string& what) {
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    int64_t bad = 0;
    if (t.dtype() == tensor::DType::f32) {
      const float* p = t.data<float>();
      for (int64_t j = 0; j < t.numel(); ++j) bad += !std::isfinite(p[j]);
    } else if (t.dtype() == tensor::DType::f64) {
      const double* p = t.data<double>();
      for (int64_t j = 0; j < t.numel(); ++j) bad += !std::isfinite(p[j]);
    }
    if (bad > 0)
      return detail::concat(what, " ", i < names.size() ? names[i] : std::to_string(i), ": ", bad, " of ", t.numel(),
                            " values are NaN or infinite");
  }
  return "";
}

std::string first_non_finite(const Algorithm& algo) {
  std::vector<Tensor> params;
  for (const auto& p : algo.parameters()) params.push_back(p.data());
  std::string bad = first_non_finite(params, algo.parameter_names(), "parameter");
  if (bad.empty()) bad = first_non_finite(algo.state(), algo.state_names(), "carried state");
  return bad;
}

EvalResult summarize(const std::vector<double>& scores) {
  EvalResult r;
  r.episodes = static_cast<int64_t>(scores.size());
  if (scores.empty()) return r;
  for (double s : scores) r.mean += s;
  r.mean /= static_cast<double>(scores.size());
  double var = 0;
  for (double s : scores) var += (s - r.mean) * (s - r.mean);
  r.stddev = std::sqrt(var / static_cast<double>(scores.size()));
  r.ci95 = 1.96 * r.stddev / std::sqrt(static_cast<double>(scores.size()));
  return r;
}

EvalResult evaluate(const Algorithm& algo, const std::function<Task(uint64_t)>& task_at, int64_t episodes,
                    int64_t steps, const std::function<bool()>& stop, const EpisodeObserver& observe) {
  MF_CHECK(episodes > 0, "evaluate: the number of episodes must be positive, got ", episodes);
  std::vector<double> scores(static_cast<size_t>(episodes));
  std::atomic<bool> cancelled{false};
  parallel_tasks(episodes, [&](int64_t i) {
    if (cancelled.load(std::memory_order_relaxed) || (stop && stop())) {
      cancelled.store(true, std::memory_order_relaxed);
      return;
    }
    Task t = task_at(static_cast<uint64_t>(i));
    const Tensor outputs = algo.predict(t, steps);
    scores[static_cast<size_t>(i)] = Algorithm::score(outputs, t.query_y, t.regression());
    if (observe) observe(i, t, outputs);
  });
  EvalResult r = summarize(scores);
  r.cancelled = cancelled.load();
  return r;
}

}  // namespace metafew::meta
