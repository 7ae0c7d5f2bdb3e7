// The fused first block (Note [First block fused], tensor/conv_single_channel.cpp) against the composition
// batch_norm_max_pool(conv2d(x)) it replaces, both in f32, and against that composition in f64.
#include <omp.h>

#include "support/fused_accuracy.h"
#include "support/gradcheck.h"

namespace metafew::testing {
namespace {

const ops::Conv2dParams kSame{1, 1};

// Omniglot-like images: mostly background at 1, strokes anywhere in [0, 1) (the patch means are then close
// to 1 and the centred moments small, where closed-form statistics would lose digits if not centred).
Tensor glyph_images(const Shape& shape, std::mt19937& rng) {
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<double> v(static_cast<size_t>(tensor::numel(shape)));
  for (double& x : v) x = u(rng) < 0.8 ? 1.0 : u(rng);
  return Tensor::from_vector(v, shape, DType::f32);
}

struct Block {
  Tensor x, w, b, gamma, beta, u;  // u: the cotangent of the pooled output
};

Block random_block(const Shape& xs, int64_t oc, uint32_t seed) {
  std::mt19937 rng(seed);
  Block k;
  k.x = glyph_images(xs, rng);
  k.w = random_tensor({oc, 1, 3, 3}, rng, -1.0 / 3, 1.0 / 3, DType::f32);
  k.b = random_tensor({oc}, rng, -0.1, 0.1, DType::f32);
  k.gamma = random_tensor({oc}, rng, -0.5, 1.5, DType::f32);  // some negative: the pooling takes minima there
  k.beta = random_tensor({oc}, rng, -0.5, 0.5, DType::f32);
  k.u = random_tensor({xs[0], oc, xs[2] / 2, xs[3] / 2}, rng, -1.0, 1.0, DType::f32);
  return k;
}

// Output, then the gradients of <y, u> for w, b, gamma, beta; fused: through conv_bn_max_pool.
std::vector<Tensor> first_order(const Block& k, DType dtype, bool fused) {
  Variable x(k.x.to(dtype)), w(k.w.to(dtype), true), b(k.b.to(dtype), true), g(k.gamma.to(dtype), true),
      be(k.beta.to(dtype), true);
  Variable y = fused ? ops::conv_bn_max_pool(x, w, b, g, be, kSame)
                     : ops::batch_norm_max_pool(ops::conv2d(x, w, b, kSame), g, be);
  auto d = autograd::grad({ops::sum(ops::mul(y, Variable(k.u.to(dtype))))}, {w, b, g, be});
  std::vector<Tensor> out{y.data().to(DType::f64)};
  for (auto& v : d) out.push_back(v.data().to(DType::f64));
  return out;
}

// The shapes of the tests: Omniglot's first block at a query batch of 75, smaller ones with odd sides (the
// last row or column in no window) and a single window.
const std::vector<std::tuple<Shape, int64_t, uint32_t>> kShapes{
    {{75, 1, 28, 28}, 64, 1u}, {{6, 1, 12, 12}, 8, 2u}, {{5, 1, 7, 9}, 3, 3u}, {{1, 1, 2, 2}, 2, 4u}};

// The fused op takes the statistics in closed form (support/fused_accuracy.h); in these shapes it is as
// accurate or more, and its bias gradient is exactly the f64 reference's 0, where the composition's sum of
// dx leaves rounding.
TEST_CASE("conv_bn_max_pool: values and first-order gradients as accurate as the composition it replaces") {
  for (const auto& [xs, oc, seed] : kShapes) {
    const std::string shape_text = tensor::to_string(xs);  // clang 14 cannot capture a binding in CAPTURE
    CAPTURE(shape_text);
    const Block k = random_block(xs, oc, seed);
    const auto ref = first_order(k, DType::f64, false);
    check_as_accurate(relative_errors(first_order(k, DType::f32, true), ref),
                      relative_errors(first_order(k, DType::f32, false), ref), "y, then dw, db, dgamma, dbeta");
  }
}

// With create_graph (MAML's inner step): the gradient of |d<y, u>/dw|^2 with respect to w, b, gamma and
// beta, through the fused op's composed backward.
std::vector<Tensor> second_order(const Block& k, DType dtype, bool fused) {
  Variable x(k.x.to(dtype)), w(k.w.to(dtype), true), b(k.b.to(dtype), true), g(k.gamma.to(dtype), true),
      be(k.beta.to(dtype), true);
  Variable y = fused ? ops::conv_bn_max_pool(x, w, b, g, be, kSame)
                     : ops::batch_norm_max_pool(ops::conv2d(x, w, b, kSame), g, be);
  auto g1 =
      autograd::grad({ops::sum(ops::mul(y, Variable(k.u.to(dtype))))}, {w, g}, {}, {.create_graph = true});
  auto d = autograd::grad({ops::add(ops::sum(ops::mul(g1[0], g1[0])), ops::sum(ops::mul(g1[1], g1[1])))},
                          {w, b, g, be}, {}, {.allow_unused = true});
  std::vector<Tensor> out;
  for (auto& v : d)
    out.push_back(v.defined() ? v.data().to(DType::f64) : Tensor::zeros(b.shape(), DType::f64));
  return out;
}

TEST_CASE("conv_bn_max_pool: second derivatives as accurate as the composition it replaces") {
  for (const auto& [xs, oc, seed] : kShapes) {
    if (xs[0] > 10) continue;  // the f64 reference's second order at 75 x 64 x 28 x 28 takes seconds
    const std::string shape_text = tensor::to_string(xs);  // clang 14 cannot capture a binding in CAPTURE
    CAPTURE(shape_text);
    const Block k = random_block(xs, oc, seed + 10);
    const auto ref = second_order(k, DType::f64, false);
    check_as_accurate(relative_errors(second_order(k, DType::f32, true), ref),
                      relative_errors(second_order(k, DType::f32, false), ref), "w, b, gamma, beta");
  }
}

TEST_CASE("conv_bn_max_pool: the same bits at 1 and 2 threads") {
  const Block k = random_block({75, 1, 28, 28}, 64, 7u);
  auto run = [&] { return first_order(k, DType::f32, true); };
  const auto one = at_threads(1, run), two = at_threads(2, run);
  for (size_t i = 0; i < one.size(); ++i) {
    CAPTURE(i);
    CHECK(tensor::max_abs_diff(one[i], two[i]) == 0);
  }
}

TEST_CASE("conv_bn_max_pool with relu: the same bits as relu(conv_bn_max_pool)") {
  const Block k = random_block({6, 1, 12, 12}, 8, 12u);
  Variable x(k.x), w(k.w.clone(), true), b(k.b.clone(), true), g(k.gamma.clone(), true), be(k.beta.clone(), true);
  Variable yf = ops::conv_bn_max_pool(x, w, b, g, be, kSame, 1e-5, true);
  Variable yc = ops::relu(ops::conv_bn_max_pool(x, w, b, g, be, kSame));
  CHECK(tensor::max_abs_diff(yf.data(), yc.data()) == 0);
  const Variable u(k.u);
  auto a = autograd::grad({ops::sum(ops::mul(yf, u))}, {w, b, g, be});
  auto c = autograd::grad({ops::sum(ops::mul(yc, u))}, {w, b, g, be});
  for (size_t i = 0; i < a.size(); ++i) {
    CAPTURE(i);
    CHECK(tensor::max_abs_diff(a[i].data(), c[i].data()) == 0);
  }
  // With create_graph (the composed backward): the gradient of |d<y, u>/dw|^2 with respect to gamma.
  auto second = [&](const Variable& y) {
    auto g1 = autograd::grad({ops::sum(ops::mul(y, u))}, {w}, {}, {.create_graph = true});
    return autograd::grad({ops::sum(ops::mul(g1[0], g1[0]))}, {g})[0];
  };
  CHECK(tensor::max_abs_diff(second(ops::conv_bn_max_pool(x, w, b, g, be, kSame, 1e-5, true)).data(),
                             second(ops::relu(ops::conv_bn_max_pool(x, w, b, g, be, kSame))).data()) == 0);
}

TEST_CASE("conv_bn_max_pool: other inputs take the composition, with the input's gradient") {
  std::mt19937 rng(9u);
  const Block k = random_block({4, 1, 8, 8}, 4, 8u);
  // An input that wants its gradient, two input channels, stride 2: each is the composition's op, the same
  // bits.
  for (int variant = 0; variant < 3; ++variant) {
    CAPTURE(variant);
    Tensor xt = variant == 1 ? random_tensor({4, 2, 8, 8}, rng, 0.0, 1.0, DType::f32) : k.x;
    Tensor wt = variant == 1 ? random_tensor({4, 2, 3, 3}, rng, -0.3, 0.3, DType::f32) : k.w;
    const ops::Conv2dParams p = variant == 2 ? ops::Conv2dParams{2, 1} : kSame;
    Variable x(xt.clone(), variant == 0), w(wt.clone(), true);
    Variable b(k.b), g(k.gamma), be(k.beta);
    Variable y = ops::conv_bn_max_pool(x, w, b, g, be, p);
    Variable yc = ops::batch_norm_max_pool(ops::conv2d(x, w, b, p), g, be);
    CHECK(tensor::max_abs_diff(y.data(), yc.data()) == 0);
    const Shape us = y.shape();
    Variable u(random_tensor(us, rng, -1.0, 1.0, DType::f32));
    auto a = autograd::grad({ops::sum(ops::mul(y, u))}, {variant == 0 ? x : w});
    auto c = autograd::grad({ops::sum(ops::mul(yc, u))}, {variant == 0 ? x : w});
    CHECK(tensor::max_abs_diff(a[0].data(), c[0].data()) == 0);
  }
}

}  // namespace
}  // namespace metafew::testing
