// The logistic-regression head (Note [Test-time heads] in src/meta/heads.cpp) against solutions computed
// without it: a closed-form-by-symmetry problem solved by bisection, and PyTorch's L-BFGS on a small
// multinomial problem (tests/meta/logreg_reference.py); and the optimality condition checked by code of the
// test's own.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "meta/heads.h"

namespace metafew::testing {
namespace {

using autograd::Variable;
using tensor::DType;
using tensor::Tensor;

// The gradient of c * sum CE + |W|^2/2, written here independently of heads.cpp (probabilities first, then
// the gradient), for the optimality check.
std::vector<double> gradient(const std::vector<double>& x, int64_t n, int64_t d, const std::vector<int64_t>& y,
                             int64_t k, double c, const meta::LogisticRegression& lr) {
  std::vector<double> g(static_cast<size_t>(k * d + k), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    std::vector<double> p(static_cast<size_t>(k));
    double total = 0;
    for (int64_t a = 0; a < k; ++a) {
      double z = lr.bias[a];
      for (int64_t j = 0; j < d; ++j) z += lr.weight[a * d + j] * x[i * d + j];
      p[a] = std::exp(z);
      total += p[a];
    }
    for (int64_t a = 0; a < k; ++a) {
      const double r = c * (p[a] / total - (a == y[i]));
      for (int64_t j = 0; j < d; ++j) g[a * d + j] += r * x[i * d + j];
      g[k * d + a] += r;
    }
  }
  for (int64_t j = 0; j < k * d; ++j) g[j] += lr.weight[j];
  return g;
}

TEST_CASE("meta: logistic regression head, two mirrored points (solution by symmetry and bisection)") {
  // x = -1 is class 0, x = +1 class 1, c = 1.5. By symmetry b = 0 and W = (-w, w), so the objective is
  // 2c log(1 + exp(-2w)) + w^2 and its minimum solves w = 2c / (1 + exp(2w)).
  const double c = 1.5;
  double lo = 0, hi = 10;
  for (int i = 0; i < 200; ++i) {
    const double mid = 0.5 * (lo + hi);
    (mid < 2 * c / (1 + std::exp(2 * mid)) ? lo : hi) = mid;
  }
  const double w = 0.5 * (lo + hi);
  const meta::LogisticRegression lr = meta::fit_logistic_regression({-1.0, 1.0}, 2, 1, {0, 1}, 2, c);
  CHECK(lr.converged);
  CHECK(lr.weight[0] == doctest::Approx(-w).epsilon(1e-9));
  CHECK(lr.weight[1] == doctest::Approx(w).epsilon(1e-9));
  CHECK(std::abs(lr.bias[0]) < 1e-9);
  CHECK(std::abs(lr.bias[1]) < 1e-9);
  CHECK(lr.objective == doctest::Approx(2 * c * std::log1p(std::exp(-2 * w)) + w * w).epsilon(1e-12));
}

TEST_CASE("meta: logistic regression head equals PyTorch's L-BFGS solution on a 3-class problem") {
  // tests/meta/logreg_reference.py: the same 7 points, labels and c = 2, solved in double precision by
  // torch.optim.LBFGS with a strong Wolfe line search (its final gradient 4.4e-8), bias shifted to sum 0.
  const std::vector<double> x{1.0, 0.2, -0.5, 0.8, -0.1, 0.3, -0.4, 1.1, 0.0, 0.1, 0.9, 0.7,
                              -0.6, -0.3, 1.2, 0.2, -0.8, 0.9, 0.5, 0.5, 0.5};
  const std::vector<int64_t> y{0, 0, 1, 1, 2, 2, 1};
  const std::vector<double> weight{0.954688936016333,  -0.3063598748321918, -0.8423614618300834,
                                   -0.2692940206017109, 1.3218062815487541,  0.10095177087231735,
                                   -0.685394915414622,  -1.0154464067165623, 0.7414096909577661};
  const std::vector<double> bias{0.07854765338513853, 0.1485749883570774, -0.22712264174221594};
  const meta::LogisticRegression lr = meta::fit_logistic_regression(x, 7, 3, y, 3, 2.0);
  CHECK(lr.converged);
  CHECK(lr.iterations < 100);
  CHECK(lr.objective == doctest::Approx(7.579888198730142).epsilon(1e-12));
  for (size_t i = 0; i < weight.size(); ++i) {
    CAPTURE(i);
    CHECK(std::abs(lr.weight[i] - weight[i]) < 1e-6);
  }
  for (size_t i = 0; i < bias.size(); ++i) {
    CAPTURE(i);
    CHECK(std::abs(lr.bias[i] - bias[i]) < 1e-6);
  }
  // Optimality by the test's own gradient: every entry below 1e-7 of the largest at zero (the solver's rule).
  meta::LogisticRegression zero = lr;
  std::fill(zero.weight.begin(), zero.weight.end(), 0.0);
  std::fill(zero.bias.begin(), zero.bias.end(), 0.0);
  double at_zero = 0;
  for (double g : gradient(x, 7, 3, y, 3, 2.0, zero)) at_zero = std::max(at_zero, std::abs(g));
  CHECK(at_zero > 1);
  for (double g : gradient(x, 7, 3, y, 3, 2.0, lr)) CHECK(std::abs(g) <= 1e-7 * at_zero);
}

TEST_CASE("meta: logreg head logits are W q + b on unit-length features, each query on its own") {
  // Support features of two classes; scaling a support row does not change the fit (rows are normalised).
  const std::vector<double> support{2, 0, 0, 3, 0, 0.5, -1, -1};
  Variable fs(Tensor::from_vector(support, {4, 2}, DType::f64));
  std::vector<double> scaled = support;
  scaled[0] = 7;
  Variable fs_scaled(Tensor::from_vector(scaled, {4, 2}, DType::f64));
  Tensor ys = Tensor::from_indices({0, 0, 1, 1}, {4});
  Variable fq(Tensor::from_vector({1, 0.2, -0.3, 1, 0, 0}, {3, 2}, DType::f64));
  const std::vector<double> all = meta::feature_head_logits(meta::TestHead::logreg, fs, ys, fq, 2, 1.0).to_vector();
  CHECK(meta::feature_head_logits(meta::TestHead::logreg, fs_scaled, ys, fq, 2, 1.0).to_vector() == all);
  // The fit on the normalised support rows, applied by hand to the normalised first query.
  const std::vector<double> unit = meta::l2_normalised_rows(fs.data());
  const meta::LogisticRegression lr = meta::fit_logistic_regression(unit, 4, 2, {0, 0, 1, 1}, 2, 1.0);
  const double n0 = std::sqrt(1 + 0.04);
  for (int a = 0; a < 2; ++a)
    CHECK(all[a] == doctest::Approx(lr.weight[a * 2] / n0 + lr.weight[a * 2 + 1] * 0.2 / n0 + lr.bias[a]).epsilon(1e-12));
  // A query's logits do not depend on the other queries; the zero row gets the bias alone.
  const std::vector<double> queries = fq.data().to_vector();
  for (int i = 0; i < 3; ++i) {
    Variable one(Tensor::from_vector({queries[2 * i], queries[2 * i + 1]}, {1, 2}, DType::f64));
    const std::vector<double> alone = meta::feature_head_logits(meta::TestHead::logreg, fs, ys, one, 2, 1.0).to_vector();
    CHECK(alone[0] == all[2 * i]);
    CHECK(alone[1] == all[2 * i + 1]);
  }
  CHECK(all[4] == lr.bias[0]);
  CHECK(all[5] == lr.bias[1]);
}

TEST_CASE("meta: --head names its values") {
  CHECK(meta::parse_test_head("logreg") == meta::TestHead::logreg);
  CHECK(meta::test_head_name(meta::parse_test_head("centroid")) == "centroid");
  try {
    meta::parse_test_head("svm");
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()) == "--head must be own, centroid or logreg, got 'svm'");
  }
  CHECK_THROWS_WITH(meta::fit_logistic_regression({1.0, -1.0}, 2, 1, {0, 1}, 2, 0.0),
                    "--logreg-c must be a positive number, got 0");
}

}  // namespace
}  // namespace metafew::testing
