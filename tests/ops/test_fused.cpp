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

// Widths from 1 to 33 windows per row (rows of exactly 16 and 32 among them), odd sides; values on a coarse
// grid half of the time, so that windows hold ties.
std::vector<Tensor> pool_inputs(std::mt19937& rng) {
  std::vector<Tensor> xs;
  for (int64_t w : {2, 3, 5, 10, 11, 12, 13, 14, 15, 28, 29, 32, 33, 64, 67}) {
    for (int64_t h : {2, 3, 7}) {
      Tensor x = random_tensor({2, 3, h, w}, rng, -2.0, 3.0, DType::f32);
      if (w % 2 == 0) {
        float* p = x.data<float>();
        for (int64_t i = 0; i < x.numel(); ++i) p[i] = std::round(p[i]);
      }
      xs.push_back(x);
    }
  }
  return xs;
}

std::vector<int32_t> indices(const Tensor& t) { return {t.data<int32_t>(), t.data<int32_t>() + t.numel()}; }

TEST_CASE("2x2 max-pooling: f32 gives the f64 loop's maxima and positions, ties included") {
  std::mt19937 rng(5u);
  for (const Tensor& x : pool_inputs(rng)) {
    CAPTURE(tensor::to_string(x.shape()));
    const auto [y32, i32] = tensor::max_pool2d(x, 2, 2);
    const auto [y64, i64] = tensor::max_pool2d(x.to(DType::f64), 2, 2);
    CHECK(tensor::max_abs_diff(y32.to(DType::f64), y64) == 0);
    CHECK(indices(i32) == indices(i64));
  }
}

TEST_CASE("batch_norm_max_pool: the same bits as max_pool2d(batch_norm(x)) in f32") {
  std::mt19937 rng(6u);
  for (const Tensor& x : pool_inputs(rng)) {
    CAPTURE(tensor::to_string(x.shape()));
    const Tensor gamma = random_tensor({3}, rng, -1.5, 1.5, DType::f32), beta = random_tensor({3}, rng, -1.0, 1.0, DType::f32);
    Tensor selected;
    const auto [yf, idf] = tensor::batch_norm_max_pool(x, gamma, beta, 1e-5, nullptr, nullptr, &selected);
    const auto [yc, idc] = tensor::max_pool2d(tensor::batch_norm(x, gamma, beta, 1e-5), 2, 2);
    CHECK(tensor::max_abs_diff(yf, yc) == 0);
    CHECK(indices(idf) == indices(idc));
    // selected: x itself at each window's argmax (index within its plane).
    const int64_t planes = x.shape()[0] * x.shape()[1], plane = x.shape()[2] * x.shape()[3], per = yf.numel() / planes;
    bool same = true;
    for (int64_t q = 0; q < planes; ++q)
      for (int64_t o = 0; o < per; ++o)
        same = same && selected.data<float>()[q * per + o] == x.data<float>()[q * plane + idf.data<int32_t>()[q * per + o]];
    CHECK(same);
  }
}

// relu = true against ops::relu after the op: the same bits in values, first derivatives (the kernel's mask)
// and second derivatives (relu_grad in the create_graph path).
TEST_CASE("batch_norm_max_pool with relu: the same bits as relu(batch_norm_max_pool)") {
  for (DType dtype : {DType::f32, DType::f64}) {
    CAPTURE(tensor::dtype_name(dtype));
    std::mt19937 rng(11u);
    const Shape xs{4, 3, 7, 8};
    Tensor x = random_tensor(xs, rng, -2.0, 3.0, dtype);
    Tensor gamma = random_tensor({3}, rng, -1.5, 1.5, dtype), beta = random_tensor({3}, rng, -1.0, 1.0, dtype);
    Tensor u = random_tensor({4, 3, 3, 4}, rng, -1.0, 1.0, dtype);
    Variable xf(x.clone(), true), gf(gamma.clone(), true), bf(beta.clone(), true);
    Variable xc(x.clone(), true), gc(gamma.clone(), true), bc(beta.clone(), true);
    Variable yf = ops::batch_norm_max_pool(xf, gf, bf, 1e-5, true);
    Variable yc = ops::relu(ops::batch_norm_max_pool(xc, gc, bc));
    CHECK(tensor::max_abs_diff(yf.data(), yc.data()) == 0);
    auto a = autograd::grad({ops::sum(ops::mul(yf, Variable(u)))}, {xf, gf, bf});
    auto b = autograd::grad({ops::sum(ops::mul(yc, Variable(u)))}, {xc, gc, bc});
    for (size_t i = 0; i < a.size(); ++i) {
      CAPTURE(i);
      CHECK(tensor::max_abs_diff(a[i].data(), b[i].data()) == 0);
    }
    auto second = [&](const Variable& y, const Variable& xv, const Variable& gv) {
      auto g1 = autograd::grad({ops::sum(ops::mul(y, Variable(u)))}, {xv}, {}, {.create_graph = true});
      return autograd::grad({ops::sum(ops::mul(g1[0], g1[0]))}, {gv})[0];
    };
    Variable sf = second(ops::batch_norm_max_pool(xf, gf, bf, 1e-5, true), xf, gf);
    Variable sc = second(ops::relu(ops::batch_norm_max_pool(xc, gc, bc)), xc, gc);
    CHECK(tensor::max_abs_diff(sf.data(), sc.data()) == 0);
  }
}

TEST_CASE("batch_norm_leaky_relu: the same bits as leaky_relu(batch_norm(x)), to the second derivative") {
  // The fused op runs the same arithmetic as the two kernels and the same backward rules, reading the
  // output's sign for the input's: every value and derivative equal bit for bit, in f32 and f64.
  for (DType dtype : {DType::f32, DType::f64}) {
    std::mt19937 rng(2718u);
    const Shape xs{6, 5, 4, 3};
    Tensor x = random_tensor(xs, rng, -2.0, 3.0, dtype);
    Tensor gamma = random_tensor({5}, rng, -1.5, 1.5, dtype), beta = random_tensor({5}, rng, -1.0, 1.0, dtype);
    Tensor u = random_tensor(xs, rng, -1.0, 1.0, dtype);
    const double slope = 0.1, eps = 1e-5;
    Variable xf(x.clone(), true), gf(gamma.clone(), true), bf(beta.clone(), true);
    Variable xc(x.clone(), true), gc(gamma.clone(), true), bc(beta.clone(), true);
    Variable yf = ops::batch_norm_leaky_relu(xf, gf, bf, eps, slope);
    Variable yc = ops::leaky_relu(ops::batch_norm(xc, gc, bc, eps), slope);
    CHECK(tensor::max_abs_diff(yf.data(), yc.data()) == 0.0);
    auto a = autograd::grad({ops::sum(ops::mul(yf, Variable(u)))}, {xf, gf, bf});
    auto b = autograd::grad({ops::sum(ops::mul(yc, Variable(u)))}, {xc, gc, bc});
    for (size_t i = 0; i < a.size(); ++i) {
      CAPTURE(i);
      CHECK(tensor::max_abs_diff(a[i].data(), b[i].data()) == 0.0);
    }
    auto second = [&](const Variable& y, const Variable& xv, const Variable& gv) {
      auto g1 = autograd::grad({ops::sum(ops::mul(y, Variable(u)))}, {xv}, {}, {.create_graph = true});
      return autograd::grad({ops::sum(ops::mul(g1[0], g1[0]))}, {gv})[0];
    };
    Variable sf = second(ops::batch_norm_leaky_relu(xf, gf, bf, eps, slope), xf, gf);
    Variable sc = second(ops::leaky_relu(ops::batch_norm(xc, gc, bc, eps), slope), xc, gc);
    CHECK(tensor::max_abs_diff(sf.data(), sc.data()) == 0.0);
    CHECK(tensor::max_abs(sf.data()) > 0.0);
  }
  Variable x(Tensor::zeros({2, 3, 2, 2}), false), g(Tensor::zeros({3}), false);
  CHECK_THROWS_AS(ops::batch_norm_leaky_relu(x, g, g, 1e-5, 0.0), Error);
}

TEST_CASE("batch_norm_add_leaky_relu: the same bits as leaky_relu(bn(a) + bn(b)), to the second derivative") {
  for (DType dtype : {DType::f32, DType::f64}) {
    std::mt19937 rng(1618u);
    const Shape xs{4, 3, 5, 2};
    Tensor a = random_tensor(xs, rng, -2.0, 3.0, dtype), b = random_tensor(xs, rng, -1.0, 2.0, dtype);
    std::vector<Tensor> affine;
    for (int i = 0; i < 4; ++i) affine.push_back(random_tensor({3}, rng, -1.5, 1.5, dtype));
    Tensor u = random_tensor(xs, rng, -1.0, 1.0, dtype);
    const double slope = 0.1, eps = 1e-5;
    auto leaves = [&]() {
      std::vector<Variable> v{Variable(a.clone(), true), Variable(affine[0].clone(), true),
                              Variable(affine[1].clone(), true), Variable(b.clone(), true),
                              Variable(affine[2].clone(), true), Variable(affine[3].clone(), true)};
      return v;
    };
    const std::vector<Variable> f = leaves(), c = leaves();
    auto fused = [&](const std::vector<Variable>& v) {
      return ops::batch_norm_add_leaky_relu(v[0], v[1], v[2], v[3], v[4], v[5], eps, slope);
    };
    auto composed = [&](const std::vector<Variable>& v) {
      return ops::leaky_relu(ops::add(ops::batch_norm(v[0], v[1], v[2], eps), ops::batch_norm(v[3], v[4], v[5], eps)),
                             slope);
    };
    CHECK(tensor::max_abs_diff(fused(f).data(), composed(c).data()) == 0.0);
    auto ga = autograd::grad({ops::sum(ops::mul(fused(f), Variable(u)))}, f);
    auto gb = autograd::grad({ops::sum(ops::mul(composed(c), Variable(u)))}, c);
    for (size_t i = 0; i < ga.size(); ++i) {
      CAPTURE(i);
      CHECK(tensor::max_abs_diff(ga[i].data(), gb[i].data()) == 0.0);
    }
    auto second = [&](const Variable& y, const std::vector<Variable>& v) {
      auto g1 = autograd::grad({ops::sum(ops::mul(y, Variable(u)))}, {v[0], v[3]}, {}, {.create_graph = true});
      return autograd::grad({ops::sum(ops::add(ops::mul(g1[0], g1[0]), ops::mul(g1[1], g1[1])))}, {v[1], v[4]});
    };
    auto sf = second(fused(f), f), sc = second(composed(c), c);
    for (size_t i = 0; i < sf.size(); ++i) {
      CAPTURE(i);
      CHECK(tensor::max_abs_diff(sf[i].data(), sc[i].data()) == 0.0);
      CHECK(tensor::max_abs(sf[i].data()) > 0.0);
    }
  }
}

TEST_CASE("batch_norm_max_pool rejects inputs without a 2x2 window") {
  Variable x(Tensor::zeros({2, 3, 1, 4}), true), g(Tensor::full({3}, 1.0)), b(Tensor::zeros({3}));
  CHECK_THROWS_WITH_AS(ops::batch_norm_max_pool(x, g, b), doctest::Contains("smaller than the 2x2 window"), Error);
}

}  // namespace
}  // namespace metafew::testing
