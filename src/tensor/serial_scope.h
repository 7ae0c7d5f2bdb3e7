#pragma once
// Note [Deterministic oneDNN]: oneDNN splits some reductions (backward weights over the batch, sgemm over K)
// across its OpenMP threads, so its results depend on the thread count. metafew promises the same result at
// any thread count, so every oneDNN primitive runs single-threaded: inside a parallel region that is
// automatic (one task per thread, ARCHITECTURE.md decision 3); outside one, this scope lowers the calling
// thread's OpenMP thread count to 1 for the call (matmul). Convolutions see to it themselves and split a
// large call outside a region into pieces chosen from the shape alone, one primitive per piece on the
// threads (Note [Conv threads] in backend/dnnl/conv.cpp). The rest of the parallelism outside task-parallel
// regions comes from metafew's own element-wise kernels, whose results do not depend on the thread count.
#include <omp.h>

namespace metafew::tensor {

class SerialScope {
 public:
  SerialScope() : previous_(omp_get_max_threads()) {
    if (previous_ > 1) omp_set_num_threads(1);
  }
  ~SerialScope() {
    if (previous_ > 1) omp_set_num_threads(previous_);
  }
  SerialScope(const SerialScope&) = delete;
  SerialScope& operator=(const SerialScope&) = delete;

 private:
  int previous_;
};

}  // namespace metafew::tensor
