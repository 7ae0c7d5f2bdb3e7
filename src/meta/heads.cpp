#include "meta/heads.h"

#include <algorithm>
#include <cmath>
#include <deque>

#include "core/error.h"
#include "meta/algorithm.h"

// Note [Test-time heads]
// The pretraining baselines (Chen et al. 2019, SimpleShot, RFS) classify an episode with a simple head on frozen
// features, and a reviewer asks the same of any backbone: `eval` / `adapt --head centroid|logreg` (and the
// setting `head`, which meta-train's validation also uses) replace the algorithm's own head. The backbone is
// the checkpoint's meta-learned (or pretrained) parameters as they are: no inner steps; features are computed
// under the model's batch-norm mode like the metric methods' (support and query through embed_pair).
// - centroid: nearest centroid of L2-normalised features (SimpleShot's L2N), logits -|q - c|^2 with c the
//   mean of a class's unit-length support features (centroid_logits).
// - logreg: RFS's head. A multinomial logistic regression on the L2-normalised support features with
//   scikit-learn's objective, c * sum of cross-entropies + |W|^2 / 2 with the bias unpenalised (RFS: c = 1,
//   solver lbfgs, at most 1000 iterations), fitted per episode by L-BFGS (10 pairs, backtracking Armijo line
//   search) in double precision from zero, until the gradient's largest entry is below 1e-7 of its value at
//   zero or the objective stops decreasing at double precision (a tighter bound stalls on rounding: seen on
//   Omniglot episodes); the query logits are W q + b on the unit-length query features.
//   Only the support set is used, in one fixed order, so a query's label does not depend on the other queries
//   and the fit is the same at any thread count. A saved adapted model (adapt --save-adapted) keeps the
//   support set and refits at predict time (milliseconds), so it stores no extra tensor.

namespace metafew::meta {

TestHead parse_test_head(const std::string& name) {
  if (name == "own") return TestHead::own;
  if (name == "centroid") return TestHead::centroid;
  if (name == "logreg") return TestHead::logreg;
  throw Error(detail::concat("--head must be own, centroid or logreg, got '", name, "'"), ErrorKind::usage);
}

std::string test_head_name(TestHead head) {
  switch (head) {
    case TestHead::centroid: return "centroid";
    case TestHead::logreg: return "logreg";
    case TestHead::own: break;
  }
  return "own";
}

std::vector<double> l2_normalised_rows(const tensor::Tensor& f) {
  MF_CHECK(f.dim() == 2, "test-time head: features must be (N, D), got ", tensor::to_string(f.shape()));
  std::vector<double> v = f.to_vector();
  const int64_t n = f.shape()[0], d = f.shape()[1];
  for (int64_t i = 0; i < n; ++i) {
    double* row = v.data() + i * d;
    double sq = 0;
    for (int64_t j = 0; j < d; ++j) sq += row[j] * row[j];
    // A row of zeros (every ReLU off) stays zero: equally far from every unit-length centroid's direction.
    const double inv = sq > 0 ? 1.0 / std::sqrt(sq) : 0.0;
    for (int64_t j = 0; j < d; ++j) row[j] *= inv;
  }
  return v;
}

Variable centroid_logits(const Variable& fs, const Tensor& ys, const Variable& fq, int64_t ways) {
  auto unit = [](const Variable& f) { return Variable(Tensor::from_vector(l2_normalised_rows(f.data()), f.shape(), f.data().dtype())); };
  return protonet_logits(unit(fs), ys, unit(fq), ways);
}

namespace {

// The objective and its gradient at theta = (W row-major, then b).
double logreg_objective(const std::vector<double>& x, int64_t n, int64_t d, const std::vector<int64_t>& y, int64_t k,
                        double c, const std::vector<double>& theta, std::vector<double>& grad) {
  grad.assign(theta.size(), 0.0);
  const double* w = theta.data();
  const double* b = theta.data() + k * d;
  double* gw = grad.data();
  double* gb = grad.data() + k * d;
  std::vector<double> z(static_cast<size_t>(k));
  double f = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double* xi = x.data() + i * d;
    double top = -INFINITY;
    for (int64_t cl = 0; cl < k; ++cl) {
      double s = b[cl];
      const double* wc = w + cl * d;
      for (int64_t j = 0; j < d; ++j) s += wc[j] * xi[j];
      z[cl] = s;
      top = std::max(top, s);
    }
    double sum = 0;
    for (int64_t cl = 0; cl < k; ++cl) sum += std::exp(z[cl] - top);
    const double lse = top + std::log(sum);
    f += c * (lse - z[y[i]]);
    for (int64_t cl = 0; cl < k; ++cl) {
      const double r = c * (std::exp(z[cl] - lse) - (cl == y[i] ? 1.0 : 0.0));
      gb[cl] += r;
      double* gwc = gw + cl * d;
      for (int64_t j = 0; j < d; ++j) gwc[j] += r * xi[j];
    }
  }
  for (int64_t j = 0; j < k * d; ++j) {
    f += 0.5 * w[j] * w[j];
    gw[j] += w[j];
  }
  return f;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

double max_abs(const std::vector<double>& a) {
  double m = 0;
  for (double v : a) m = std::max(m, std::abs(v));
  return m;
}

}  // namespace

LogisticRegression fit_logistic_regression(const std::vector<double>& x, int64_t n, int64_t d,
                                           const std::vector<int64_t>& y, int64_t k, double c) {
  MF_CHECK(n >= 1 && d >= 1 && k >= 2 && static_cast<int64_t>(x.size()) == n * d && static_cast<int64_t>(y.size()) == n,
           "logistic regression: ", n, " examples of dimension ", d, " in ", k, " classes do not fit ", x.size(),
           " values and ", y.size(), " labels");
  MF_USAGE_CHECK(std::isfinite(c) && c > 0, "--logreg-c must be a positive number, got ", c);
  for (int64_t v : y) MF_CHECK(v >= 0 && v < k, "logistic regression: label ", v, " outside [0, ", k, ")");
  constexpr int kMaxIterations = 1000;  // RFS's max_iter
  constexpr size_t kPairs = 10;
  std::vector<double> theta(static_cast<size_t>(k * d + k), 0.0), grad, next(theta.size()), next_grad;
  double f = logreg_objective(x, n, d, y, k, c, theta, grad);
  // Relative to the gradient at zero: near 1e-7 of it the objective (a sum of n terms) stops changing at
  // double precision, so a tighter bound is rounding noise (the stall test below ends those fits).
  const double tolerance = 1e-7 * std::max(1.0, max_abs(grad));
  std::deque<std::vector<double>> s_hist, y_hist;
  std::deque<double> rho_hist;
  LogisticRegression out;
  out.classes = k;
  out.dim = d;
  int it = 0;
  for (; it < kMaxIterations; ++it) {
    if (max_abs(grad) <= tolerance) {
      out.converged = true;
      break;
    }
    // Two-loop recursion: direction = -H grad.
    std::vector<double> q = grad;
    std::vector<double> alpha(s_hist.size());
    for (size_t m = s_hist.size(); m-- > 0;) {
      alpha[m] = rho_hist[m] * dot(s_hist[m], q);
      for (size_t i = 0; i < q.size(); ++i) q[i] -= alpha[m] * y_hist[m][i];
    }
    const double gamma = s_hist.empty() ? 1.0 / std::max(1.0, max_abs(grad))
                                        : dot(s_hist.back(), y_hist.back()) / dot(y_hist.back(), y_hist.back());
    for (double& v : q) v *= gamma;
    for (size_t m = 0; m < s_hist.size(); ++m) {
      const double beta = rho_hist[m] * dot(y_hist[m], q);
      for (size_t i = 0; i < q.size(); ++i) q[i] += s_hist[m][i] * (alpha[m] - beta);
    }
    for (double& v : q) v = -v;
    double slope = dot(grad, q);
    if (!(slope < 0)) {  // not a descent direction (rounding): restart from steepest descent
      s_hist.clear();
      y_hist.clear();
      rho_hist.clear();
      for (size_t i = 0; i < q.size(); ++i) q[i] = -grad[i] / std::max(1.0, max_abs(grad));
      slope = dot(grad, q);
    }
    double step = 1.0, f_next = f;
    bool accepted = false;
    for (int tries = 0; tries < 60; ++tries) {
      for (size_t i = 0; i < theta.size(); ++i) next[i] = theta[i] + step * q[i];
      f_next = logreg_objective(x, n, d, y, k, c, next, next_grad);
      if (f_next <= f + 1e-4 * step * slope) {
        accepted = true;
        break;
      }
      step *= 0.5;
    }
    // No decrease left at double precision: as close as it gets.
    if (!accepted || f - f_next <= 1e-15 * std::max(1.0, std::abs(f))) {
      if (accepted) {
        theta.swap(next);
        grad.swap(next_grad);
        f = f_next;
      }
      out.converged = true;
      break;
    }
    std::vector<double> s(theta.size()), yv(theta.size());
    for (size_t i = 0; i < theta.size(); ++i) {
      s[i] = next[i] - theta[i];
      yv[i] = next_grad[i] - grad[i];
    }
    const double sy = dot(s, yv);
    if (sy > 1e-300) {
      if (s_hist.size() == kPairs) {
        s_hist.pop_front();
        y_hist.pop_front();
        rho_hist.pop_front();
      }
      s_hist.push_back(std::move(s));
      y_hist.push_back(std::move(yv));
      rho_hist.push_back(1.0 / sy);
    }
    theta.swap(next);
    grad.swap(next_grad);
    f = f_next;
  }
  out.iterations = it;
  out.objective = f;
  out.weight.assign(theta.begin(), theta.begin() + k * d);
  out.bias.assign(theta.begin() + k * d, theta.end());
  return out;
}

tensor::Tensor feature_head_logits(TestHead head, const Variable& fs, const Tensor& ys, const Variable& fq,
                                   int64_t ways, double logreg_c) {
  MF_CHECK(head != TestHead::own, "feature_head_logits: the algorithm's own head is not a feature head");
  if (head == TestHead::centroid) return centroid_logits(fs, ys, fq, ways).data();
  const int64_t n = fs.shape()[0], d = fs.shape()[1], q = fq.shape()[0];
  MF_CHECK(ys.numel() == n && fq.dim() == 2 && fq.shape()[1] == d, "logreg head: ", ys.numel(),
           " labels, support features ", tensor::to_string(fs.shape()), ", query features ",
           tensor::to_string(fq.shape()));
  std::vector<int64_t> labels(static_cast<size_t>(n));
  const int32_t* yp = ys.data<int32_t>();
  for (int64_t i = 0; i < n; ++i) labels[static_cast<size_t>(i)] = yp[i];
  const LogisticRegression lr = fit_logistic_regression(l2_normalised_rows(fs.data()), n, d, labels, ways, logreg_c);
  const std::vector<double> xq = l2_normalised_rows(fq.data());
  std::vector<double> logits(static_cast<size_t>(q * ways));
  for (int64_t i = 0; i < q; ++i)
    for (int64_t cl = 0; cl < ways; ++cl) {
      double s = lr.bias[static_cast<size_t>(cl)];
      for (int64_t j = 0; j < d; ++j) s += lr.weight[static_cast<size_t>(cl * d + j)] * xq[static_cast<size_t>(i * d + j)];
      logits[static_cast<size_t>(i * ways + cl)] = s;
    }
  return Tensor::from_vector(logits, {q, ways}, fq.data().dtype());
}

}  // namespace metafew::meta
