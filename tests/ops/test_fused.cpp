// Fused ops against the compositions they replace (Note [Batch norm and max-pool fused]).
#include "support/gradcheck.h"

namespace metafew::testing {
namespace {

// Values, argmax and first-order gradients (the fused backward kernel) of batch_norm_max_pool against
// max_pool2d(batch_norm(x)); and, with create_graph, the same second derivative.
void check_bn_pool(const Shape& xs, DType dtype, uint32_t seed) {
  std::mt19937 rng(seed);
  const int64_t c = xs[1];
  Tensor x = random_tensor(xs, rng, -2.0, 3.0, dtype);
  Tensor gamma = random_tensor({c}, rng, -1.5, 1.5, dtype), beta = random_tensor({c}, rng, -1.0, 1.0, dtype);
  const Shape ys{xs[0], c, xs[2] / 2, xs[3] / 2};
  Tensor u = random_tensor(ys, rng, -1.0, 1.0, dtype);
  // Relative error allowed: f32 sums of up to N*H*W terms in another order; f64 the same at its precision.
  const double tol = dtype == DType::f32 ? 2e-5 : 1e-12;

  Variable xf(x.clone(), true), gf(gamma.clone(), true), bf(beta.clone(), true);
  Variable xc(x.clone(), true), gc(gamma.clone(), true), bc(beta.clone(), true);
  Variable yf = ops::batch_norm_max_pool(xf, gf, bf);
  Variable yc = ops::max_pool2d(ops::batch_norm(xc, gc, bc), 2, 2);
  REQUIRE(yf.shape() == ys);
  CHECK(tensor::max_abs_diff(yf.data(), yc.data()) <= tol * (1 + tensor::max_abs(yc.data())));

  auto a = autograd::grad({ops::sum(ops::mul(yf, Variable(u)))}, {xf, gf, bf});
  auto b = autograd::grad({ops::sum(ops::mul(yc, Variable(u)))}, {xc, gc, bc});
  for (size_t i = 0; i < a.size(); ++i) {
    CAPTURE(i);
    const double scale = 1 + tensor::max_abs(b[i].data());
    CHECK(tensor::max_abs_diff(a[i].data(), b[i].data()) <= tol * scale);
  }

  // With create_graph: the gradient of |dL/dx|^2 with respect to gamma through both.
  auto second = [&](const Variable& y, const Variable& xv, const Variable& gv) {
    auto g1 = autograd::grad({ops::sum(ops::mul(y, Variable(u)))}, {xv}, {}, {.create_graph = true});
    return autograd::grad({ops::sum(ops::mul(g1[0], g1[0]))}, {gv})[0];
  };
  Variable sf = second(ops::batch_norm_max_pool(xf, gf, bf), xf, gf);
  Variable sc = second(ops::max_pool2d(ops::batch_norm(xc, gc, bc), 2, 2), xc, gc);
  CHECK(tensor::max_abs_diff(sf.data(), sc.data()) <= tol * (1 + tensor::max_abs(sc.data())));
}

TEST_CASE("batch_norm_max_pool matches max_pool2d(batch_norm) in values and derivatives") {
  check_bn_pool({6, 4, 14, 14}, DType::f32, 1);
  check_bn_pool({5, 3, 7, 7}, DType::f32, 2);  // odd sides: the last row and column are in no window
  check_bn_pool({2, 3, 3, 5}, DType::f64, 3);
  check_bn_pool({1, 2, 2, 2}, DType::f64, 4);
}

TEST_CASE("batch_norm_max_pool rejects inputs without a 2x2 window") {
  Variable x(Tensor::zeros({2, 3, 1, 4}), true), g(Tensor::full({3}, 1.0)), b(Tensor::zeros({3}));
  CHECK_THROWS_WITH_AS(ops::batch_norm_max_pool(x, g, b), doctest::Contains("smaller than the 2x2 window"), Error);
}

}  // namespace
}  // namespace metafew::testing
