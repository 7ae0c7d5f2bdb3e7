// The blocked conv block (Note [Blocked conv block], ops/norm.cpp): conv_bn_max_pool on 16-channel multiples,
// with the convolution's output and gradient in nChw16c, against the composition
// batch_norm_max_pool(conv2d(x)) it replaces, both in f32, and against that composition in f64.
#include <omp.h>

#include "support/fused_accuracy.h"
#include "support/gradcheck.h"

namespace metafew::testing {
namespace {

const ops::Conv2dParams kSame{1, 1};

struct Block {
  Tensor x, w, b, gamma, beta, u;  // u: the cotangent of the pooled output
};

Block random_block(const Shape& xs, int64_t oc, uint32_t seed, const ops::Conv2dParams& p = kSame) {
  std::mt19937 rng(seed);
  Block k;
  const int64_t ic = xs[1];
  // Inputs as a previous block's output (relu'd, many zeros), weights at He scale.
  k.x = tensor::unary(tensor::UnaryOp::relu, random_tensor(xs, rng, -1.0, 2.0, DType::f32), 0.0);
  const double bound = std::sqrt(6.0 / static_cast<double>(ic * 9));
  k.w = random_tensor({oc, ic, 3, 3}, rng, -bound, bound, DType::f32);
  k.b = random_tensor({oc}, rng, -0.1, 0.1, DType::f32);
  k.gamma = random_tensor({oc}, rng, -0.5, 1.5, DType::f32);  // some negative: the pooling takes minima there
  k.beta = random_tensor({oc}, rng, -0.5, 0.5, DType::f32);
  const int64_t oh = (xs[2] + 2 * p.padding - 3) / p.stride + 1,
                ow = (xs[3] + 2 * p.padding - 3) / p.stride + 1;
  k.u = random_tensor({xs[0], oc, oh / 2, ow / 2}, rng, -1.0, 1.0, DType::f32);
  return k;
}

Variable block(const Variable& x, const Variable& w, const Variable& b, const Variable& g, const Variable& be,
               bool fused, bool relu = false, const ops::Conv2dParams& p = kSame) {
  return fused ? ops::conv_bn_max_pool(x, w, b, g, be, p, 1e-5, relu)
               : ops::batch_norm_max_pool(ops::conv2d(x, w, b, p), g, be, 1e-5, relu);
}

// Output, then the gradients of <y, u> for x, w, b, gamma, beta.
std::vector<Tensor> first_order(const Block& k, DType dtype, bool fused, bool relu = false) {
  Variable x(k.x.to(dtype), true), w(k.w.to(dtype), true), b(k.b.to(dtype), true), g(k.gamma.to(dtype), true),
      be(k.beta.to(dtype), true);
  Variable y = block(x, w, b, g, be, fused, relu);
  auto d = autograd::grad({ops::sum(ops::mul(y, Variable(k.u.to(dtype))))}, {x, w, b, g, be});
  std::vector<Tensor> out{y.data().to(DType::f64)};
  for (auto& v : d) out.push_back(v.data().to(DType::f64));
  return out;
}

// conv-4's second layer at a 20-image batch, its third (odd side: the last row and column in no window) and
// fourth (3x3 pixels: backward weights by the direct small-image kernel), other channel counts, and a single
// window.
const std::vector<std::tuple<Shape, int64_t, uint32_t>> kShapes{{{20, 64, 14, 14}, 64, 1u},
                                                                {{8, 64, 7, 7}, 64, 2u},
                                                                {{6, 64, 3, 3}, 64, 3u},
                                                                {{5, 32, 5, 6}, 16, 4u},
                                                                {{2, 16, 2, 2}, 48, 5u}};

// The op sums the statistics in another order (support/fused_accuracy.h); its bias gradient is exactly the
// f64 reference's 0.
TEST_CASE("blocked conv block: values and first-order gradients as accurate as the composition it replaces") {
  for (const auto& [xs, oc, seed] : kShapes) {
    const std::string shape_text = tensor::to_string(xs);  // clang 14 cannot capture a binding in CAPTURE
    CAPTURE(shape_text);
    for (bool relu : {false, true}) {
      CAPTURE(relu);
      const Block k = random_block(xs, oc, seed);
      const auto ref = first_order(k, DType::f64, false, relu);
      check_as_accurate(relative_errors(first_order(k, DType::f32, true, relu), ref),
                        relative_errors(first_order(k, DType::f32, false, relu), ref),
                        "y, then dx, dw, db, dgamma, dbeta");
    }
  }
}

// With create_graph (MAML's inner step): the gradient of |d<y, u>/dw|^2 + |d<y, u>/dgamma|^2 with respect to
// x, w, b, gamma and beta, through the op's composed backward.
std::vector<Tensor> second_order(const Block& k, DType dtype, bool fused) {
  Variable x(k.x.to(dtype), true), w(k.w.to(dtype), true), b(k.b.to(dtype), true), g(k.gamma.to(dtype), true),
      be(k.beta.to(dtype), true);
  Variable y = block(x, w, b, g, be, fused, true);
  auto g1 =
      autograd::grad({ops::sum(ops::mul(y, Variable(k.u.to(dtype))))}, {w, g}, {}, {.create_graph = true});
  auto d = autograd::grad({ops::add(ops::sum(ops::mul(g1[0], g1[0])), ops::sum(ops::mul(g1[1], g1[1])))},
                          {x, w, b, g, be}, {}, {.allow_unused = true});
  std::vector<Tensor> out;
  const std::vector<Shape> shapes{x.shape(), w.shape(), b.shape(), g.shape(), be.shape()};
  for (size_t i = 0; i < d.size(); ++i)
    out.push_back(d[i].defined() ? d[i].data().to(DType::f64) : Tensor::zeros(shapes[i], DType::f64));
  return out;
}

TEST_CASE("blocked conv block: second derivatives as accurate as the composition it replaces") {
  for (const auto& [xs, oc, seed] : kShapes) {
    if (xs[0] > 10) continue;  // the f64 reference's second order is slow at the largest shape
    const std::string shape_text = tensor::to_string(xs);  // clang 14 cannot capture a binding in CAPTURE
    CAPTURE(shape_text);
    const Block k = random_block(xs, oc, seed + 10);
    const auto ref = second_order(k, DType::f64, false);
    check_as_accurate(relative_errors(second_order(k, DType::f32, true), ref),
                      relative_errors(second_order(k, DType::f32, false), ref), "x, w, b, gamma, beta");
  }
}

TEST_CASE("blocked conv block: the same bits at 1 and 2 threads") {
  const Block k = random_block({75, 64, 14, 14}, 64, 7u);
  auto run = [&] { return first_order(k, DType::f32, true, true); };
  const auto one = at_threads(1, run), two = at_threads(2, run);
  for (size_t i = 0; i < one.size(); ++i) {
    CAPTURE(i);
    CHECK(tensor::max_abs_diff(one[i], two[i]) == 0);
  }
}

TEST_CASE("blocked conv block with relu: the same bits as relu after it") {
  const Block k = random_block({6, 32, 7, 7}, 32, 12u);
  Variable x(k.x.clone(), true), w(k.w.clone(), true), b(k.b.clone(), true), g(k.gamma.clone(), true),
      be(k.beta.clone(), true);
  Variable yf = ops::conv_bn_max_pool(x, w, b, g, be, kSame, 1e-5, true);
  Variable yc = ops::relu(ops::conv_bn_max_pool(x, w, b, g, be, kSame));
  CHECK(tensor::max_abs_diff(yf.data(), yc.data()) == 0);
  const Variable u(k.u);
  auto a = autograd::grad({ops::sum(ops::mul(yf, u))}, {x, w, b, g, be});
  auto c = autograd::grad({ops::sum(ops::mul(yc, u))}, {x, w, b, g, be});
  for (size_t i = 0; i < a.size(); ++i) {
    CAPTURE(i);
    CHECK(tensor::max_abs_diff(a[i].data(), c[i].data()) == 0);
  }
}

TEST_CASE("blocked conv block: the pooled positions are max_pool2d's") {
  // Ties included: an input of few distinct values gives equal corners; the argmax must be the first in scan
  // order, as max_pool2d's, or the gradient lands elsewhere.
  std::mt19937 rng(31u);
  Tensor xt = random_tensor({3, 16, 6, 6}, rng, 0.0, 1.0, DType::f32);
  Tensor wt = Tensor::zeros({16, 16, 3, 3}, DType::f32);
  for (int64_t o = 0; o < 16; ++o) wt.data<float>()[(o * 16 + o) * 9 + 4] = 1.0f;  // y = x: the centre tap
  float* px = xt.data<float>();
  for (int64_t i = 0; i < xt.numel(); ++i) px[i] = std::floor(px[i] * 3.0f);  // 0, 1, 2: many ties
  Variable x(xt, true), w(wt, true), b(Tensor::zeros({16}, DType::f32)),
      g(Tensor::full({16}, 1.0, DType::f32)), be(Tensor::zeros({16}, DType::f32));
  Variable yf = ops::conv_bn_max_pool(x, w, b, g, be, kSame);
  Variable yc = ops::batch_norm_max_pool(ops::conv2d(x, w, b, kSame), g, be);
  CHECK(tensor::max_abs_diff(yf.data(), yc.data()) < 1e-6);
  Variable u(random_tensor(yf.shape(), rng, -1.0, 1.0, DType::f32));
  // Where the input's gradient is non-zero beyond batch norm's dense part shows the chosen positions: the
  // gradients agree only if both chose the same corner of every window.
  auto a = autograd::grad({ops::sum(ops::mul(yf, u))}, {x})[0];
  auto c = autograd::grad({ops::sum(ops::mul(yc, u))}, {x})[0];
  CHECK(tensor::max_abs_diff(a.data(), c.data()) < 1e-5);
}

TEST_CASE("blocked conv block: other inputs take the composition") {
  std::mt19937 rng(9u);
  // 8 output channels, 24 input channels, f64: each is the composition's ops, the same bits.
  for (int variant = 0; variant < 3; ++variant) {
    CAPTURE(variant);
    const int64_t ic = variant == 1 ? 24 : 16, oc = variant == 0 ? 8 : 16;
    const DType dt = variant == 2 ? DType::f64 : DType::f32;
    Variable x(random_tensor({4, ic, 8, 8}, rng, 0.0, 1.0, dt), true),
        w(random_tensor({oc, ic, 3, 3}, rng, -0.3, 0.3, dt), true);
    Variable b(random_tensor({oc}, rng, -0.1, 0.1, dt)), g(Tensor::full({oc}, 1.0, dt)),
        be(Tensor::zeros({oc}, dt));
    Variable y = ops::conv_bn_max_pool(x, w, b, g, be, kSame);
    Variable yc = ops::batch_norm_max_pool(ops::conv2d(x, w, b, kSame), g, be);
    CHECK(tensor::max_abs_diff(y.data(), yc.data()) == 0);
    Variable u(random_tensor(y.shape(), rng, -1.0, 1.0, dt));
    auto a = autograd::grad({ops::sum(ops::mul(y, u))}, {x, w});
    auto c = autograd::grad({ops::sum(ops::mul(yc, u))}, {x, w});
    CHECK(tensor::max_abs_diff(a[0].data(), c[0].data()) == 0);
    CHECK(tensor::max_abs_diff(a[1].data(), c[1].data()) == 0);
  }
}

}  // namespace
}  // namespace metafew::testing
