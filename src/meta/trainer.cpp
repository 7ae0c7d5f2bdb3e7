#include "meta/trainer.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <exception>

#include "core/dist.h"
#include "core/rng.h"
#include "nn/noise.h"
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

}  // namespace

// Note [Task-order reduction]: a meta-step's update is the mean of its tasks' meta-gradients, each element
// summed in task order (task 0's value, + task 1's, + ...) and then scaled by 1/tasks in f32, so that it does
// not depend on how many threads ran the tasks (ARCHITECTURE.md, decision 3). Over several processes (Note
// [Processes] in core/dist.h) each process holds a contiguous block of the tasks, and the same sums are
// formed by a chain: the first process adds its tasks and sends the partial sums to the second, which adds
// its own in order and passes them on; the last process scales them and broadcasts the mean. Every element
// thus sees the same additions in the same order as in one process, and the parameters stay bit-identical at
// any number of processes and threads (MPI_Allreduce would add in an order of its own choosing). The cost:
// each process receives and sends one message of the model's size (P - 1 messages in sequence), then one
// broadcast of it: for conv-4 on Omniglot (113k parameters) 0.45 MB each. Reptile's carried state and the
// logged loss and accuracy ride in the same message.
TaskShare reduce_in_task_order(std::vector<TaskShare>& local, int64_t first, int64_t total,
                               const std::vector<Tensor>& like, const std::vector<std::string>& names,
                               size_t scalars) {
  MF_CHECK(total > 0, "meta-step: the task batch is empty");
  const int procs = dist::size(), me = dist::rank();
  const int holders = static_cast<int>(std::min<int64_t>(procs, total));  // processes with at least one task
  const size_t nt = like.size();
  for (size_t t = 0; t < local.size(); ++t) {
    MF_CHECK(local[t].tensors.size() == nt, "meta-step: task ", first + static_cast<int64_t>(t), " gives ",
             local[t].tensors.size(), " tensors, expected ", nt);
    MF_CHECK(local[t].scalars.size() == scalars, "meta-step: task ", first + static_cast<int64_t>(t), " gives ",
             local[t].scalars.size(), " scalars, expected ", scalars);
  }
  for (const Tensor& l : like)
    MF_CHECK(l.dtype() == tensor::DType::f32 || l.dtype() == tensor::DType::i32,
             "meta-step: only f32 and i32 tensors are reduced");
  // The message: every tensor's values (4 bytes each), then the scalars.
  auto message_bytes = [&] {
    size_t n = scalars * sizeof(double);
    for (const Tensor& l : like) n += static_cast<size_t>(l.numel()) * 4;
    return n;
  };
  auto pack = [&](const TaskShare& s, std::vector<char>& buf) {
    buf.resize(message_bytes());
    char* p = buf.data();
    for (const Tensor& t : s.tensors) {
      const size_t n = static_cast<size_t>(t.numel()) * 4;
      std::memcpy(p, t.dtype() == tensor::DType::f32 ? static_cast<const void*>(t.data<float>())
                                                     : static_cast<const void*>(t.data<int32_t>()), n);
      p += n;
    }
    std::memcpy(p, s.scalars.data(), scalars * sizeof(double));
  };
  auto unpack = [&](const std::vector<char>& buf) {
    TaskShare s;
    const char* p = buf.data();
    for (const Tensor& l : like) {
      Tensor t = l.clone();
      const size_t n = static_cast<size_t>(t.numel()) * 4;
      std::memcpy(t.dtype() == tensor::DType::f32 ? static_cast<void*>(t.data<float>())
                                                  : static_cast<void*>(t.data<int32_t>()), p, n);
      p += n;
      s.tensors.push_back(t);
    }
    s.scalars.resize(scalars);
    std::memcpy(s.scalars.data(), p, scalars * sizeof(double));
    return s;
  };

  TaskShare acc;
  size_t from = 0;
  std::vector<char> buf;
  if (first == 0 && !local.empty()) {
    for (const Tensor& t : local[0].tensors) acc.tensors.push_back(t.clone());
    acc.scalars.assign(scalars, 0.0);
    for (size_t k = 0; k < scalars; ++k) acc.scalars[k] += local[0].scalars[k];
    from = 1;
  } else if (me < holders) {
    buf.resize(message_bytes());
    dist::recv(buf.data(), buf.size(), me - 1);
    acc = unpack(buf);
  }
  for (size_t t = from; t < local.size(); ++t) {
    for (size_t i = 0; i < nt; ++i) {
      const Tensor& v = local[t].tensors[i];
      MF_CHECK(v.dtype() == like[i].dtype() && v.numel() == like[i].numel(), "meta-step: task ",
               first + static_cast<int64_t>(t), "'s ", names[i], " does not match the shape of ", names[i]);
      if (v.dtype() == tensor::DType::f32) {
        float* a = acc.tensors[i].data<float>();
        const float* g = v.data<float>();
        for (int64_t j = 0; j < v.numel(); ++j) a[j] += g[j];
      } else {
        // Integers (Reptile's step count) are the same in every task, and kept as they are.
        const int32_t* a = acc.tensors[i].data<int32_t>();
        const int32_t* g = v.data<int32_t>();
        for (int64_t j = 0; j < v.numel(); ++j)
          MF_CHECK(a[j] == g[j], "meta-step: the tasks of a meta-batch ended with different ", names[i], " (",
                   a[j], " and ", g[j], " at task ", first + static_cast<int64_t>(t), ")");
      }
    }
    for (size_t k = 0; k < scalars; ++k) acc.scalars[k] += local[t].scalars[k];
  }
  if (me < holders - 1) {
    pack(acc, buf);
    dist::send(buf.data(), buf.size(), me + 1);
  }
  if (me == holders - 1) {
    const float inv = 1.0f / static_cast<float>(total);
    for (Tensor& t : acc.tensors) {
      if (t.dtype() != tensor::DType::f32) continue;
      float* a = t.data<float>();
      for (int64_t j = 0; j < t.numel(); ++j) a[j] *= inv;
    }
  }
  if (procs > 1) {
    if (me == holders - 1) pack(acc, buf);
    buf.resize(message_bytes());
    dist::broadcast(buf.data(), buf.size(), holders - 1);
    if (me != holders - 1) acc = unpack(buf);
  }
  return acc;
}

namespace {

// The mean meta-gradient of a meta-batch of `total` tasks, of which `tasks` are this process's block
// starting at task `first`; the tasks' final carried states, averaged the same way, land in `state`.
StepResult run_tasks(const Algorithm& algo, const std::vector<Task>& tasks, int64_t first, int64_t total,
                     std::vector<Tensor>& mean, std::vector<Tensor>& state) {
  MF_CHECK(total > 0 && (!tasks.empty() || dist::active()), "meta-step: the task batch is empty");
  const int64_t b = static_cast<int64_t>(tasks.size());
  std::vector<std::vector<Tensor>> grads(tasks.size());
  std::vector<TaskOutput> outs(tasks.size());
  parallel_tasks(b, [&](int64_t i) {
    const nn::NoiseScope noise(core::derive_key(tasks[i].seed, {0x6e6f697365ULL}));  // Note [Training noise]
    outs[i] = algo.meta_gradient(tasks[i], grads[i]);
  });
  const size_t np = algo.parameters().size();
  std::vector<Tensor> like;
  std::vector<std::string> names = algo.parameter_names();
  for (const auto& p : algo.parameters()) like.push_back(p.data());
  for (const Tensor& s : algo.state()) like.push_back(s);
  for (const std::string& n : algo.state_names()) names.push_back(n);
  names.resize(like.size(), "a carried state tensor");
  std::vector<TaskShare> shares(tasks.size());
  for (size_t t = 0; t < tasks.size(); ++t) {
    shares[t].tensors = std::move(grads[t]);
    for (Tensor& s : outs[t].state) shares[t].tensors.push_back(std::move(s));
    shares[t].scalars = {outs[t].loss / static_cast<double>(total), outs[t].accuracy / static_cast<double>(total)};
  }
  TaskShare r = reduce_in_task_order(shares, first, total, like, names, 2);
  mean.assign(r.tensors.begin(), r.tensors.begin() + static_cast<std::ptrdiff_t>(np));
  state.assign(r.tensors.begin() + static_cast<std::ptrdiff_t>(np), r.tensors.end());
  return StepResult{r.scalars[0], r.scalars[1]};
}
}  // namespace

StepResult mean_meta_gradient(const Algorithm& algo, const std::vector<Task>& tasks,
                              std::vector<Tensor>& mean) {
  std::vector<Tensor> state;
  return run_tasks(algo, tasks, 0, static_cast<int64_t>(tasks.size()), mean, state);
}

StepResult meta_step(Algorithm& algo, const std::vector<Task>& tasks, optim::Optimizer& opt) {
  return meta_step(algo, tasks, 0, static_cast<int64_t>(tasks.size()), opt);
}

StepResult meta_step(Algorithm& algo, const std::vector<Task>& tasks, int64_t first, int64_t total,
                     optim::Optimizer& opt) {
  std::vector<Tensor> mean, state;
  StepResult r = run_tasks(algo, tasks, first, total, mean, state);
  opt.step(algo.parameters(), mean);
  // The task-order mean of the tasks' final states (Note [Reptile's inner optimiser state]).
  if (!algo.state().empty()) algo.set_state(state);
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
  // Over several processes each runs its block of episodes and the scores are gathered in episode order,
  // so the mean and interval are those of one process.
  const std::pair<int64_t, int64_t> mine = dist::block(episodes, dist::rank(), dist::size());
  const int64_t lo = mine.first, hi = mine.second;  // (clang 14 cannot capture structured bindings)
  std::vector<double> scores(static_cast<size_t>(hi - lo));
  std::atomic<bool> cancelled{false};
  parallel_tasks(hi - lo, [&](int64_t k) {
    if (cancelled.load(std::memory_order_relaxed) || (stop && stop())) {
      cancelled.store(true, std::memory_order_relaxed);
      return;
    }
    const int64_t i = lo + k;
    Task t = task_at(static_cast<uint64_t>(i));
    const Tensor outputs = algo.predict(t, steps);
    scores[static_cast<size_t>(k)] = Algorithm::score(outputs, t.query_y, t.regression());
    if (observe) observe(i, t, outputs);
  });
  const bool any_cancelled = dist::any(cancelled.load());
  EvalResult r = summarize(dist::allgather(scores));
  r.cancelled = any_cancelled;
  return r;
}

}  // namespace metafew::meta
