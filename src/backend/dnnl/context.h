#pragma once
// The oneDNN CPU engine and per-thread streams shared by every oneDNN-backed kernel.
//
// Threading model (ARCHITECTURE.md, decision 3): oneDNN objects are created and executed on the thread that
// uses them. The engine is one process-wide object (engines are thread-safe); each thread gets its own
// stream.
#include <omp.h>

#include <oneapi/dnnl/dnnl.hpp>
#include <string>

namespace metafew::backend::dnnl_backend {

// The process-wide CPU engine, created on first use (thread-safe initialisation).
const dnnl::engine& cpu_engine();

// This thread's in-order stream on cpu_engine(), created on first use by the calling thread.
dnnl::stream& thread_stream();

// The version of the oneDNN library linked at run time, "major.minor.patch", e.g. "2.6.3".
std::string onednn_version();

// The instruction set oneDNN dispatches its JIT kernels to on this machine, e.g. "avx512_core_bf16".
std::string onednn_isa();

// Sets the calling thread's nthreads ICV to 1 while alive when `enable`: oneDNN then creates or runs a
// primitive for one thread, on the calling thread. Inside a parallel region this only affects the calling
// thread.
class OneThreadScope {
 public:
  explicit OneThreadScope(bool enable) : enable_(enable), saved_(enable ? omp_get_max_threads() : 1) {
    if (enable_) omp_set_num_threads(1);
  }
  ~OneThreadScope() {
    if (enable_) omp_set_num_threads(saved_);
  }
  OneThreadScope(const OneThreadScope&) = delete;
  OneThreadScope& operator=(const OneThreadScope&) = delete;

 private:
  bool enable_;
  int saved_;
};

}  // namespace metafew::backend::dnnl_backend
