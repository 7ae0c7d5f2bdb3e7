#pragma once
// Bare oneDNN convolutions: a primitive with format_tag::any executing on memories already in the layouts it
// chose, with nothing else in the timed call. The ceiling that benchmarks compare metafew's kernels with.
#include <functional>
#include <string>

#include "backend/dnnl/conv.h"

namespace metafew::backend::dnnl_backend {

struct BareConv {
  std::function<void()> run;  // executes the primitive once and waits for it (on the calling thread's stream)
  std::string description;    // implementation and layouts, e.g. "brg:avx512_core src=nChw16c ..."
};

// Builds the primitive of `kernel` for `s` and fills its inputs from the plain (NCHW / OIHW) buffers x, w, gy
// (those the kernel reads; the others may be null). Call `run` on the thread that built it.
BareConv make_bare_conv(ConvKernel kernel, const tensor::ConvShape& s, const float* x, const float* w,
                        const float* gy);

// GFLOP/s (2 * macs per call) of `threads` threads each running its own bare primitive of shape `s` at once,
// the way one-task-per-thread meta-batches run; median over about `seconds`.
double bare_conv_gflops(const tensor::ConvShape& s, ConvKernel kernel, int threads, double seconds = 0.3);

}  // namespace metafew::backend::dnnl_backend
