// The outer optimisers' updates against the formulas of PyTorch's torch.optim.SGD (momentum, weight_decay) and
// Adam (weight_decay as an L2 term), written out here in double precision for three steps, and their state
// round trip (what a checkpoint keeps and --resume restores).
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "optim/optimizer.h"

namespace metafew::testing {
namespace {

using autograd::Variable;
using tensor::Tensor;

const std::vector<double> kStart{0.5, -1.25, 2.0};
// The gradients of three steps.
const std::vector<std::vector<double>> kGrads{{0.1, -0.2, 0.3}, {-0.4, 0.05, 0.25}, {0.2, 0.2, -0.6}};

std::vector<double> run(optim::Optimizer& opt, int steps) {
  std::vector<Variable> p{Variable(Tensor::from_vector(kStart, {3}), true)};
  for (int s = 0; s < steps; ++s) {
    std::vector<Tensor> g{Tensor::from_vector(kGrads[s], {3})};
    opt.step(p, g);
  }
  return p[0].data().to_vector();
}

TEST_CASE("optim: SGD with momentum and weight decay follows PyTorch's update") {
  const double lr = 0.1, mu = 0.9, wd = 0.01;
  std::vector<double> w = kStart, v(3, 0.0);
  for (int s = 0; s < 3; ++s)
    for (int j = 0; j < 3; ++j) {
      v[j] = mu * v[j] + kGrads[s][j] + wd * w[j];
      w[j] -= lr * v[j];
    }
  optim::Sgd sgd(lr, {}, mu, wd);
  const std::vector<double> got = run(sgd, 3);
  for (int j = 0; j < 3; ++j) CHECK(got[j] == doctest::Approx(w[j]).epsilon(1e-6));
  REQUIRE(sgd.state().size() == 1);
  const std::vector<double> velocity = sgd.state()[0].to_vector();
  for (int j = 0; j < 3; ++j) CHECK(velocity[j] == doctest::Approx(v[j]).epsilon(1e-6));

  // Two steps, the state saved and loaded into a fresh optimiser, one more step: the same as three at once.
  optim::Sgd first(lr, {}, mu, wd);
  std::vector<Variable> p{Variable(Tensor::from_vector(kStart, {3}), true)};
  for (int s = 0; s < 2; ++s) {
    std::vector<Tensor> g{Tensor::from_vector(kGrads[s], {3})};
    first.step(p, g);
  }
  optim::Sgd resumed(lr, {}, mu, wd);
  resumed.load_state(first.steps(), first.state());
  std::vector<Tensor> g{Tensor::from_vector(kGrads[2], {3})};
  resumed.step(p, g);
  CHECK(p[0].data().to_vector() == got);
  CHECK(resumed.steps() == 3);

  // No momentum: no state (checkpoints of plain SGD stay as they were), and a state is refused.
  optim::Sgd plain(lr, {}, 0, wd);
  run(plain, 1);
  CHECK(plain.state().empty());
  CHECK_THROWS_WITH(plain.load_state(1, sgd.state()), "sgd: a momentum state of 1 tensors for SGD without momentum");
}

TEST_CASE("optim: Adam's weight decay is an L2 term in the gradient (PyTorch's Adam, not AdamW)") {
  const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.1;
  std::vector<double> w = kStart, m(3, 0.0), v(3, 0.0);
  for (int s = 0; s < 3; ++s) {
    const double c1 = 1 - std::pow(b1, s + 1), c2 = 1 - std::pow(b2, s + 1);
    for (int j = 0; j < 3; ++j) {
      const double g = kGrads[s][j] + wd * w[j];
      m[j] = b1 * m[j] + (1 - b1) * g;
      v[j] = b2 * v[j] + (1 - b2) * g * g;
      w[j] -= lr * (m[j] / c1) / (std::sqrt(v[j] / c2) + eps);
    }
  }
  optim::Adam adam(lr, {}, b1, b2, eps, wd);
  const std::vector<double> got = run(adam, 3);
  for (int j = 0; j < 3; ++j) CHECK(got[j] == doctest::Approx(w[j]).epsilon(1e-5));
}

}  // namespace
}  // namespace metafew::testing
