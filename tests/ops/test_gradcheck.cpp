// First- and second-order gradient checks of every op, in f64 against central differences
// (tests/support/gradcheck.h holds the method and the tolerances).
#include "support/gradcheck.h"

namespace metafew::testing {
namespace {

using V = const std::vector<Variable>&;

struct Case {
  const char* name;
  Fn f;
  std::vector<Tensor> inputs;
};

std::vector<Case> cases() {
  std::mt19937 rng(2024);
  auto r = [&](const Shape& s, double lo = -1.0, double hi = 1.0) { return random_tensor(s, rng, lo, hi); };
  auto pos = [&](const Shape& s) { return random_tensor(s, rng, 0.5, 2.0); };
  Tensor labels = Tensor::from_indices({2, 0, 1, 2}, {4});
  Tensor rows = Tensor::from_indices({1, 0, 1, 2}, {4});
  std::vector<Case> c = {
      {"add (broadcast)", [](V x) { return ops::add(x[0], x[1]); }, {r({3, 4}), r({1, 4})}},
      {"add (channel broadcast)", [](V x) { return ops::add(x[0], x[1]); }, {r({2, 3, 2, 2}), r({1, 3, 1, 1})}},
      {"sub (broadcast)", [](V x) { return ops::sub(x[0], x[1]); }, {r({3, 1}), r({3, 4})}},
      {"mul (broadcast)", [](V x) { return ops::mul(x[0], x[1]); }, {r({2, 3, 4}), r({3, 1})}},
      {"div (broadcast)", [](V x) { return ops::div(x[0], x[1]); }, {r({3, 4}), pos({4})}},
      {"neg", [](V x) { return ops::neg(x[0]); }, {r({5})}},
      {"exp", [](V x) { return ops::exp(x[0]); }, {r({3, 2})}},
      {"log", [](V x) { return ops::log(x[0]); }, {pos({3, 2})}},
      {"pow 3", [](V x) { return ops::pow(x[0], 3.0); }, {r({4})}},
      {"pow -1.5", [](V x) { return ops::pow(x[0], -1.5); }, {pos({4})}},
      {"sqrt", [](V x) { return ops::sqrt(x[0]); }, {pos({2, 3})}},
      {"rsqrt", [](V x) { return ops::rsqrt(x[0]); }, {pos({2, 3})}},
      {"relu", [](V x) { return ops::mul(ops::relu(x[0]), x[0]); }, {separated_tensor({3, 4}, rng)}},
      {"relu_grad", [](V x) { return ops::mul(ops::relu_grad(x[0], x[1]), x[0]); },
       {r({3, 4}), separated_tensor({3, 4}, rng)}},
      {"add_scalar, mul_scalar", [](V x) { return ops::mul_scalar(ops::add_scalar(x[0], 0.3), -2.0); }, {r({3})}},
      {"sum_to", [](V x) { return ops::sum_to(ops::mul(x[0], x[0]), {1, 3, 1}); }, {r({2, 3, 4})}},
      {"broadcast_to", [](V x) { return ops::mul(ops::broadcast_to(x[0], {2, 3, 4}), x[1]); },
       {r({3, 1}), r({2, 3, 4})}},
      {"sum over axes", [](V x) { return ops::sum(ops::mul(x[0], x[0]), {0, 2}); }, {r({2, 3, 4})}},
      {"sum keepdim", [](V x) { return ops::sum(ops::exp(x[0]), {1}, true); }, {r({2, 3, 4})}},
      {"sum all", [](V x) { return ops::sum(ops::mul(x[0], x[0])); }, {r({2, 3})}},
      {"mean over axes", [](V x) { return ops::mean(ops::mul(x[0], x[0]), {1}); }, {r({2, 3, 4})}},
      {"reshape, flatten", [](V x) { return ops::mul(ops::flatten(ops::reshape(x[0], {2, 6})), x[1]); },
       {r({3, 4}), r({2, 6})}},
      {"transpose", [](V x) { return ops::mul(ops::transpose(x[0]), x[1]); }, {r({3, 4}), r({4, 3})}},
      {"permute", [](V x) { return ops::mul(ops::permute(x[0], {2, 0, 1}), x[1]); }, {r({2, 3, 4}), r({4, 2, 3})}},
      {"slice", [](V x) { return ops::mul(ops::slice(x[0], 1, 1, 3), x[1]); }, {r({2, 4, 3}), r({2, 2, 3})}},
      {"slice_scatter", [](V x) { return ops::mul(ops::slice_scatter(x[0], {2, 5}, 1, 2), x[1]); },
       {r({2, 2}), r({2, 5})}},
      {"concat", [](V x) { return ops::mul(ops::concat({x[0], x[1]}, 1), x[2]); },
       {r({2, 2}), r({2, 3}), r({2, 5})}},
      {"index_select (repeats)", [rows](V x) { return ops::mul(ops::index_select(x[0], 0, rows), x[1]); },
       {r({3, 2}), r({4, 2})}},
      {"index_add (repeats)", [rows](V x) { return ops::mul(ops::index_add(x[0], 0, rows, 3), x[1]); },
       {r({4, 2}), r({3, 2})}},
      {"matmul", [](V x) { return ops::matmul(x[0], x[1]); }, {r({3, 4}), r({4, 2})}},
      {"matmul a^T", [](V x) { return ops::matmul(x[0], x[1], true, false); }, {r({4, 3}), r({4, 2})}},
      {"matmul b^T", [](V x) { return ops::matmul(x[0], x[1], false, true); }, {r({3, 4}), r({2, 4})}},
      {"matmul a^T b^T", [](V x) { return ops::matmul(x[0], x[1], true, true); }, {r({4, 3}), r({2, 4})}},
      {"linear", [](V x) { return ops::linear(x[0], x[1], x[2]); }, {r({3, 4}), r({2, 4}), r({2})}},
      {"conv2d stride 1 pad 1 bias", [](V x) { return ops::conv2d(x[0], x[1], x[2], {1, 1}); },
       {r({2, 2, 4, 4}), r({3, 2, 3, 3}), r({3})}},
      {"conv2d stride 2 pad 0", [](V x) { return ops::conv2d(x[0], x[1], {2, 0}); },
       {r({1, 2, 5, 5}), r({2, 2, 3, 3})}},
      {"conv2d 1x1", [](V x) { return ops::conv2d(x[0], x[1], {1, 0}); }, {r({2, 3, 3, 3}), r({2, 3, 1, 1})}},
      {"conv2d_grad_input", [](V x) { return ops::conv2d_grad_input(x[0], x[1], {2, 2, 5, 5}, {2, 1}); },
       {r({2, 3, 3, 3}), r({3, 2, 3, 3})}},
      {"conv2d_grad_weight", [](V x) { return ops::conv2d_grad_weight(x[0], x[1], {3, 2, 3, 3}, {1, 1}); },
       {r({2, 2, 4, 4}), r({2, 3, 4, 4})}},
      {"max_pool2d 2/2", [](V x) { return ops::mul(ops::max_pool2d(x[0], 2, 2), x[1]); },
       {separated_tensor({2, 2, 4, 4}, rng), r({2, 2, 2, 2})}},
      {"max_pool2d 3/2 (overlapping)", [](V x) { return ops::mul(ops::max_pool2d(x[0], 3, 2), x[1]); },
       {separated_tensor({1, 2, 5, 5}, rng), r({1, 2, 2, 2})}},
      {"batch_norm NCHW", [](V x) { return ops::batch_norm(x[0], x[1], x[2]); },
       {r({3, 2, 2, 2}), r({2}, 0.5, 1.5), r({2})}},
      {"batch_norm_max_pool", [](V x) { return ops::mul(ops::batch_norm_max_pool(x[0], x[1], x[2]), x[3]); },
       {separated_tensor({3, 2, 4, 4}, rng), r({2}, 0.5, 1.5), r({2}), r({3, 2, 2, 2})}},
      {"batch_norm_max_pool odd sides, negative gamma",
       [](V x) { return ops::mul(ops::batch_norm_max_pool(x[0], x[1], x[2]), x[3]); },
       {separated_tensor({2, 2, 5, 3}, rng), r({2}, -1.5, -0.5), r({2}), r({2, 2, 2, 1})}},
      {"batch_norm NC", [](V x) { return ops::batch_norm(x[0], x[1], x[2]); }, {r({4, 3}), r({3}, 0.5, 1.5), r({3})}},
      {"batch_norm_grad_sums", [](V x) { return ops::batch_norm_grad_sums(x[0], x[1]); },
       {r({3, 2, 2, 2}), r({3, 2, 2, 2})}},
      {"batch_norm_grad_input", [](V x) { return ops::batch_norm_grad_input(x[0], x[1], x[2], x[3]); },
       {r({3, 2, 2, 2}), r({3, 2, 2, 2}), r({2}, 0.5, 1.5), r({2, 2})}},
      {"batch_norm_grad_input NC", [](V x) { return ops::batch_norm_grad_input(x[0], x[1], x[2], x[3]); },
       {r({4, 3}), r({4, 3}), r({3}, 0.5, 1.5), r({2, 3})}},
      {"batch_norm then its own gradient (third order)",
       [](V x) {
         // Also when the checker evaluates plain values (no graph, inputs not requiring grad).
         autograd::GradModeGuard on(true);
         Variable x0 = x[0].requires_grad() ? x[0] : Variable(x[0].data(), true);
         Variable y = ops::sum(ops::mul(ops::batch_norm(x0, x[1], x[2]), x[3]));
         return autograd::grad({y}, {x0}, {}, {.create_graph = true})[0];
       },
       {r({3, 2, 2, 2}), r({2}, 0.5, 1.5), r({2}), r({3, 2, 2, 2})}},
      {"batch_norm_max_pool with relu then its own gradient (third order)",
       [](V x) {
         autograd::GradModeGuard on(true);
         std::vector<Variable> in;
         for (const Variable& v : x) in.push_back(v.requires_grad() ? v : Variable(v.data(), true));
         Variable y = ops::sum(ops::mul(ops::batch_norm_max_pool(in[0], in[1], in[2], 1e-5, true), in[3]));
         auto d = autograd::grad({y}, {in[0], in[1]}, {}, {.create_graph = true});
         return ops::add(ops::sum(ops::mul(d[0], d[0])), ops::sum(ops::mul(d[1], in[2])));
       },
       {separated_tensor({2, 2, 4, 5}, rng), r({2}, 0.5, 1.5), r({2}), r({2, 2, 2, 2})}},
      {"log_softmax", [](V x) { return ops::log_softmax(x[0], 1); }, {r({3, 4})}},
      {"log_softmax axis 0", [](V x) { return ops::log_softmax(x[0], 0); }, {r({3, 4})}},
      {"softmax", [](V x) { return ops::softmax(x[0], -1); }, {r({3, 4})}},
      {"cross_entropy", [labels](V x) { return ops::cross_entropy(x[0], labels); }, {r({4, 3}, -2, 2)}},
      {"mse", [](V x) { return ops::mse(x[0], x[1]); }, {r({3, 2}), r({3, 2})}},
      {"pairwise_sq_distance", [](V x) { return ops::pairwise_sq_distance(x[0], x[1]); }, {r({3, 4}), r({2, 4})}},
      {"cosine_similarity", [](V x) { return ops::cosine_similarity(x[0], x[1]); }, {r({3, 4}), r({2, 4})}},
  };
  return c;
}

TEST_CASE("every op: first-order gradient check in f64") {
  for (const Case& c : cases()) {
    const std::string name = c.name;
    CAPTURE(name);
    gradcheck(c.name, c.f, c.inputs);
  }
}

TEST_CASE("every op: second-order gradient check (gradgradcheck) in f64") {
  for (const Case& c : cases()) {
    const std::string name = c.name;
    CAPTURE(name);
    gradgradcheck(c.name, c.f, c.inputs);
  }
}

TEST_CASE("the checks catch wrong backward rules") {
  std::mt19937 rng(3);
  std::vector<Tensor> x{random_tensor({4}, rng, 0.5, 1.0)};
  // First order: a rule that forgets the factor 2 of d(x^2)/dx.
  Fn wrong_first = [](V in) {
    return autograd::make_result(tensor::unary(tensor::UnaryOp::pow, in[0].data(), 2.0), "bad_square", {in[0]},
                                 [](const std::vector<Variable>& xs, const Variable&, const Variable& g,
                                    const std::vector<bool>&) { return std::vector<Variable>{ops::mul(g, xs[0])}; });
  };
  CHECK(gradcheck("bad_square", wrong_first, x, 7, false) == 4);
  // Second order: a first-order-correct rule that reads a detached input ("really first order").
  Fn wrong_second = [](V in) {
    return autograd::make_result(
        tensor::unary(tensor::UnaryOp::pow, in[0].data(), 2.0), "detached_square", {in[0]},
        [](const std::vector<Variable>& xs, const Variable&, const Variable& g, const std::vector<bool>&) {
          return std::vector<Variable>{ops::mul_scalar(ops::mul(g, xs[0].detach()), 2.0)};
        });
  };
  CHECK(gradcheck("detached_square", wrong_second, x, 7, false) == 0);
  CHECK(gradgradcheck("detached_square", wrong_second, x, 11, false) > 0);
}

}  // namespace
}  // namespace metafew::testing
