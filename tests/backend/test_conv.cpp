// The oneDNN convolution kernels fuzzed against the naive reference, and the reference kernels checked
// against each other (adjointness) and against a hand-computed case.
#include <doctest/doctest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <exception>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "backend/dnnl/conv.h"
#include "core/error.h"
#include "tensor/blocked_layout.h"
#include "tensor/conv_ref.h"
#include "tensor/conv_single_channel.h"
#include "autograd/engine.h"
#include "autograd/variable.h"
#include "ops/ops.h"
#include "tensor/tensor.h"

namespace {

using metafew::tensor::ConvShape;
namespace dnnl_backend = metafew::backend::dnnl_backend;
using dnnl_backend::ConvKernel;
using dnnl_backend::ConvLayout;

// Note [Conv fuzz tolerance]
// Every output of the three kernels is a sum S = sum_k t_k of K products t_k = a_k * b_k of f32 inputs (plus
// a bias). The reference computes S from the same f32 inputs in double: products are exact and the sum's own
// error is below K * 2^-53 * sum|t_k|, negligible here. oneDNN sums in f32 in an order of its choosing
// (register blocks over channels and kernel taps, partial sums over images and threads, FMA or not). For any
// order the error is, to first order, the sum over the additions of delta * (partial sum there), with
// |delta| <= u = 2^-24, plus the final rounding u|S|. The worst case is K * u * sum|t_k|, far too loose to
// see a dropped term when K is large. Our inputs are independent and uniform on [-1, 1], so partial sums of
// m terms grow like sqrt(m) while sum|t_k| grows like m; modelling the deltas as independent (Higham & Mary,
// "A new approach to probabilistic rounding error analysis", 2019) puts the RMS error of plain recursive
// summation at about 0.55 * u * sum|t_k| for these inputs, and blocked or tree orders only lower it.
// We accept
//     |got - ref| <= 16 * u * sum_k |t_k|        (per element; sum_k |t_k| from the reference on |a|, |b|)
// which is ~30 RMS away from a false alarm, yet still flags a single dropped or misplaced product for any
// K < 1 / (16 u) ~ 10^6. An output that is a sum of no products (pure padding) must come out exactly 0 (or
// the bias). Observed over the fuzz shapes with oneDNN 2.6.3: RMS 0.2-0.4 u, worst 4.4 u (times sum|t_k|),
// i.e. at most 0.28 of the tolerance; removing one product from one output of the reference fails every
// shape.
constexpr double kUnitRoundoff = 0x1p-24;
constexpr double kTolFactor = 16.0;

// Keep the fuzz within the time budget: the reference is scalar double code run six times per shape.
constexpr int64_t kMaxFuzzMacs = 1'500'000;

std::vector<float> random_floats(std::mt19937& rng, int64_t n) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (float& f : v) f = dist(rng);
  return v;
}

std::vector<double> to_double(const std::vector<float>& v) {
  return {v.begin(), v.end()};
}

std::vector<double> abs_of(const std::vector<double>& v) {
  std::vector<double> r(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) r[i] = std::fabs(v[i]);
  return r;
}

int64_t pick(std::mt19937& rng, std::initializer_list<int64_t> values) {
  std::uniform_int_distribution<std::size_t> d(0, values.size() - 1);
  return *(values.begin() + d(rng));
}

int64_t uniform(std::mt19937& rng, int64_t lo, int64_t hi) {
  return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
}

bool coin(std::mt19937& rng, double p) {
  return std::bernoulli_distribution(p)(rng);
}

ConvShape make_shape(int64_t n, int64_t ic, int64_t ih, int64_t iw, int64_t oc, int64_t k, int64_t stride,
                     int64_t pad) {
  ConvShape s;
  s.n = n, s.ic = ic, s.ih = ih, s.iw = iw, s.oc = oc, s.kh = k, s.kw = k, s.sh = stride, s.sw = stride;
  s.ph = pad, s.pw = pad;
  return s;
}

ConvShape random_shape(std::mt19937& rng) {
  for (;;) {
    ConvShape s;
    s.n = pick(rng, {1, 1, 2, 3, 5});
    s.ic = pick(rng, {1, 3, 4, 16, 64, uniform(rng, 1, 20)});
    s.oc = pick(rng, {1, 3, 4, 16, 64, uniform(rng, 1, 20)});
    s.kh = pick(rng, {1, 3, 3});
    s.kw = coin(rng, 0.85) ? s.kh : pick(rng, {1, 3});
    s.sh = pick(rng, {1, 2});
    s.sw = coin(rng, 0.85) ? s.sh : pick(rng, {1, 2});
    s.ph = pick(rng, {0, 1});
    s.pw = coin(rng, 0.85) ? s.ph : pick(rng, {0, 1});
    s.ih = uniform(rng, 1, 30);
    s.iw = coin(rng, 0.5) ? s.ih : uniform(rng, 1, 30);
    if (s.valid() && s.macs() <= kMaxFuzzMacs) return s;
  }
}

// Fixed cases first (edges and the conv-4 Omniglot layers at batch 1), then random ones from a fixed seed.
std::vector<ConvShape> fuzz_shapes(int count) {
  std::vector<ConvShape> shapes = {
      make_shape(1, 1, 1, 1, 1, 1, 1, 0),     make_shape(1, 1, 1, 1, 1, 1, 1, 1),
      make_shape(1, 1, 1, 1, 1, 3, 1, 1),     make_shape(1, 1, 1, 1, 1, 3, 2, 1),
      make_shape(2, 3, 2, 2, 3, 3, 2, 1),     make_shape(1, 1, 28, 28, 64, 3, 1, 1),
      make_shape(1, 64, 14, 14, 64, 3, 1, 1), make_shape(1, 64, 7, 7, 64, 3, 1, 1),
      make_shape(2, 64, 3, 3, 64, 3, 1, 1),   make_shape(1, 64, 1, 1, 64, 3, 1, 1),
      make_shape(5, 16, 30, 30, 1, 1, 2, 0),  make_shape(3, 17, 9, 9, 33, 3, 2, 0),
  };
  std::mt19937 rng(20240611u);
  while (static_cast<int>(shapes.size()) < count) shapes.push_back(random_shape(rng));
  return shapes;
}

struct Comparison {
  int64_t bad = 0;  // elements outside the tolerance (NaN counts as outside)
  int64_t first_bad = -1;
  double got = 0, want = 0, tol = 0;
  double worst_ratio = 0;  // max over elements of |got - want| / tolerance
};

Comparison compare(const std::vector<float>& got, const std::vector<double>& want,
                   const std::vector<double>& abs_sum) {
  Comparison c;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    const double tol = kTolFactor * kUnitRoundoff * abs_sum[i];
    if (!(err <= tol)) {
      if (c.bad++ == 0) c.first_bad = static_cast<int64_t>(i), c.got = got[i], c.want = want[i], c.tol = tol;
    }
    if (tol > 0) c.worst_ratio = std::max(c.worst_ratio, err / tol);
  }
  return c;
}

std::string describe(const Comparison& c) {
  return metafew::detail::concat(c.bad, " elements outside tolerance; first at ", c.first_bad, ": got ",
                                 c.got, ", want ", c.want, ", tol ", c.tol);
}

// The f32 inputs of one shape and the double reference results and bounds computed from them.
struct Case {
  ConvShape s;
  std::vector<float> x, w, b, gy;
  std::vector<double> y, y_bias, gx, gw, gb;                      // references
  std::vector<double> y_abs, y_bias_abs, gx_abs, gw_abs, gb_abs;  // sum of |products| per output

  Case(const ConvShape& shape, std::mt19937& rng) : s(shape) {
    x = random_floats(rng, s.x_numel());
    w = random_floats(rng, s.w_numel());
    b = random_floats(rng, s.oc);
    gy = random_floats(rng, s.y_numel());
    compute();
  }
  Case(const ConvShape& shape, std::vector<float> x_, std::vector<float> w_, std::vector<float> b_,
       std::vector<float> gy_)
      : s(shape), x(std::move(x_)), w(std::move(w_)), b(std::move(b_)), gy(std::move(gy_)) {
    compute();
  }

 private:
  void compute() {
    using namespace metafew::tensor;
    const auto xd = to_double(x), wd = to_double(w), bd = to_double(b), gyd = to_double(gy);
    const auto xa = abs_of(xd), wa = abs_of(wd), ba = abs_of(bd), gya = abs_of(gyd);
    y.resize(s.y_numel()), y_abs.resize(s.y_numel());
    gx.resize(s.x_numel()), gx_abs.resize(s.x_numel());
    gw.resize(s.w_numel()), gw_abs.resize(s.w_numel());
    conv2d_ref(xd.data(), wd.data(), y.data(), s);
    conv2d_ref(xa.data(), wa.data(), y_abs.data(), s);
    conv2d_grad_input_ref(gyd.data(), wd.data(), gx.data(), s);
    conv2d_grad_input_ref(gya.data(), wa.data(), gx_abs.data(), s);
    conv2d_grad_weight_ref(xd.data(), gyd.data(), gw.data(), s);
    conv2d_grad_weight_ref(xa.data(), gya.data(), gw_abs.data(), s);
    y_bias = y, y_bias_abs = y_abs;
    const int64_t plane = s.oh() * s.ow();
    gb.assign(s.oc, 0.0), gb_abs.assign(s.oc, 0.0);
    for (int64_t n = 0; n < s.n; ++n) {
      for (int64_t o = 0; o < s.oc; ++o) {
        for (int64_t k = 0; k < plane; ++k) {
          const int64_t i = (n * s.oc + o) * plane + k;
          y_bias[i] += bd[o], y_bias_abs[i] += ba[o];
          gb[o] += gyd[i], gb_abs[o] += gya[i];
        }
      }
    }
  }
};

// Runs the five oneDNN kernel variants on one case and checks each; returns the worst error/tolerance ratio.
double check_onednn(const Case& c, ConvLayout layout) {
  const ConvShape& s = c.s;
  std::vector<float> y(s.y_numel()), gx(s.x_numel()), gw(s.w_numel()), gb(s.oc);
  double worst = 0;
  auto expect = [&](const char* what, const std::vector<float>& got, const std::vector<double>& want,
                    const std::vector<double>& abs_sum) {
    const Comparison r = compare(got, want, abs_sum);
    CHECK_MESSAGE(r.bad == 0, metafew::detail::concat(what, " [", dnnl_backend::to_string(layout), "] ",
                                                      s.to_string(), ": ", describe(r)));
    worst = std::max(worst, r.worst_ratio);
  };
  // The direct layout has kernels for some shapes and kernels only (conv.h).
  auto has = [&](ConvKernel kernel) {
    return layout != ConvLayout::direct || dnnl_backend::conv2d_direct_supported(s, kernel);
  };
  if (has(ConvKernel::forward)) {
    dnnl_backend::conv2d_forward(c.x.data(), c.w.data(), nullptr, y.data(), s, layout);
    expect("forward", y, c.y, c.y_abs);
    dnnl_backend::conv2d_forward(c.x.data(), c.w.data(), c.b.data(), y.data(), s, layout);
    expect("forward+bias", y, c.y_bias, c.y_bias_abs);
  }
  if (has(ConvKernel::backward_data)) {
    dnnl_backend::conv2d_backward_data(c.gy.data(), c.w.data(), gx.data(), s, layout);
    expect("backward_data", gx, c.gx, c.gx_abs);
  }
  if (!has(ConvKernel::backward_weights)) return worst;
  dnnl_backend::conv2d_backward_weights(c.x.data(), c.gy.data(), gw.data(), nullptr, s, layout);
  expect("backward_weights", gw, c.gw, c.gw_abs);
  std::fill(gw.begin(), gw.end(), 0.0f);
  dnnl_backend::conv2d_backward_weights(c.x.data(), c.gy.data(), gw.data(), gb.data(), s, layout);
  expect("backward_weights+bias (weights)", gw, c.gw, c.gw_abs);
  expect("backward_weights+bias (bias)", gb, c.gb, c.gb_abs);
  return worst;
}

template <class T>
double dot(const std::vector<T>& a, const std::vector<T>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * static_cast<double>(b[i]);
  return s;
}

}  // namespace

TEST_CASE("conv reference: hand-computed example") {
  using metafew::tensor::conv2d_ref;
  // x = 1..9 in a 3x3 image, w = [[1, 2], [3, 4]].
  const std::vector<double> x = {1, 2, 3, 4, 5, 6, 7, 8, 9}, w = {1, 2, 3, 4};
  SUBCASE("stride 1, no padding") {
    std::vector<double> y(4);
    conv2d_ref(x.data(), w.data(), y.data(), make_shape(1, 1, 3, 3, 1, 2, 1, 0));
    CHECK(y == std::vector<double>{37, 47, 67, 77});
  }
  SUBCASE("stride 2, padding 1") {
    // Padded 5x5 image, windows at rows/cols {0, 2}: the top-left one sees only x[0][0] (under w[1][1]).
    std::vector<double> y(4);
    conv2d_ref(x.data(), w.data(), y.data(), make_shape(1, 1, 3, 3, 1, 2, 2, 1));
    CHECK(y == std::vector<double>{1 * 4, 2 * 3 + 3 * 4, 4 * 2 + 7 * 4, 5 * 1 + 6 * 2 + 8 * 3 + 9 * 4});
  }
}

TEST_CASE("conv reference: the three kernels are adjoint") {
  using namespace metafew::tensor;
  std::mt19937 rng(7u);
  for (int t = 0; t < 60; ++t) {
    const ConvShape s = random_shape(rng);
    CAPTURE(s.to_string());
    const auto x = to_double(random_floats(rng, s.x_numel())), w = to_double(random_floats(rng, s.w_numel())),
               gy = to_double(random_floats(rng, s.y_numel()));
    std::vector<double> y(s.y_numel()), gx(s.x_numel()), gw(s.w_numel()), y_abs(s.y_numel());
    conv2d_ref(x.data(), w.data(), y.data(), s);
    conv2d_grad_input_ref(gy.data(), w.data(), gx.data(), s);
    conv2d_grad_weight_ref(x.data(), gy.data(), gw.data(), s);
    // Each inner product is the same sum over all (x, w, gy) triples in a different order; the sum of the
    // triples' absolute values bounds the size of every partial sum, so it is the scale for "relative".
    const auto xa = abs_of(x), wa = abs_of(w), gya = abs_of(gy);
    conv2d_ref(xa.data(), wa.data(), y_abs.data(), s);
    const double scale = dot(y_abs, gya);
    const double a = dot(y, gy), b = dot(x, gx), c = dot(w, gw);
    CHECK(std::fabs(a - b) <= 1e-12 * scale);
    CHECK(std::fabs(a - c) <= 1e-12 * scale);
  }
}

TEST_CASE("oneDNN conv: fuzz against the reference") {
  const std::vector<ConvShape> shapes = fuzz_shapes(220);
  std::mt19937 rng(12345u);
  double worst = 0, worst_direct = 0;
  int direct_shapes = 0, small_image_shapes = 0, own_reorder_shapes = 0;
  for (const ConvShape& s : shapes) {
    const Case c(s, rng);
    for (ConvLayout layout : {ConvLayout::blocked, ConvLayout::plain})
      worst = std::max(worst, check_onednn(c, layout));
    // Shapes whose blocked plans reorder with metafew's own kernels (Note [Blocked reorders]).
    const std::string plan = dnnl_backend::conv2d_describe(s, ConvKernel::backward_weights, false, ConvLayout::blocked);
    if (plan.find("(own 0)") == std::string::npos) ++own_reorder_shapes;
    if (dnnl_backend::conv2d_direct_supported(s, ConvKernel::backward_weights)) {
      worst_direct = std::max(worst_direct, check_onednn(c, ConvLayout::direct));
      ++direct_shapes;
      if (!metafew::tensor::conv_single_channel_supported(s)) ++small_image_shapes;
    }
    dnnl_backend::release_thread_cache();  // bound memory: each shape compiles its own kernels
  }
  CHECK(direct_shapes >= 30);
  CHECK(small_image_shapes >= 10);
  CHECK(own_reorder_shapes >= 20);
  MESSAGE("largest |error| / tolerance over " << shapes.size() << " shapes: " << worst << " (oneDNN), "
                                              << worst_direct << " (direct, " << direct_shapes << " shapes, "
                                              << small_image_shapes << " of them small-image)");
}

TEST_CASE("direct single-channel conv: layer-1 shapes, same bits at any thread count") {
  // Large enough that the kernels split across threads outside a region (above 2 M multiply-adds), in both
  // the max-pool network's stride 1 and MAML's stride 2 form, with an odd number of output channels.
  const ConvShape shapes[] = {make_shape(9, 1, 28, 28, 64, 3, 1, 1), make_shape(40, 1, 28, 28, 61, 3, 2, 1)};
  std::mt19937 rng(31u);
  for (const ConvShape& s : shapes) {
    CAPTURE(s.to_string());
    const Case c(s, rng);
    check_onednn(c, ConvLayout::direct);  // right (against the reference), at the default thread count
    auto run = [&](int threads) {
      const int saved = omp_get_max_threads();
      omp_set_num_threads(threads);
      std::vector<float> y(s.y_numel()), gw(s.w_numel()), gb(s.oc);
      dnnl_backend::conv2d_forward(c.x.data(), c.w.data(), c.b.data(), y.data(), s, ConvLayout::direct);
      dnnl_backend::conv2d_backward_weights(c.x.data(), c.gy.data(), gw.data(), gb.data(), s, ConvLayout::direct);
      omp_set_num_threads(saved);
      return std::vector<std::vector<float>>{y, gw, gb};
    };
    const auto one = run(1), two = run(2), three = run(3);
    CHECK(one == two);
    CHECK(one == three);
  }
}

TEST_CASE("direct single-channel conv: shapes it does not take are refused") {
  std::vector<float> buf(4096);
  const ConvShape two_channels = make_shape(1, 2, 8, 8, 4, 3, 1, 1), five = make_shape(1, 1, 8, 8, 4, 5, 1, 2);
  for (const ConvShape& s : {two_channels, five}) {
    CHECK(dnnl_backend::conv2d_layout(s, dnnl_backend::ConvKernel::forward) != ConvLayout::direct);
    CHECK_THROWS_WITH_AS(
        dnnl_backend::conv2d_forward(buf.data(), buf.data(), nullptr, buf.data(), s, ConvLayout::direct),
        doctest::Contains("direct layout"), metafew::Error);
  }
  const ConvShape layer1 = make_shape(1, 1, 8, 8, 4, 3, 1, 1);
  CHECK(dnnl_backend::conv2d_layout(layer1, dnnl_backend::ConvKernel::forward) == ConvLayout::direct);
  CHECK(dnnl_backend::conv2d_layout(layer1, dnnl_backend::ConvKernel::backward_weights) == ConvLayout::direct);
  CHECK_THROWS_WITH_AS(dnnl_backend::conv2d_backward_data(buf.data(), buf.data(), buf.data(), layer1,
                                                          ConvLayout::direct),
                       doctest::Contains("direct layout"), metafew::Error);
}

TEST_CASE("direct small-image weight gradient: both unfoldings, same bits at any thread count") {
  // conv-4's last layer at meta-batch sizes (whole-vector unfolding; large enough to split across threads
  // outside a region), odd channel counts, stride 2, a 2x2 image, and a 1x1 kernel on a 4x4 image (the
  // per-channel unfolding).
  const ConvShape shapes[] = {make_shape(80, 64, 3, 3, 64, 3, 1, 1), make_shape(23, 37, 3, 3, 45, 3, 1, 1),
                              make_shape(30, 20, 3, 3, 70, 3, 2, 1), make_shape(9, 64, 2, 2, 33, 3, 1, 1),
                              make_shape(200, 48, 4, 4, 40, 1, 1, 0), make_shape(5, 64, 3, 3, 64, 3, 1, 1)};
  std::mt19937 rng(37u);
  for (const ConvShape& s : shapes) {
    CAPTURE(s.to_string());
    REQUIRE(dnnl_backend::conv2d_direct_supported(s, ConvKernel::backward_weights));
    CHECK(dnnl_backend::conv2d_describe(s, ConvKernel::backward_weights, true, ConvLayout::direct) ==
          "direct:small_image src=nchw wei=oihw dst=nchw reorders=0");
    const Case c(s, rng);
    check_onednn(c, ConvLayout::direct);  // right (against the reference), at the default thread count
    auto run = [&](int threads) {
      const int saved = omp_get_max_threads();
      omp_set_num_threads(threads);
      std::vector<float> gw(s.w_numel()), gb(s.oc);
      dnnl_backend::conv2d_backward_weights(c.x.data(), c.gy.data(), gw.data(), gb.data(), s, ConvLayout::direct);
      omp_set_num_threads(saved);
      return std::vector<std::vector<float>>{gw, gb};
    };
    const auto one = run(1), two = run(2), three = run(3);
    CHECK(one == two);
    CHECK(one == three);
  }
}

TEST_CASE("direct small-image weight gradient: shapes it does not take are refused") {
  std::vector<float> buf(1 << 16);
  const ConvShape small = make_shape(2, 64, 3, 3, 64, 3, 1, 1), large = make_shape(2, 8, 5, 5, 8, 3, 1, 1),
                  wide = make_shape(2, 8, 4, 4, 8, 5, 1, 2);
  CHECK(dnnl_backend::conv2d_direct_supported(small, ConvKernel::backward_weights));
  CHECK_FALSE(dnnl_backend::conv2d_direct_supported(small, ConvKernel::forward));
  CHECK_THROWS_WITH_AS(
      dnnl_backend::conv2d_forward(buf.data(), buf.data(), nullptr, buf.data(), small, ConvLayout::direct),
      doctest::Contains("direct layout"), metafew::Error);
  for (const ConvShape& s : {large, wide}) {  // 25 pixels per plane; 25 taps
    CAPTURE(s.to_string());
    CHECK(dnnl_backend::conv2d_layout(s, ConvKernel::backward_weights) == ConvLayout::blocked);
    CHECK_THROWS_WITH_AS(dnnl_backend::conv2d_backward_weights(buf.data(), buf.data(), buf.data(), nullptr, s,
                                                               ConvLayout::direct),
                         doctest::Contains("direct layout"), metafew::Error);
  }
}

TEST_CASE("oneDNN conv: the conv-4 layers reorder with metafew's kernels") {
  // Every reorder between whole 16-channel blocks (Note [Blocked reorders]).
  const ConvShape conv3 = make_shape(5, 64, 7, 7, 64, 3, 1, 1), conv4 = make_shape(5, 64, 3, 3, 64, 3, 1, 1),
                  conv2 = make_shape(5, 64, 14, 14, 64, 3, 1, 1), odd = make_shape(2, 24, 3, 3, 40, 3, 1, 1);
  for (const ConvShape& s : {conv2, conv3, conv4}) {
    CAPTURE(s.to_string());
    CHECK(dnnl_backend::conv2d_describe(s, ConvKernel::forward, false, ConvLayout::blocked).find("reorders=3 (own 3)") !=
          std::string::npos);
    CHECK(dnnl_backend::conv2d_describe(s, ConvKernel::backward_data, false, ConvLayout::blocked)
              .find("reorders=3 (own 3)") != std::string::npos);
    CHECK(dnnl_backend::conv2d_describe(s, ConvKernel::backward_weights, false, ConvLayout::blocked)
              .find("reorders=3 (own 3)") != std::string::npos);
  }

  // Channel counts that are not whole blocks stay with oneDNN's reorders (which pad).
  CHECK(dnnl_backend::conv2d_describe(odd, ConvKernel::forward, false, ConvLayout::blocked).find("(own 0)") !=
        std::string::npos);
  dnnl_backend::release_thread_cache();
}

TEST_CASE("oneDNN conv: blocked forward and backward data in batch chunks match the reference") {
  // Note [Batch chunks]: image tensors of 50-125 KB give chunks of 1-3 images, with uneven remainders; one
  // shape with 24 / 40 channels reorders with oneDNN's padding reorders, one is strided.
  std::mt19937 rng(777u);
  for (const ConvShape& s : {make_shape(13, 64, 14, 14, 64, 3, 1, 1), make_shape(7, 24, 28, 28, 40, 3, 1, 1),
                             make_shape(5, 32, 30, 30, 48, 3, 2, 1), make_shape(300, 64, 3, 3, 64, 3, 1, 1)}) {
    CAPTURE(s.to_string());
    Case c(s, rng);
    check_onednn(c, ConvLayout::blocked);
    // The same buffer of weights with new values and no generation: the chunks of the second call must not
    // reuse the first call's reordered weights.
    for (float& v : c.w) v = -0.5f * v + 0.25f;
    const Case fresh(s, c.x, c.w, c.b, c.gy);
    std::vector<float> y(s.y_numel()), gx(s.x_numel());
    dnnl_backend::conv2d_forward(c.x.data(), c.w.data(), nullptr, y.data(), s, ConvLayout::blocked);
    const Comparison ry = compare(y, fresh.y, fresh.y_abs);
    CHECK_MESSAGE(ry.bad == 0, describe(ry));
    dnnl_backend::conv2d_backward_data(c.gy.data(), c.w.data(), gx.data(), s, ConvLayout::blocked);
    const Comparison rx = compare(gx, fresh.gx, fresh.gx_abs);
    CHECK_MESSAGE(rx.bad == 0, describe(rx));
    dnnl_backend::release_thread_cache();
  }
}

TEST_CASE("oneDNN conv: nChw16c arguments give the plain call's numbers without its reorders") {
  // The same primitive on the same numbers: bit for bit the NCHW call's results, whichever activations are
  // blocked (the NCHW forward and backward data run in batch chunks here, the blocked ones in one piece).
  std::mt19937 rng(4242u);
  using dnnl_backend::nchw16c_arg;
  for (const ConvShape& s : {make_shape(13, 64, 14, 14, 64, 3, 1, 1), make_shape(5, 32, 7, 7, 48, 3, 1, 1),
                             make_shape(4, 16, 9, 8, 32, 3, 2, 1)}) {
    CAPTURE(s.to_string());
    const std::vector<float> x = random_floats(rng, s.x_numel()), w = random_floats(rng, s.w_numel()),
                             b = random_floats(rng, s.oc), gy = random_floats(rng, s.y_numel());
    const int64_t ihw = s.ih * s.iw, ohw = s.oh() * s.ow();
    auto to_blocked = [](const std::vector<float>& v, int64_t n, int64_t c, int64_t hw) {
      std::vector<float> r(v.size());
      metafew::tensor::nchw_to_nchw16c(v.data(), r.data(), n, c, hw);
      return r;
    };
    auto from_blocked = [](const std::vector<float>& v, int64_t n, int64_t c, int64_t hw) {
      std::vector<float> r(v.size());
      metafew::tensor::nchw16c_to_nchw(v.data(), r.data(), n, c, hw);
      return r;
    };
    const std::vector<float> xb = to_blocked(x, s.n, s.ic, ihw), gyb = to_blocked(gy, s.n, s.oc, ohw);
    std::vector<float> y(s.y_numel()), yb(s.y_numel()), gx(s.x_numel()), gxb(s.x_numel());
    std::vector<float> gw(s.w_numel()), gwb(s.w_numel()), gw2(s.w_numel());
    dnnl_backend::conv2d_forward(x.data(), w.data(), b.data(), y.data(), s, ConvLayout::blocked);
    dnnl_backend::conv2d_forward(xb.data(), w.data(), b.data(), yb.data(), s, ConvLayout::blocked, 0,
                                 nchw16c_arg(0) | nchw16c_arg(3));
    CHECK(from_blocked(yb, s.n, s.oc, ohw) == y);
    dnnl_backend::conv2d_forward(x.data(), w.data(), b.data(), yb.data(), s, ConvLayout::blocked, 0, nchw16c_arg(3));
    CHECK(from_blocked(yb, s.n, s.oc, ohw) == y);
    dnnl_backend::conv2d_backward_data(gy.data(), w.data(), gx.data(), s, ConvLayout::blocked);
    dnnl_backend::conv2d_backward_data(gyb.data(), w.data(), gxb.data(), s, ConvLayout::blocked, 0, nchw16c_arg(0));
    CHECK(gxb == gx);
    dnnl_backend::conv2d_backward_data(gyb.data(), w.data(), gxb.data(), s, ConvLayout::blocked, 0,
                                       nchw16c_arg(0) | nchw16c_arg(2));
    CHECK(from_blocked(gxb, s.n, s.ic, ihw) == gx);
    dnnl_backend::conv2d_backward_weights(x.data(), gy.data(), gw.data(), nullptr, s, ConvLayout::blocked);
    dnnl_backend::conv2d_backward_weights(xb.data(), gyb.data(), gwb.data(), nullptr, s, ConvLayout::blocked,
                                          nchw16c_arg(0) | nchw16c_arg(1));
    CHECK(gwb == gw);
    dnnl_backend::conv2d_backward_weights(x.data(), gyb.data(), gw2.data(), nullptr, s, ConvLayout::blocked,
                                          nchw16c_arg(1));
    CHECK(gw2 == gw);
  }
  const ConvShape conv2 = make_shape(5, 64, 14, 14, 64, 3, 1, 1);
  std::vector<float> x(conv2.x_numel(), 0.5f), w(conv2.w_numel(), 0.25f), y(conv2.y_numel());
  // Refused: a blocked argument of 24 channels, a blocked argument of the direct kernel, a flag naming the
  // weights.
  const ConvShape odd = make_shape(2, 24, 5, 5, 32, 3, 1, 1), first = make_shape(2, 1, 28, 28, 64, 3, 1, 1);
  std::vector<float> big(4096 * 64, 0.0f);
  CHECK_THROWS_AS(dnnl_backend::conv2d_forward(big.data(), big.data(), nullptr, big.data() + 2048 * 64, odd,
                                               ConvLayout::blocked, 0, nchw16c_arg(0)),
                  metafew::Error);
  CHECK_NOTHROW(dnnl_backend::conv2d_forward(big.data(), big.data(), nullptr, big.data() + 2048 * 64, odd,
                                             ConvLayout::blocked, 0, nchw16c_arg(3)));
  CHECK_THROWS_AS(dnnl_backend::conv2d_forward(big.data(), w.data(), nullptr, big.data() + 2048 * 64, first,
                                               ConvLayout::automatic, 0, nchw16c_arg(3)),
                  metafew::Error);
  CHECK_THROWS_AS(dnnl_backend::conv2d_forward(x.data(), w.data(), nullptr, y.data(), conv2, ConvLayout::blocked, 0,
                                               nchw16c_arg(1)),
                  metafew::Error);
  dnnl_backend::release_thread_cache();
}

TEST_CASE("oneDNN conv: plans are cached and reused") {
  dnnl_backend::release_thread_cache();
  const ConvShape s = make_shape(2, 3, 9, 9, 4, 3, 1, 1);
  std::mt19937 rng(1u);
  const Case c(s, rng);
  std::vector<float> y1(s.y_numel()), y2(s.y_numel());
  dnnl_backend::conv2d_forward(c.x.data(), c.w.data(), nullptr, y1.data(), s);
  CHECK(dnnl_backend::thread_cache_size() == 1);
  dnnl_backend::conv2d_forward(c.x.data(), c.w.data(), nullptr, y2.data(), s);
  CHECK(dnnl_backend::thread_cache_size() == 1);
  CHECK(y1 == y2);
  dnnl_backend::conv2d_forward(c.x.data(), c.w.data(), c.b.data(), y2.data(), s);
  CHECK(dnnl_backend::thread_cache_size() == 2);
  dnnl_backend::release_thread_cache();
  CHECK(dnnl_backend::thread_cache_size() == 0);
}

TEST_CASE("oneDNN conv: plans sharing a thread's buffers do not disturb each other") {
  // All plans of a thread keep their blocked tensors in the same buffers. A's channel counts are not
  // multiples of 16, so its blocked tensors carry zero padding; B fills the same buffers with NaN. A must not
  // notice.
  dnnl_backend::release_thread_cache();
  const ConvShape a = make_shape(2, 3, 12, 12, 5, 3, 1, 1), b = make_shape(2, 64, 12, 12, 64, 3, 1, 1);
  std::mt19937 rng(5u);
  const Case c(a, rng);
  auto run_a = [&] {
    std::vector<float> y(a.y_numel()), gx(a.x_numel()), gw(a.w_numel());
    dnnl_backend::conv2d_forward(c.x.data(), c.w.data(), nullptr, y.data(), a, ConvLayout::blocked);
    dnnl_backend::conv2d_backward_data(c.gy.data(), c.w.data(), gx.data(), a, ConvLayout::blocked);
    dnnl_backend::conv2d_backward_weights(c.x.data(), c.gy.data(), gw.data(), nullptr, a,
                                          ConvLayout::blocked);
    return std::vector<std::vector<float>>{y, gx, gw};
  };
  const float nan = std::numeric_limits<float>::quiet_NaN();
  auto run_b = [&] {  // B's buffers are larger: running it first sizes the shared buffers once for both
    std::vector<float> bx(b.x_numel(), nan), bw(b.w_numel(), nan), by(b.y_numel(), nan);
    dnnl_backend::conv2d_forward(bx.data(), bw.data(), nullptr, by.data(), b, ConvLayout::blocked);
    dnnl_backend::conv2d_backward_data(by.data(), bw.data(), bx.data(), b, ConvLayout::blocked);
    dnnl_backend::conv2d_backward_weights(bx.data(), by.data(), bw.data(), nullptr, b, ConvLayout::blocked);
  };
  run_b();
  const auto first = run_a();
  run_b();
  const auto again = run_a();
  CHECK(again == first);
  CHECK(compare(first[0], c.y, c.y_abs).bad == 0);
  CHECK(compare(first[1], c.gx, c.gx_abs).bad == 0);
  CHECK(compare(first[2], c.gw, c.gw_abs).bad == 0);
  dnnl_backend::release_thread_cache();
}

TEST_CASE("oneDNN conv: invalid shapes and null buffers are refused") {
  std::vector<float> buf(64);
  ConvShape s = make_shape(1, 1, 2, 2, 1, 3, 1, 0);  // 3x3 kernel on an unpadded 2x2 image
  REQUIRE_FALSE(s.valid());
  try {
    dnnl_backend::conv2d_forward(buf.data(), buf.data(), nullptr, buf.data(), s);
    FAIL("no exception");
  } catch (const metafew::Error& e) {
    const std::string what = e.what();
    CHECK(what.find("conv2d_forward") != std::string::npos);
    CHECK(what.find("x(1,1,2,2)") != std::string::npos);
  }
  s.ph = s.pw = 1;
  REQUIRE(s.valid());
  CHECK_THROWS_AS(dnnl_backend::conv2d_backward_data(nullptr, buf.data(), buf.data(), s), metafew::Error);
  CHECK_THROWS_AS(dnnl_backend::conv2d_backward_weights(buf.data(), buf.data(), nullptr, nullptr, s),
                  metafew::Error);
}

TEST_CASE("oneDNN conv: inside an OpenMP parallel region") {
  // Each thread runs its own shapes (one thread the conv-4 layers, the other odd shapes), so the two threads
  // build and run different primitives at the same time. Results are kept and checked after the region.
  const std::vector<std::vector<ConvShape>> per_thread = {
      {make_shape(5, 1, 28, 28, 64, 3, 1, 1), make_shape(5, 64, 14, 14, 64, 3, 1, 1),
       make_shape(5, 64, 7, 7, 64, 3, 1, 1), make_shape(5, 64, 3, 3, 64, 3, 1, 1)},
      {make_shape(3, 3, 13, 11, 16, 3, 2, 1), make_shape(1, 17, 5, 5, 4, 1, 1, 0),
       make_shape(2, 64, 8, 8, 64, 3, 2, 0), make_shape(4, 16, 30, 30, 3, 3, 1, 1)}};
  std::vector<Case> cases;
  std::mt19937 rng(99u);
  for (const auto& shapes : per_thread) {
    for (const ConvShape& s : shapes) cases.emplace_back(s, rng);
  }
  const std::size_t per = per_thread[0].size();

  struct Result {
    std::vector<float> y, gx, gw;
  };
  auto run_all = [](const Case& c) {
    Result r{std::vector<float>(c.s.y_numel()), std::vector<float>(c.s.x_numel()),
             std::vector<float>(c.s.w_numel())};
    dnnl_backend::conv2d_forward(c.x.data(), c.w.data(), nullptr, r.y.data(), c.s);
    dnnl_backend::conv2d_backward_data(c.gy.data(), c.w.data(), r.gx.data(), c.s);
    dnnl_backend::conv2d_backward_weights(c.x.data(), c.gy.data(), r.gw.data(), nullptr, c.s);
    return r;
  };

  // Serial results: outside any region, with oneDNN using all OpenMP threads, and with one thread.
  std::vector<Result> serial, single;
  for (const Case& c : cases) serial.push_back(run_all(c));
  const int saved_threads = omp_get_max_threads();
  omp_set_num_threads(1);
  for (const Case& c : cases) single.push_back(run_all(c));
  omp_set_num_threads(saved_threads);

  std::vector<Result> inside(cases.size());
  std::vector<std::exception_ptr> errors(2);
  int team = 0;
#pragma omp parallel num_threads(2)
  {
    const int t = omp_get_thread_num();
#pragma omp single
    team = omp_get_num_threads();
    try {
      for (int rep = 0; rep < 2; ++rep) {  // the second round runs on cached plans
        for (std::size_t i = 0; i < per; ++i) inside[t * per + i] = run_all(cases[t * per + i]);
      }
    } catch (...) {
      errors[t] = std::current_exception();
    }
  }
  WARN_MESSAGE(team == 2, "the OpenMP runtime gave " << team << " threads instead of 2");
  for (const auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }

  for (std::size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    CAPTURE(c.s.to_string());
    // Inside a region oneDNN runs single-threaded, exactly like the one-thread program: all kernels agree bit
    // for bit. The forward pass has no reduction split across threads, so it also equals the multi-thread
    // run.
    CHECK(inside[i].y == single[i].y);
    CHECK(inside[i].gx == single[i].gx);
    CHECK(inside[i].gw == single[i].gw);
    CHECK(inside[i].y == serial[i].y);
    // And the results are right, not merely repeatable.
    CHECK_MESSAGE(compare(inside[i].y, c.y, c.y_abs).bad == 0, describe(compare(inside[i].y, c.y, c.y_abs)));
    CHECK_MESSAGE(compare(inside[i].gx, c.gx, c.gx_abs).bad == 0,
                  describe(compare(inside[i].gx, c.gx, c.gx_abs)));
    CHECK_MESSAGE(compare(inside[i].gw, c.gw, c.gw_abs).bad == 0,
                  describe(compare(inside[i].gw, c.gw, c.gw_abs)));
    CHECK_MESSAGE(compare(serial[i].gw, c.gw, c.gw_abs).bad == 0,
                  describe(compare(serial[i].gw, c.gw, c.gw_abs)));
  }
}

TEST_CASE("oneDNN conv: reordered weights are reused per generation and never stale") {
  dnnl_backend::release_thread_cache();
  const ConvShape s = make_shape(5, 64, 3, 3, 64, 3, 1, 1);  // conv-4's last layer: blocked, weights reordered
  REQUIRE(dnnl_backend::conv2d_layout(s, dnnl_backend::ConvKernel::forward) == ConvLayout::blocked);
  std::mt19937 rng(17u);
  const Case a(s, rng), b(s, rng);
  std::vector<float> w = a.w, y1(s.y_numel()), y2(s.y_numel()), gx(s.x_numel());
  dnnl_backend::conv2d_forward(a.x.data(), w.data(), nullptr, y1.data(), s, ConvLayout::automatic, 41);
  CHECK(dnnl_backend::thread_weights_cache_hits() == 0);
  dnnl_backend::conv2d_forward(a.x.data(), w.data(), nullptr, y2.data(), s, ConvLayout::automatic, 41);
  CHECK(dnnl_backend::thread_weights_cache_hits() == 1);
  CHECK(y1 == y2);
  CHECK(compare(y2, a.y, a.y_abs).bad == 0);
  // Backward data uses another weights layout: its own entry, then a hit.
  dnnl_backend::conv2d_backward_data(a.gy.data(), w.data(), gx.data(), s, ConvLayout::automatic, 41);
  dnnl_backend::conv2d_backward_data(a.gy.data(), w.data(), gx.data(), s, ConvLayout::automatic, 41);
  CHECK(dnnl_backend::thread_weights_cache_hits() == 2);
  CHECK(compare(gx, a.gx, a.gx_abs).bad == 0);
  // New contents in the same buffer under a new generation: reordered again, results follow the new weights.
  w = b.w;
  dnnl_backend::conv2d_forward(a.x.data(), w.data(), nullptr, y1.data(), s, ConvLayout::automatic, 42);
  CHECK(dnnl_backend::thread_weights_cache_hits() == 2);
  std::vector<double> want(s.y_numel()), want_abs(s.y_numel());
  const auto xd = to_double(a.x), wd = to_double(b.w);
  metafew::tensor::conv2d_ref(xd.data(), wd.data(), want.data(), s);
  metafew::tensor::conv2d_ref(abs_of(xd).data(), abs_of(wd).data(), want_abs.data(), s);
  CHECK(compare(y1, want, want_abs).bad == 0);
  // Generation 0 means unknown: never cached.
  dnnl_backend::conv2d_forward(a.x.data(), w.data(), nullptr, y1.data(), s, ConvLayout::automatic, 0);
  dnnl_backend::conv2d_forward(a.x.data(), w.data(), nullptr, y1.data(), s, ConvLayout::automatic, 0);
  CHECK(dnnl_backend::thread_weights_cache_hits() == 2);
  dnnl_backend::release_thread_cache();
}

TEST_CASE("conv op: an in-place update of the weights is seen by the next convolution") {
  // The optimiser's path: Variable::mutable_data() gives the storage a new generation (Note [Storage
  // generation]), so the backend's reordered copy of the old weights is not reused.
  namespace ops = metafew::ops;
  using metafew::autograd::Variable;
  using metafew::tensor::Tensor;
  dnnl_backend::release_thread_cache();
  const ConvShape s = make_shape(5, 64, 3, 3, 64, 3, 1, 1);
  std::mt19937 rng(23u);
  const Case a(s, rng), b(s, rng);
  auto tensor_of = [](const std::vector<float>& v, const metafew::tensor::Shape& shape) {
    Tensor t = Tensor::empty(shape);
    std::copy(v.begin(), v.end(), t.data<float>());
    return t;
  };
  const Variable x(tensor_of(a.x, {s.n, s.ic, s.ih, s.iw}));
  Variable w(tensor_of(a.w, {s.oc, s.ic, s.kh, s.kw}), true);
  const ops::Conv2dParams p{1, 1};
  const std::vector<double> y_a = ops::conv2d(x, w, p).data().to_vector();
  CHECK(ops::conv2d(x, w, p).data().to_vector() == y_a);
  CHECK(dnnl_backend::thread_weights_cache_hits() == 1);
  float* raw = w.mutable_data().data<float>();
  std::copy(b.w.begin(), b.w.end(), raw);
  const std::vector<double> y_b = ops::conv2d(x, w, p).data().to_vector();
  CHECK(dnnl_backend::thread_weights_cache_hits() == 1);
  std::vector<double> want(s.y_numel()), want_abs(s.y_numel());
  const auto xd = to_double(a.x), wd = to_double(b.w);
  metafew::tensor::conv2d_ref(xd.data(), wd.data(), want.data(), s);
  metafew::tensor::conv2d_ref(abs_of(xd).data(), abs_of(wd).data(), want_abs.data(), s);
  CHECK(compare(std::vector<float>(y_b.begin(), y_b.end()), want, want_abs).bad == 0);
  dnnl_backend::release_thread_cache();
}

TEST_CASE("conv op: f32 weight and bias gradients from one pass, and their derivatives") {
  using metafew::tensor::conv2d_grad_input_ref, metafew::tensor::conv2d_grad_weight_ref, metafew::tensor::conv2d_ref;
  // Note [Conv bias gradient] (ops/conv.cpp): with a bias, conv2d's backward takes gw and gb from one
  // backward-weights pass. Both must equal the separate computations, and both nodes must differentiate.
  namespace ops = metafew::ops;
  using metafew::autograd::Variable;
  using metafew::tensor::Tensor;
  for (const ConvShape& s : {make_shape(3, 1, 10, 10, 8, 3, 1, 1), make_shape(2, 16, 6, 6, 16, 3, 1, 1)}) {
    CAPTURE(s.to_string());
    std::mt19937 rng(29u);
    auto rand = [&](const metafew::tensor::Shape& shape) {
      int64_t count = 1;
      for (int64_t d : shape) count *= d;
      const auto v = random_floats(rng, count);
      Tensor t = Tensor::empty(shape);
      std::copy(v.begin(), v.end(), t.data<float>());
      return t;
    };
    const metafew::tensor::Shape yshape{s.n, s.oc, s.oh(), s.ow()};
    Variable x(rand({s.n, s.ic, s.ih, s.iw}), true), w(rand({s.oc, s.ic, 3, 3}), true), b(rand({s.oc}), true);
    Variable r(rand(yshape), true);
    const ops::Conv2dParams p{1, 1};
    Variable loss = ops::sum(ops::mul(ops::conv2d(x, w, b, p), r));
    auto g = metafew::autograd::grad({loss}, {w, b}, {}, {.create_graph = true});
    // gb = sum of r over (n, h, w), summed here in double.
    const std::vector<double> rv = r.data().to_vector(), gb = g[1].data().to_vector();
    const int64_t plane = s.oh() * s.ow();
    for (int64_t o = 0; o < s.oc; ++o) {
      double want = 0, mag = 0;
      for (int64_t n = 0; n < s.n; ++n)
        for (int64_t k = 0; k < plane; ++k) {
          const double e = rv[(n * s.oc + o) * plane + k];
          want += e, mag += std::fabs(e);
        }
      CHECK(std::fabs(gb[o] - want) <= kTolFactor * kUnitRoundoff * mag);
    }
    // Every other result against its f64 reference, within Note [Conv fuzz tolerance]'s bound (16 u times the
    // sum of |products| of that output).
    Variable u(rand({s.oc})), v(rand({s.oc, s.ic, 3, 3}));
    auto h = metafew::autograd::grad({ops::add(ops::sum(ops::mul(g[1], u)), ops::sum(ops::mul(g[0], v)))}, {r, x});
    const std::vector<double> xd = x.data().to_vector(), vd = v.data().to_vector(), uv = u.data().to_vector();
    std::vector<double> gw_ref(s.w_numel()), gw_abs(s.w_numel()), cv(s.y_numel()), cv_abs(s.y_numel()),
        gx(s.x_numel()), gx_abs(s.x_numel());
    conv2d_grad_weight_ref(xd.data(), rv.data(), gw_ref.data(), s);
    conv2d_grad_weight_ref(abs_of(xd).data(), abs_of(rv).data(), gw_abs.data(), s);
    conv2d_ref(xd.data(), vd.data(), cv.data(), s);  // d/dr sum(gw * v) = conv2d(x, v); plus u[o] from gb
    conv2d_ref(abs_of(xd).data(), abs_of(vd).data(), cv_abs.data(), s);
    conv2d_grad_input_ref(rv.data(), vd.data(), gx.data(), s);  // d/dx sum(gw * v) = conv2d_grad_input(r, v)
    conv2d_grad_input_ref(abs_of(rv).data(), abs_of(vd).data(), gx_abs.data(), s);
    for (int64_t i = 0; i < s.y_numel(); ++i) {
      const int64_t o = i / plane % s.oc;
      cv[i] += uv[o], cv_abs[i] += std::fabs(uv[o]);
    }
    auto as_float = [](const Variable& t) {
      const std::vector<double> d = t.data().to_vector();
      return std::vector<float>(d.begin(), d.end());
    };
    CHECK_MESSAGE(compare(as_float(g[0]), gw_ref, gw_abs).bad == 0, describe(compare(as_float(g[0]), gw_ref, gw_abs)));
    CHECK_MESSAGE(compare(as_float(h[0]), cv, cv_abs).bad == 0, describe(compare(as_float(h[0]), cv, cv_abs)));
    CHECK_MESSAGE(compare(as_float(h[1]), gx, gx_abs).bad == 0, describe(compare(as_float(h[1]), gx, gx_abs)));
  }
}
