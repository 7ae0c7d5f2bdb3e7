#pragma once
// Test-time heads on frozen features (Note [Test-time heads] in heads.cpp): any checkpoint with a backbone can
// classify an episode by the nearest centroid of its L2-normalised support features (SimpleShot) or by a
// logistic regression fitted to them (RFS), instead of its algorithm's own head.
#include <cstdint>
#include <string>
#include <vector>

#include "autograd/variable.h"

namespace metafew::meta {

// own: the algorithm's head (the default); centroid: nearest centroid of L2-normalised features; logreg:
// multinomial logistic regression on L2-normalised features.
enum class TestHead { own, centroid, logreg };
// "own" / "centroid" / "logreg"; a usage error naming the accepted values for anything else.
TestHead parse_test_head(const std::string& name);
std::string test_head_name(TestHead head);

// A fitted multinomial logistic regression: logits z_c = weight[c] . x + bias[c].
struct LogisticRegression {
  int64_t classes = 0, dim = 0;
  std::vector<double> weight;  // (classes, dim), row-major
  std::vector<double> bias;    // (classes), summing to 0 (the softmax does not see a shift of every bias)
  int64_t iterations = 0;      // L-BFGS iterations taken
  // The gradient's largest entry fell below 1e-7 of its value at zero, or the objective stopped decreasing
  // at double precision; false when the 1000 iterations ran out first.
  bool converged = false;
  double objective = 0;
};

// Minimises c * sum_i cross-entropy(z(x_i), y_i) + |weight|^2 / 2 (scikit-learn's LogisticRegression with
// penalty l2 and inverse strength C = c: the bias is not penalised) by L-BFGS from zero, in double precision
// and in a fixed order, so the result depends on the inputs only. x: (n, dim) row-major; y in [0, classes).
LogisticRegression fit_logistic_regression(const std::vector<double>& x, int64_t n, int64_t dim,
                                           const std::vector<int64_t>& y, int64_t classes, double c);

// Rows of f scaled to unit length (a row of zeros stays zero), in double precision.
std::vector<double> l2_normalised_rows(const tensor::Tensor& f);

// The query logits (Q, ways) of a test-time head (centroid or logreg) from support and query features.
tensor::Tensor feature_head_logits(TestHead head, const autograd::Variable& support_features,
                                   const tensor::Tensor& support_y, const autograd::Variable& query_features,
                                   int64_t ways, double logreg_c);

}  // namespace metafew::meta
