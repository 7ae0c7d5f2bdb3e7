#include <doctest/doctest.h>

#include <cmath>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "ops/ops.h"

namespace metafew::testing {
namespace {

using autograd::Variable;
using tensor::Tensor;

Variable param(std::vector<double> v) {
  const int64_t n = static_cast<int64_t>(v.size());
  return Variable(Tensor::from_vector(v, {n}, tensor::DType::f64), true);
}

TEST_CASE("grad of a simple expression, and backward() accumulating into leaves") {
  Variable x = param({1.0, 2.0, 3.0});
  Variable y = ops::sum(ops::mul(x, x));  // dy/dx = 2x
  auto g = autograd::grad({y}, {x});
  CHECK(g[0].data().to_vector() == std::vector<double>{2.0, 4.0, 6.0});

  Variable z = ops::sum(ops::mul_scalar(x, 3.0));
  z.backward();
  z = ops::sum(ops::mul_scalar(x, 3.0));
  z.backward();
  CHECK(x.grad().data().to_vector() == std::vector<double>{6.0, 6.0, 6.0});
  x.zero_grad();
  CHECK_FALSE(x.grad().defined());
}

TEST_CASE("a variable used twice gets the sum of both paths") {
  Variable x = param({2.0});
  Variable y = ops::mul(ops::exp(x), x);  // d/dx = e^x (1 + x)
  auto g = autograd::grad({ops::sum(y)}, {x});
  CHECK(g[0].item() == doctest::Approx(std::exp(2.0) * 3.0));
}

TEST_CASE("second and third derivatives through create_graph") {
  Variable x = param({0.7});
  Variable y = ops::sum(ops::pow(x, 4.0));
  auto g1 = autograd::grad({y}, {x}, {}, {.create_graph = true});
  auto g2 = autograd::grad({ops::sum(g1[0])}, {x}, {}, {.create_graph = true});
  auto g3 = autograd::grad({ops::sum(g2[0])}, {x});
  CHECK(g1[0].item() == doctest::Approx(4 * std::pow(0.7, 3)));
  CHECK(g2[0].item() == doctest::Approx(12 * 0.49));
  CHECK(g3[0].item() == doctest::Approx(24 * 0.7));
}

TEST_CASE("grad mode: no graph is recorded when off, and the guard restores it") {
  Variable x = param({1.0});
  {
    autograd::NoGradGuard ng;
    Variable y = ops::mul(x, x);
    CHECK_FALSE(y.requires_grad());
    CHECK(y.is_leaf());
    {
      autograd::GradModeGuard on(true);
      CHECK(ops::mul(x, x).requires_grad());
    }
    CHECK_FALSE(autograd::grad_mode_enabled());
  }
  CHECK(autograd::grad_mode_enabled());
  CHECK(ops::mul(x, x).requires_grad());
}

TEST_CASE("without create_graph the gradient carries no graph") {
  Variable x = param({1.0, 2.0});
  auto g = autograd::grad({ops::sum(ops::mul(x, x))}, {x});
  CHECK_FALSE(g[0].requires_grad());
  auto g2 = autograd::grad({ops::sum(ops::mul(x, x))}, {x}, {}, {.create_graph = true});
  CHECK(g2[0].requires_grad());
}

TEST_CASE("retain_graph, freed graphs and allow_unused") {
  Variable x = param({1.0, 2.0});
  Variable w = param({5.0});
  Variable y = ops::sum(ops::mul(x, x));
  auto g = autograd::grad({y}, {x}, {}, {.retain_graph = true});
  auto again = autograd::grad({y}, {x});  // the graph was retained
  CHECK(again[0].data().to_vector() == g[0].data().to_vector());
  CHECK_THROWS_WITH_AS(autograd::grad({y}, {x}), doctest::Contains("already freed"), Error);

  Variable y2 = ops::sum(ops::mul(x, x));
  CHECK_THROWS_WITH_AS(autograd::grad({y2}, {x, w}, {}, {.retain_graph = true}), doctest::Contains("not used"),
                       Error);
  auto gu = autograd::grad({y2}, {x, w}, {}, {.allow_unused = true});
  CHECK(gu[0].defined());
  CHECK_FALSE(gu[1].defined());
}

TEST_CASE("grad_outputs: required for non-scalar outputs, checked for shape") {
  Variable x = param({1.0, 2.0});
  Variable y = ops::mul(x, x);
  CHECK_THROWS_WITH_AS(autograd::grad({y}, {x}, {}, {.retain_graph = true}),
                       doctest::Contains("only for a scalar output"), Error);
  Variable u(Tensor::from_vector({1.0, 10.0}, {2}, tensor::DType::f64));
  auto g = autograd::grad({y}, {x}, {u}, {.retain_graph = true});
  CHECK(g[0].data().to_vector() == std::vector<double>{2.0, 40.0});
  Variable bad(Tensor::from_vector({1.0, 2.0, 3.0}, {3}, tensor::DType::f64));
  CHECK_THROWS_WITH_AS(autograd::grad({y}, {x}, {bad}), doctest::Contains("grad_output 0 has shape [3]"), Error);
}

TEST_CASE("gradients with respect to intermediate variables and multiple outputs") {
  Variable x = param({3.0});
  Variable h = ops::mul(x, x);   // 9
  Variable y1 = ops::mul_scalar(h, 2.0);
  Variable y2 = ops::mul(h, x);  // x^3
  auto g = autograd::grad({ops::sum(y1), ops::sum(y2)}, {h, x});
  CHECK(g[0].item() == doctest::Approx(2.0 + 3.0));  // d(y1 + y2)/dh with x fixed
  CHECK(g[1].item() == doctest::Approx(4.0 * 3.0 + 27.0));
}

TEST_CASE("a gradient with respect to an intermediate leaves the graph above it usable") {
  // The first-order inner loop: fast = w - lr * g; a later grad(loss(fast), fast) without retain_graph must not
  // free the history of fast, which the outer gradient still walks.
  Variable w = param({1.0, -2.0});
  Variable fast = ops::mul_scalar(w, 0.5);
  Variable inner = ops::sum(ops::mul(fast, fast));
  auto g = autograd::grad({inner}, {fast});
  CHECK(g[0].data().to_vector() == std::vector<double>{1.0, -2.0});
  auto outer = autograd::grad({ops::sum(fast)}, {w});
  CHECK(outer[0].data().to_vector() == std::vector<double>{0.5, 0.5});
}

TEST_CASE("a deep graph is traversed and torn down without recursion") {
  // 200k chained ops would overflow the stack with recursive traversal or teardown.
  const int64_t before = autograd::live_nodes();
  {
    Variable x = param({1.0});
    Variable y = x;
    for (int i = 0; i < 200000; ++i) y = ops::add_scalar(y, 1e-6);
    auto g = autograd::grad({ops::sum(y)}, {x}, {}, {.retain_graph = true});
    CHECK(g[0].item() == doctest::Approx(1.0));
    CHECK(autograd::live_nodes() - before >= 200000);
  }
  CHECK(autograd::live_nodes() == before);
}

TEST_CASE("errors name the problem") {
  Variable c(Tensor::from_vector({1.0}, {1}, tensor::DType::f64));
  Variable x = param({1.0});
  CHECK_THROWS_WITH_AS(autograd::grad({ops::sum(c)}, {x}), doctest::Contains("does not require grad"), Error);
  CHECK_THROWS_WITH_AS(ops::add(param({1.0, 2.0}), param({1.0, 2.0, 3.0})), doctest::Contains("do not broadcast"),
                       Error);
  CHECK_THROWS_WITH_AS(ops::matmul(Variable(Tensor::zeros({2, 3})), Variable(Tensor::zeros({2, 3}))),
                       doctest::Contains("inner extents differ"), Error);
}

}  // namespace
}  // namespace metafew::testing
