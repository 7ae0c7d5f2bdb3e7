#include "backend/dnnl/bare.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <oneapi/dnnl/dnnl.hpp>
#include <unordered_map>
#include <vector>

#include "backend/dnnl/context.h"
#include "core/error.h"

namespace metafew::backend::dnnl_backend {

namespace {

std::string layout_name(const dnnl::memory::desc& d) {
  using tag = dnnl::memory::format_tag;
  for (auto [t, n] : {std::pair{tag::nchw, "nchw"}, {tag::nChw16c, "nChw16c"}, {tag::nhwc, "nhwc"},
                      {tag::oihw, "oihw"}, {tag::OIhw16i16o, "OIhw16i16o"}, {tag::OIhw16o16i, "OIhw16o16i"},
                      {tag::Ohwi16o, "Ohwi16o"}}) {
    if (dnnl::memory::desc(d.dims(), dnnl::memory::data_type::f32, t) == d) return n;
  }
  return "blocked";
}

}  // namespace

BareConv make_bare_conv(ConvKernel kernel, const tensor::ConvShape& s, const float* x, const float* w,
                        const float* gy) {
  using namespace dnnl;
  using tag = memory::format_tag;
  using dt = memory::data_type;
  MF_CHECK(s.valid(), "bare conv: invalid shape ", s.to_string());
  // Inside a parallel region the primitive runs on this thread alone, so it must be made for one thread too:
  // a kernel laid out for the region's size would wait at its own barriers for threads that never come (some
  // backward-data kernels did, at 2 threads).
  const OneThreadScope one_thread(omp_in_parallel());
  const engine& eng = cpu_engine();
  const memory::dims xd{s.n, s.ic, s.ih, s.iw}, wd{s.oc, s.ic, s.kh, s.kw}, yd{s.n, s.oc, s.oh(), s.ow()},
      strides{s.sh, s.sw}, pad{s.ph, s.pw};
  const memory::desc xq(xd, dt::f32, tag::any), wq(wd, dt::f32, tag::any), yq(yd, dt::f32, tag::any);
  // The algorithm the library's own call of this kernel uses (Note [Winograd convolution] in conv.cpp).
  const algorithm algo = conv2d_winograd(s, kernel) ? algorithm::convolution_winograd : algorithm::convolution_direct;
  const convolution_forward::primitive_desc fpd({prop_kind::forward_training, algo, xq, wq, yq, strides, pad, pad},
                                                eng);

  // A memory in the layout `want`, holding the plain buffer `data` (zeros when null).
  auto filled = [&eng](const memory::desc& want, const memory::dims& dims, tag plain_tag, const float* data) {
    memory m(want, eng);
    if (data) {
      memory plain({dims, dt::f32, plain_tag}, eng, const_cast<float*>(data));
      reorder(plain, m).execute(thread_stream(), plain, m);
      thread_stream().wait();
    }
    return m;
  };

  primitive prim;
  std::unordered_map<int, memory> args;
  std::string impl;
  switch (kernel) {
    case ConvKernel::forward:
      prim = convolution_forward(fpd);
      args = {{DNNL_ARG_SRC, filled(fpd.src_desc(), xd, tag::nchw, x)},
              {DNNL_ARG_WEIGHTS, filled(fpd.weights_desc(), wd, tag::oihw, w)},
              {DNNL_ARG_DST, memory(fpd.dst_desc(), eng)}};
      impl = std::string(fpd.impl_info_str()) + " src=" + layout_name(fpd.src_desc()) +
             " wei=" + layout_name(fpd.weights_desc()) + " dst=" + layout_name(fpd.dst_desc());
      break;
    case ConvKernel::backward_data: {
      const convolution_backward_data::primitive_desc pd({algo, xq, wq, yq, strides, pad, pad},
                                                         eng, fpd);
      prim = convolution_backward_data(pd);
      args = {{DNNL_ARG_DIFF_DST, filled(pd.diff_dst_desc(), yd, tag::nchw, gy)},
              {DNNL_ARG_WEIGHTS, filled(pd.weights_desc(), wd, tag::oihw, w)},
              {DNNL_ARG_DIFF_SRC, memory(pd.diff_src_desc(), eng)}};
      impl = std::string(pd.impl_info_str()) + " diff_dst=" + layout_name(pd.diff_dst_desc()) +
             " wei=" + layout_name(pd.weights_desc()) + " diff_src=" + layout_name(pd.diff_src_desc());
      break;
    }
    case ConvKernel::backward_weights: {
      const convolution_backward_weights::primitive_desc pd(
          {algo, xq, wq, yq, strides, pad, pad}, eng, fpd);
      prim = convolution_backward_weights(pd);
      args = {{DNNL_ARG_SRC, filled(pd.src_desc(), xd, tag::nchw, x)},
              {DNNL_ARG_DIFF_DST, filled(pd.diff_dst_desc(), yd, tag::nchw, gy)},
              {DNNL_ARG_DIFF_WEIGHTS, memory(pd.diff_weights_desc(), eng)}};
      impl = std::string(pd.impl_info_str()) + " src=" + layout_name(pd.src_desc()) +
             " diff_dst=" + layout_name(pd.diff_dst_desc()) + " diff_wei=" + layout_name(pd.diff_weights_desc());
      break;
    }
  }
  return {[prim, args]() {
            prim.execute(thread_stream(), args);
            thread_stream().wait();
          },
          impl};
}

double bare_conv_gflops(const tensor::ConvShape& s, ConvKernel kernel, int threads, double seconds) {
  MF_CHECK(threads >= 1, "bare conv: threads must be >= 1, got ", threads);
  const double flop = 2.0 * static_cast<double>(s.macs());
  std::vector<double> times;
  // Each thread builds and runs its own primitive (inside the region oneDNN runs single-threaded).
#pragma omp parallel num_threads(threads)
  {
    BareConv conv = make_bare_conv(kernel, s, nullptr, nullptr, nullptr);
    conv.run();  // warm-up
    // Calibrate on thread 0, then every thread runs the same number of rounds.
    static int rounds;
#pragma omp single
    {
      const auto t0 = std::chrono::steady_clock::now();
      conv.run();
      const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      rounds = std::max(3, static_cast<int>(seconds / 5 / std::max(dt, 1e-6)));
    }
    for (int rep = 0; rep < 5; ++rep) {
#pragma omp barrier
      const auto t0 = std::chrono::steady_clock::now();
      for (int r = 0; r < rounds; ++r) conv.run();
#pragma omp barrier
#pragma omp master
      times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / rounds);
    }
  }
  std::sort(times.begin(), times.end());
  return flop * threads / times[times.size() / 2] / 1e9;
}

}  // namespace metafew::backend::dnnl_backend
