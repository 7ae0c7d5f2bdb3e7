#pragma once
// Gradient checks in f64 against central differences.
//
// gradcheck: for a random cotangent u, the engine's J^T u must match sum_k u_k (f_k(x + h e_j) - f_k(x - h e_j)) / 2h.
// gradgradcheck: treats (x, u) -> J(x)^T u as a function (computed with create_graph) and checks its own
// vector-Jacobian product, i.e. the gradient of <J^T u, v> with respect to x and u, the same way.
//
// Tolerances (fixed, from reasoning about f64): with h = 1e-6 the central difference has truncation error
// ~h^2 |f'''| ~ 1e-12 and rounding error ~ eps_f64 |f| / h ~ 1e-10 for O(1) values; summed over a few hundred
// outputs this stays below 1e-7. A check passes when |analytic - numeric| <= 1e-6 + 1e-5 |numeric|.
#include <doctest/doctest.h>

#include <functional>
#include <random>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "tensor/kernels.h"
#include "ops/ops.h"

namespace metafew::testing {

using autograd::Variable;
using tensor::DType;
using tensor::Shape;
using tensor::Tensor;
using Fn = std::function<Variable(const std::vector<Variable>&)>;

constexpr double kStep = 1e-6;
constexpr double kAtol = 1e-6;
constexpr double kRtol = 1e-5;

inline Tensor random_tensor(const Shape& shape, std::mt19937& rng, double lo = -1.0, double hi = 1.0,
                            DType dtype = DType::f64) {
  std::uniform_real_distribution<double> d(lo, hi);
  std::vector<double> v(static_cast<size_t>(tensor::numel(shape)));
  for (double& x : v) x = d(rng);
  return Tensor::from_vector(v, shape, dtype);
}

// n values with pairwise gaps of 1/n and magnitudes of at least 0.25/n, in random order within [-0.5, 0.5]:
// far (relative to the finite-difference step) from relu's kink at 0 and from max-pool ties.
inline Tensor separated_tensor(const Shape& shape, std::mt19937& rng) {
  const int64_t n = tensor::numel(shape);
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = (static_cast<double>(i) - (n - 1) / 2.0 + 0.25) / n;
  std::shuffle(v.begin(), v.end(), rng);
  return Tensor::from_vector(v, shape, DType::f64);
}

inline double dot(const Tensor& a, const Tensor& b) {
  auto va = a.to_vector(), vb = b.to_vector();
  double s = 0;
  for (size_t i = 0; i < va.size(); ++i) s += va[i] * vb[i];
  return s;
}

inline std::vector<Variable> leaves(const std::vector<Tensor>& ts) {
  std::vector<Variable> vs;
  for (const Tensor& t : ts) vs.emplace_back(t.clone(), true);
  return vs;
}

// Numerical gradient of the scalar function s(x) with respect to every element of every tensor in xs.
inline std::vector<std::vector<double>> numeric_gradient(const std::function<double(std::vector<Tensor>&)>& s,
                                                         std::vector<Tensor> xs) {
  std::vector<std::vector<double>> out(xs.size());
  for (size_t i = 0; i < xs.size(); ++i) {
    double* p = xs[i].data<double>();
    for (int64_t j = 0; j < xs[i].numel(); ++j) {
      const double keep = p[j];
      p[j] = keep + kStep;
      const double up = s(xs);
      p[j] = keep - kStep;
      const double down = s(xs);
      p[j] = keep;
      out[i].push_back((up - down) / (2 * kStep));
    }
  }
  return out;
}

// Returns the number of mismatching elements; reports the first few when `report`.
inline int compare(const std::string& what, const std::vector<Variable>& analytic,
                   const std::vector<std::vector<double>>& numeric, bool report = true) {
  int total = 0;
  REQUIRE(analytic.size() == numeric.size());
  for (size_t i = 0; i < analytic.size(); ++i) {
    std::vector<double> a = analytic[i].defined() ? analytic[i].data().to_vector()
                                                  : std::vector<double>(numeric[i].size(), 0.0);
    REQUIRE(a.size() == numeric[i].size());
    int bad = 0;
    for (size_t j = 0; j < a.size(); ++j) {
      const double err = std::abs(a[j] - numeric[i][j]);
      if (err > kAtol + kRtol * std::abs(numeric[i][j])) {
        if (bad++ < 3 && report)
          FAIL_CHECK(what << ": input " << i << " element " << j << ": analytic " << a[j] << " numeric "
                          << numeric[i][j]);
      }
    }
    if (report) CHECK_MESSAGE(bad == 0, what << ": input " << i << " has " << bad << " mismatching elements");
    total += bad;
  }
  return total;
}

// First-order check of f at xs (f64 tensors); every input is differentiated.
inline int gradcheck(const std::string& name, const Fn& f, const std::vector<Tensor>& xs, uint32_t seed = 7,
                     bool report = true) {
  std::mt19937 rng(seed);
  std::vector<Variable> in = leaves(xs);
  Variable y = f(in);
  Tensor u = random_tensor(y.shape(), rng);
  auto analytic = autograd::grad({y}, in, {Variable(u)}, {.allow_unused = true});
  auto numeric = numeric_gradient(
      [&](std::vector<Tensor>& ts) {
        autograd::NoGradGuard ng;
        std::vector<Variable> vs;
        for (auto& t : ts) vs.emplace_back(t);
        return dot(f(vs).data(), u);
      },
      xs);
  return compare(name + " (gradcheck)", analytic, numeric, report);
}

// Second-order check: the gradient of <J(x)^T u, v> with respect to x and u.
inline int gradgradcheck(const std::string& name, const Fn& f, const std::vector<Tensor>& xs, uint32_t seed = 11,
                         bool report = true) {
  std::mt19937 rng(seed);
  Shape y_shape;
  {
    autograd::NoGradGuard ng;
    std::vector<Variable> vs;
    for (auto& t : xs) vs.emplace_back(t);
    y_shape = f(vs).shape();
  }
  Tensor u0 = random_tensor(y_shape, rng);
  std::vector<Tensor> vs_dir;
  for (const Tensor& x : xs) vs_dir.push_back(random_tensor(x.shape(), rng));

  // s(x, u) = sum_i <(J^T u)_i, v_i>, built with or without a graph.
  auto s_of = [&](const std::vector<Variable>& in, const Variable& u, bool create_graph) {
    Variable y = f(in);
    auto g = autograd::grad({y}, in, {u}, {.create_graph = create_graph, .allow_unused = true});
    Variable s;
    for (size_t i = 0; i < g.size(); ++i) {
      if (!g[i].defined()) continue;
      Variable term = ops::sum(ops::mul(g[i], Variable(vs_dir[i])));
      s = s.defined() ? ops::add(s, term) : term;
    }
    return s;
  };

  std::vector<Variable> in = leaves(xs);
  Variable u(u0.clone(), true);
  Variable s = s_of(in, u, true);
  REQUIRE(s.defined());
  std::vector<Variable> wrt = in;
  wrt.push_back(u);
  std::vector<Variable> analytic;
  if (s.requires_grad()) {
    analytic = autograd::grad({s}, wrt, {}, {.allow_unused = true});
  } else {
    analytic.resize(wrt.size());  // s does not depend on anything: all second derivatives are zero
  }

  std::vector<Tensor> all = xs;
  all.push_back(u0);
  auto numeric = numeric_gradient(
      [&](std::vector<Tensor>& ts) {
        std::vector<Variable> vin;
        for (size_t i = 0; i + 1 < ts.size(); ++i) vin.emplace_back(ts[i], true);
        Variable uu(ts.back());
        Variable sv = s_of(vin, uu, false);
        return sv.item();
      },
      all);
  return compare(name + " (gradgradcheck)", analytic, numeric, report);
}

}  // namespace metafew::testing
