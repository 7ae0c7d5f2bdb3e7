#pragma once
// What the convolution tests share (tests/backend/test_conv*.cpp): random shapes within the fuzz budget,
// comparisons against the naive reference with the tolerance of Note [Conv fuzz tolerance], and a case
// runner for oneDNN's kernels.
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

namespace metafew::testing::conv_cases {


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

inline std::vector<float> random_floats(std::mt19937& rng, int64_t n) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (float& f : v) f = dist(rng);
  return v;
}

inline std::vector<double> to_double(const std::vector<float>& v) {
  return {v.begin(), v.end()};
}

inline std::vector<double> abs_of(const std::vector<double>& v) {
  std::vector<double> r(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) r[i] = std::fabs(v[i]);
  return r;
}

inline int64_t pick(std::mt19937& rng, std::initializer_list<int64_t> values) {
  std::uniform_int_distribution<std::size_t> d(0, values.size() - 1);
  return *(values.begin() + d(rng));
}

inline int64_t uniform(std::mt19937& rng, int64_t lo, int64_t hi) {
  return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
}

inline bool coin(std::mt19937& rng, double p) {
  return std::bernoulli_distribution(p)(rng);
}

inline ConvShape make_shape(int64_t n, int64_t ic, int64_t ih, int64_t iw, int64_t oc, int64_t k, int64_t stride,
                     int64_t pad) {
  ConvShape s;
  s.n = n, s.ic = ic, s.ih = ih, s.iw = iw, s.oc = oc, s.kh = k, s.kw = k, s.sh = stride, s.sw = stride;
  s.ph = pad, s.pw = pad;
  return s;
}

inline ConvShape random_shape(std::mt19937& rng) {
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
inline std::vector<ConvShape> fuzz_shapes(int count) {
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

inline Comparison compare(const std::vector<float>& got, const std::vector<double>& want,
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

inline std::string describe(const Comparison& c) {
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
inline double check_onednn(const Case& c, ConvLayout layout) {
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
inline double dot(const std::vector<T>& a, const std::vector<T>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * static_cast<double>(b[i]);
  return s;
}


}  // namespace metafew::testing::conv_cases
