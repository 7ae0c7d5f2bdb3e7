// Convolutions split over threads (Note [Conv threads] in src/backend/dnnl/conv.cpp) and Winograd's kernels
// (Note [Winograd convolution]): the same numbers at any thread count, the split backward weights equal to
// one unsplit oneDNN primitive, and Winograd within its own error bound of the f64 reference.
#include <oneapi/dnnl/dnnl.hpp>

#include "backend/dnnl/bare.h"
#include "backend/dnnl/context.h"
#include "support/conv_cases.h"

using namespace metafew::testing::conv_cases;
using metafew::tensor::ConvAlgorithm;

namespace {

struct Results {
  std::vector<float> y, gx, gw, gb;
};

// The three kernels of `s` on fixed inputs with `threads` OpenMP threads, called outside any parallel region
// (where the backend splits the work), with activations in NCHW or, with `blocked`, in nChw16c.
Results run_kernels(const ConvShape& s, int threads, bool blocked, bool bias) {
  std::mt19937 rng(99u);
  const std::vector<float> x = random_floats(rng, s.x_numel()), w = random_floats(rng, s.w_numel()),
                           b = random_floats(rng, s.oc), gy = random_floats(rng, s.y_numel());
  const int before = omp_get_max_threads();
  omp_set_num_threads(threads);
  Results r;
  r.y.resize(s.y_numel()), r.gx.resize(s.x_numel()), r.gw.resize(s.w_numel()), r.gb.resize(s.oc);
  using dnnl_backend::nchw16c_arg;
  const unsigned fwd = blocked ? nchw16c_arg(0) | nchw16c_arg(3) : 0, bwd = blocked ? nchw16c_arg(0) | nchw16c_arg(2) : 0,
                 wgt = blocked ? nchw16c_arg(0) | nchw16c_arg(1) : 0;
  // (The inputs are random either way: their layout only says how the kernels read them.)
  dnnl_backend::conv2d_forward(x.data(), w.data(), bias ? b.data() : nullptr, r.y.data(), s, ConvLayout::automatic, 0,
                               fwd);
  dnnl_backend::conv2d_backward_data(gy.data(), w.data(), r.gx.data(), s, ConvLayout::automatic, 0, bwd);
  dnnl_backend::conv2d_backward_weights(x.data(), gy.data(), r.gw.data(), bias ? r.gb.data() : nullptr, s,
                                        ConvLayout::automatic, wgt);
  omp_set_num_threads(before);
  return r;
}

ConvShape with_algorithm(ConvShape s, ConvAlgorithm a) {
  s.algorithm = a;
  return s;
}

// The weight and bias gradients of one oneDNN backward-weights primitive over the whole shape (direct
// algorithm, the layouts oneDNN picks), on one thread: what the backend computed before it split the call.
std::pair<std::vector<float>, std::vector<float>> unsplit_weight_gradient(const ConvShape& s, const std::vector<float>& x,
                                                                          const std::vector<float>& gy) {
  using namespace dnnl;
  using tag = memory::format_tag;
  using dt = memory::data_type;
  const int before = omp_get_max_threads();
  omp_set_num_threads(1);
  const engine& eng = metafew::backend::dnnl_backend::cpu_engine();
  stream& str = metafew::backend::dnnl_backend::thread_stream();
  const memory::dims xd{s.n, s.ic, s.ih, s.iw}, wd{s.oc, s.ic, s.kh, s.kw}, yd{s.n, s.oc, s.oh(), s.ow()},
      st{s.sh, s.sw}, pad{s.ph, s.pw};
  const memory::desc xq(xd, dt::f32, tag::any), wq(wd, dt::f32, tag::any), yq(yd, dt::f32, tag::any),
      bq({s.oc}, dt::f32, tag::x);
  const convolution_forward::primitive_desc hint(
      {prop_kind::forward_training, algorithm::convolution_direct, xq, wq, bq, yq, st, pad, pad}, eng);
  const convolution_backward_weights::primitive_desc pd({algorithm::convolution_direct, xq, wq, bq, yq, st, pad, pad},
                                                        eng, hint);
  std::vector<float> gw(s.w_numel()), gb(s.oc);
  memory xu({xd, dt::f32, tag::nchw}, eng, const_cast<float*>(x.data())), xp(pd.src_desc(), eng);
  memory yu({yd, dt::f32, tag::nchw}, eng, const_cast<float*>(gy.data())), yp(pd.diff_dst_desc(), eng);
  memory wu({wd, dt::f32, tag::oihw}, eng, gw.data()), wp(pd.diff_weights_desc(), eng);
  memory bu({{s.oc}, dt::f32, tag::x}, eng, gb.data());
  reorder(xu, xp).execute(str, xu, xp);
  reorder(yu, yp).execute(str, yu, yp);
  convolution_backward_weights(pd).execute(
      str, {{DNNL_ARG_SRC, xp}, {DNNL_ARG_DIFF_DST, yp}, {DNNL_ARG_DIFF_WEIGHTS, wp}, {DNNL_ARG_DIFF_BIAS, bu}});
  reorder(wp, wu).execute(str, wp, wu);
  str.wait();
  omp_set_num_threads(before);
  return {gw, gb};
}

}  // namespace

TEST_CASE("oneDNN conv: split calls give the same numbers at 1, 2 and 3 threads") {
  // Shapes large enough to be split: batch chunks (forward, backward data), output-channel groups (direct
  // backward weights) and batch chunks with partial sums (Winograd backward weights); NCHW and nChw16c
  // activations, with and without bias. Winograd splits only `tiled`: the others have too few 4x4 tiles.
  const ConvShape big = make_shape(40, 64, 12, 12, 96, 3, 1, 1), wide = make_shape(20, 160, 6, 6, 320, 3, 1, 1),
                  tiled = make_shape(64, 32, 16, 16, 48, 3, 1, 1);
  for (const ConvShape& base : {big, wide, tiled}) {
    for (ConvAlgorithm a : {ConvAlgorithm::direct, ConvAlgorithm::winograd}) {
      const ConvShape s = with_algorithm(base, a);
      REQUIRE(s.macs() >= (int64_t{1} << 26));  // past the split threshold of backward weights
      if (a == ConvAlgorithm::winograd && base == tiled)
        for (ConvKernel k : {ConvKernel::forward, ConvKernel::backward_data, ConvKernel::backward_weights})
          REQUIRE(dnnl_backend::conv2d_winograd_chunks(s, k) == 4);
      for (bool blocked : {false, true}) {
        const bool bias = !blocked;
        CAPTURE(s.to_string());
        CAPTURE(blocked);
        const Results one = run_kernels(s, 1, blocked, bias);
        for (int threads : {2, 3}) {
          CAPTURE(threads);
          const Results more = run_kernels(s, threads, blocked, bias);
          CHECK(more.y == one.y);
          CHECK(more.gx == one.gx);
          CHECK(more.gw == one.gw);
          CHECK(more.gb == one.gb);
        }
      }
    }
  }
  dnnl_backend::release_thread_cache();
}

TEST_CASE("oneDNN conv: Winograd calls split only into chunks of enough tiles") {
  // Note [Winograd convolution]: ResNet-12's last block (4x4 pixels: one tile an image) runs whole up to 511
  // images; its first (32x32: 64 tiles) in chunks of 16 images, at most 4.
  const ConvShape last = with_algorithm(make_shape(80, 640, 4, 4, 640, 3, 1, 1), ConvAlgorithm::winograd),
                  first = with_algorithm(make_shape(80, 64, 32, 32, 64, 3, 1, 1), ConvAlgorithm::winograd),
                  third = with_algorithm(make_shape(80, 320, 8, 8, 320, 3, 1, 1), ConvAlgorithm::winograd);
  for (ConvKernel k : {ConvKernel::forward, ConvKernel::backward_data, ConvKernel::backward_weights}) {
    CHECK(dnnl_backend::conv2d_winograd_chunks(last, k) == 1);
    CHECK(dnnl_backend::conv2d_winograd_chunks(third, k) == 1);  // 4 tiles an image: chunks of 64 images
    CHECK(dnnl_backend::conv2d_winograd_chunks(first, k) == 4);
  }
}

TEST_CASE("oneDNN conv: split backward weights equal the unsplit primitive bit for bit") {
  // Note [Conv threads]: the direct kernels sum each weight's gradient in the same order in 16-channel groups
  // as over all output channels, so splitting changed no number of the conv-4 models.
  std::mt19937 rng(5150u);
  for (const ConvShape& s : {make_shape(75, 64, 14, 14, 64, 3, 1, 1), make_shape(40, 64, 12, 12, 96, 3, 1, 1),
                             make_shape(80, 640, 4, 4, 640, 3, 1, 1)}) {
    CAPTURE(s.to_string());
    REQUIRE(s.macs() >= (int64_t{1} << 26));
    const std::vector<float> x = random_floats(rng, s.x_numel()), gy = random_floats(rng, s.y_numel());
    std::vector<float> gw(s.w_numel()), gb(s.oc);
    dnnl_backend::conv2d_backward_weights(x.data(), gy.data(), gw.data(), gb.data(), s);
    const auto [want_w, want_b] = unsplit_weight_gradient(s, x, gy);
    CHECK(gw == want_w);
    // The bias gradient too, except at 640 channels on 4x4 pixels, where oneDNN's unsplit kernel sums it in
    // another order (no backbone there has a bias).
    if (s.oc <= 96) CHECK(gb == want_b);
  }
  dnnl_backend::release_thread_cache();
}

// Note [Winograd tolerance]
// Winograd's F(4x4, 3x3) computes a 6x6 input tile's products in a transformed domain: the input tile, the
// weights and the products are multiplied by the transform matrices (entries up to 5.25 and as small as
// 1/4), so a result's rounding error is no longer bounded by u times the sum of |products| of the direct
// sum (Note [Conv fuzz tolerance]) but by that times a factor set by the matrices' norms. We accept
//     |got - ref| <= 256 * u * sum_k |t_k|
// i.e. 16 times the direct kernels' tolerance. Observed with oneDNN 2.6.3 on the shapes below: at most 0.11
// of it (so about 28 u * sum|t_k| at worst, against 4.4 u for the direct kernels); a dropped product is
// still caught for any sum of fewer than 1 / (256 u) ~ 65,000 products.
TEST_CASE("oneDNN conv: Winograd kernels match the f64 reference within their error bound") {
  std::mt19937 rng(31337u);
  double worst = 0;
  for (const ConvShape& base : {make_shape(4, 32, 12, 12, 32, 3, 1, 1), make_shape(3, 16, 9, 7, 48, 3, 1, 1),
                                make_shape(2, 64, 4, 4, 64, 3, 1, 1), make_shape(36, 32, 8, 8, 16, 3, 1, 1)}) {
    const ConvShape s = with_algorithm(base, ConvAlgorithm::winograd);
    CAPTURE(s.to_string());
    REQUIRE(dnnl_backend::conv2d_winograd(s, ConvKernel::forward));
    REQUIRE(dnnl_backend::conv2d_winograd(s, ConvKernel::backward_data));
    REQUIRE(dnnl_backend::conv2d_winograd(s, ConvKernel::backward_weights));
    const Case c(s, rng);
    std::vector<float> y(s.y_numel()), gx(s.x_numel()), gw(s.w_numel()), gb(s.oc);
    dnnl_backend::conv2d_forward(c.x.data(), c.w.data(), c.b.data(), y.data(), s);
    dnnl_backend::conv2d_backward_data(c.gy.data(), c.w.data(), gx.data(), s);
    dnnl_backend::conv2d_backward_weights(c.x.data(), c.gy.data(), gw.data(), gb.data(), s);
    const double factor = 16.0;  // Note [Winograd tolerance], relative to compare()'s 16 u
    auto check = [&](const std::vector<float>& got, const std::vector<double>& want, const std::vector<double>& abs) {
      std::vector<double> wide(abs.size());
      for (size_t i = 0; i < abs.size(); ++i) wide[i] = factor * abs[i];
      const Comparison r = compare(got, want, wide);
      CHECK_MESSAGE(r.bad == 0, describe(r));
      worst = std::max(worst, r.worst_ratio);
    };
    check(y, c.y_bias, c.y_bias_abs);
    check(gx, c.gx, c.gx_abs);
    check(gw, c.gw, c.gw_abs);
    // And the bound still sees a dropped product: one term of one output left out of the reference.
    std::vector<double> dropped = c.y;
    const size_t at = static_cast<size_t>(s.y_numel() / 2);
    // The output at `at` sums products over ic and the 3x3 taps; remove the largest one.
    const int64_t plane = s.oh() * s.ow(), n = static_cast<int64_t>(at) / (s.oc * plane);
    const int64_t o = (static_cast<int64_t>(at) / plane) % s.oc, i = (static_cast<int64_t>(at) % plane) / s.ow(),
                  j = static_cast<int64_t>(at) % s.ow();
    double largest = 0;
    for (int64_t ci = 0; ci < s.ic; ++ci)
      for (int64_t u = 0; u < 3; ++u)
        for (int64_t v = 0; v < 3; ++v) {
          const int64_t yy = i + u - 1, xx = j + v - 1;
          if (yy < 0 || yy >= s.ih || xx < 0 || xx >= s.iw) continue;
          const double t = static_cast<double>(c.x[static_cast<size_t>(((n * s.ic + ci) * s.ih + yy) * s.iw + xx)]) *
                           c.w[static_cast<size_t>(((o * s.ic + ci) * 3 + u) * 3 + v)];
          if (std::fabs(t) > std::fabs(largest)) largest = t;
        }
    std::vector<float> y_nobias(s.y_numel());
    dnnl_backend::conv2d_forward(c.x.data(), c.w.data(), nullptr, y_nobias.data(), s);
    dropped[at] -= largest;
    std::vector<double> wide(c.y_abs.size());
    for (size_t k = 0; k < wide.size(); ++k) wide[k] = factor * c.y_abs[k];
    CHECK(compare(y_nobias, dropped, wide).bad >= 1);
    dnnl_backend::release_thread_cache();
  }
  MESSAGE("largest |error| / Winograd tolerance: ", worst);
}

TEST_CASE("bare conv: every kernel measures at 2 threads") {
  // metafew bench's ceilings (Note [Bare conv of the model's layers] in src/cli/bench.cpp) run one bare
  // primitive per thread inside a parallel region. ResNet-12's first layer (3 input channels) once hung there
  // in backward data: its primitive was made for the region's 2 threads and waited for a second one.
  const ConvShape first = with_algorithm(make_shape(64, 3, 32, 32, 64, 3, 1, 1), ConvAlgorithm::winograd);
  for (ConvKernel k : {ConvKernel::forward, ConvKernel::backward_data, ConvKernel::backward_weights}) {
    CAPTURE(static_cast<int>(k));
    CHECK(dnnl_backend::bare_conv_gflops(first, k, 2, 0.01) > 0);
  }
}
