#pragma once
// parallel_for: a loop split over OpenMP threads only when asked to, without entering the OpenMP runtime
// otherwise (Note [No empty parallel regions]).
//
// Note [No empty parallel regions]
// libgomp makes a system call (futex) for every `#pragma omp parallel` it enters, even when an if() clause
// is false or the region is nested inside a running one and gets a team of one: measured on this project's
// machine, one futex per `parallel if (false)` at one thread and two per call inside an active region. The
// engine's kernels run thousands of times per meta-iteration, mostly on one thread (inside the task-parallel
// region of the meta-batch), and a 64->64 convolution at 3x3 pixels takes ~27 us, so kernels decide first
// and open a region only when they will split.
#include <omp.h>

#include <cstdint>

namespace metafew::tensor {

// Whether `work` units of a kernel are worth splitting over threads: at least `min_work` of them, outside a
// parallel region (inside one, tasks already use every thread), with more than one thread to split over.
inline bool worth_splitting(int64_t work, int64_t min_work) {
  return work >= min_work && !omp_in_parallel() && omp_get_max_threads() > 1;
}

// Calls fn(i) for i in [0, n): statically split over the threads of a new parallel region when `parallel`
// (and n > 1), else in order on the calling thread.
template <class Fn>
inline void parallel_for(int64_t n, bool parallel, Fn&& fn) {
  if (!parallel || n < 2) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) fn(i);
}

// Calls fn(threads, thread) once on every thread of a new parallel region when `parallel`, else fn(1, 0) on
// the calling thread; fn splits the work itself from the two numbers.
template <class Fn>
inline void parallel_team(bool parallel, Fn&& fn) {
  if (!parallel) {
    fn(int64_t{1}, int64_t{0});
    return;
  }
#pragma omp parallel
  fn(static_cast<int64_t>(omp_get_num_threads()), static_cast<int64_t>(omp_get_thread_num()));
}

}  // namespace metafew::tensor
