// The fused rules of batch norm's backward ops (Note [Batch norm double backward, fused], ops/norm.cpp): with no
// graph recorded, the rules of batch_norm_grad_input and batch_norm_grad_sums run one kernel each; with
// create_graph they are the composition of differentiable ops. The two must give the same values: in f64 to
// rounding, in f32 at least as accurately as the composition (both against the f64 composition).
// (gradcheck / gradgradcheck in test_gradcheck.cpp hold both forms to central differences.)
#include "support/fused_accuracy.h"
#include "support/gradcheck.h"

namespace metafew::testing {
namespace {

struct RuleInputs {
  Tensor g, x, gamma, sums, v, u;  // v: cotangent of batch_norm_grad_input's output; u: of the sums (2, C)
};

RuleInputs random_inputs(const Shape& shape, uint32_t seed, bool true_sums) {
  std::mt19937 rng(seed);
  const int64_t c = shape[1];
  RuleInputs k;
  k.g = random_tensor(shape, rng, -1.0, 1.0, DType::f32);
  k.x = random_tensor(shape, rng, -0.7, 1.9, DType::f32);  // off-centre, as a convolution's output
  k.gamma = random_tensor({c}, rng, -0.5, 1.5, DType::f32);
  k.v = random_tensor(shape, rng, -1.0, 1.0, DType::f32);
  k.u = random_tensor({2, c}, rng, -1.0, 1.0, DType::f32);
  if (true_sums) {  // as in training: the sums are S(g, x)
    autograd::NoGradGuard ng;
    k.sums = ops::batch_norm_grad_sums(Variable(k.g), Variable(k.x)).data();
  } else {
    k.sums = random_tensor({2, c}, rng, -3.0, 3.0, DType::f32);
  }
  return k;
}

std::vector<Tensor> as_f64(const std::vector<Variable>& vs) {
  std::vector<Tensor> out;
  for (const Variable& v : vs) out.push_back(v.data().to(DType::f64));
  return out;
}

// Gradients of <batch_norm_grad_input(g, x, gamma, sums), v> for the inputs that require them (`want`: g, x,
// gamma, sums), by the composition (create_graph) or the fused rule.
std::vector<Tensor> input_rule(const RuleInputs& k, DType dt, bool composed, std::vector<bool> want = {1, 1, 1, 1}) {
  Variable g(k.g.to(dt), want[0]), x(k.x.to(dt), want[1]), gam(k.gamma.to(dt), want[2]),
      s(k.sums.to(dt), want[3]);
  Variable y = ops::batch_norm_grad_input(g, x, gam, s);
  std::vector<Variable> wrt;
  for (size_t i = 0; i < 4; ++i)
    if (want[i]) wrt.push_back(std::vector<Variable>{g, x, gam, s}[i]);
  return as_f64(autograd::grad({y}, wrt, {Variable(k.v.to(dt))}, {.create_graph = composed}));
}

// Gradients of <batch_norm_grad_sums(g, x), u> for g and x.
std::vector<Tensor> sums_rule(const RuleInputs& k, DType dt, bool composed, std::vector<bool> want = {1, 1}) {
  Variable g(k.g.to(dt), want[0]), x(k.x.to(dt), want[1]);
  Variable y = ops::batch_norm_grad_sums(g, x);
  std::vector<Variable> wrt;
  if (want[0]) wrt.push_back(g);
  if (want[1]) wrt.push_back(x);
  return as_f64(autograd::grad({y}, wrt, {Variable(k.u.to(dt))}, {.create_graph = composed}));
}

void check_close_f64(const std::vector<Tensor>& fused, const std::vector<Tensor>& composed) {
  REQUIRE(fused.size() == composed.size());
  const std::vector<double> e = relative_errors(fused, composed);
  for (size_t i = 0; i < e.size(); ++i) {
    CAPTURE(i);
    CHECK(e[i] < 1e-12);
  }
}

const std::vector<Shape> kShapes{{3, 4, 5, 5}, {2, 3, 1, 7}, {6, 3}, {20, 64, 7, 7}};

TEST_CASE("batch_norm_grad_input's fused rule equals the composition in f64") {
  uint32_t seed = 1;
  for (const Shape& shape : kShapes) {
    for (bool true_sums : {false, true}) {
      CAPTURE(tensor::to_string(shape));
      CAPTURE(true_sums);
      const RuleInputs k = random_inputs(shape, seed++, true_sums);
      check_close_f64(input_rule(k, DType::f64, false), input_rule(k, DType::f64, true));
      // Subsets of the inputs (the rule forms dg and dx only when asked).
      for (std::vector<bool> want : {std::vector<bool>{0, 1, 0, 0}, {1, 0, 1, 0}, {0, 0, 1, 1}}) {
        CAPTURE(want[0]);
        CAPTURE(want[1]);
        check_close_f64(input_rule(k, DType::f64, false, want), input_rule(k, DType::f64, true, want));
      }
    }
  }
}

TEST_CASE("batch_norm_grad_sums's fused rule equals the composition in f64") {
  uint32_t seed = 100;
  for (const Shape& shape : kShapes) {
    CAPTURE(tensor::to_string(shape));
    const RuleInputs k = random_inputs(shape, seed++, false);
    check_close_f64(sums_rule(k, DType::f64, false), sums_rule(k, DType::f64, true));
    check_close_f64(sums_rule(k, DType::f64, false, {1, 0}), sums_rule(k, DType::f64, true, {1, 0}));
    check_close_f64(sums_rule(k, DType::f64, false, {0, 1}), sums_rule(k, DType::f64, true, {0, 1}));
  }
}

TEST_CASE("the fused rules of a pooled gradient equal the full-size rules of the scattered gradient") {
  // Note [Pooled batch norm backward]: g 2x2-pooled with its argmax index stands for pool_scatter(g); dg comes
  // back pooled (gathered at the index). Odd sides leave the last row / column out of every window.
  std::mt19937 rng(300);
  for (const Shape& shape : {Shape{3, 4, 6, 6}, Shape{2, 3, 5, 7}}) {
    CAPTURE(tensor::to_string(shape));
    const Shape pooled{shape[0], shape[1], shape[2] / 2, shape[3] / 2};
    const Tensor x = random_tensor(shape, rng, -0.7, 1.9);
    const Tensor idx = tensor::max_pool2d(random_tensor(shape, rng), 2, 2).second;
    const Tensor gz = random_tensor(pooled, rng), v = random_tensor(shape, rng);
    const Tensor gamma = random_tensor({shape[1]}, rng, -0.5, 1.5), u = random_tensor({2, shape[1]}, rng);
    const Tensor gfull = tensor::pool_scatter(gz, idx, shape);
    Tensor mean, invstd;
    tensor::batch_norm_stats(x, 1e-5, &mean, &invstd);
    const Tensor sums = tensor::batch_norm_grad_sums(gfull, x, mean, invstd);
    const auto p = tensor::batch_norm_grad_input_rule(v, gz, x, gamma, mean, invstd, sums, true, true, &idx);
    const auto f = tensor::batch_norm_grad_input_rule(v, gfull, x, gamma, mean, invstd, sums, true, true);
    check_close_f64({p.dg, p.dx, p.dgamma, p.dsums},
                    {tensor::pool_gather(f.dg, idx, pooled), f.dx, f.dgamma, f.dsums});
    const auto [pdg, pdx] = tensor::batch_norm_grad_sums_rule(u, gz, x, mean, invstd, sums, true, true, &idx);
    const auto [fdg, fdx] = tensor::batch_norm_grad_sums_rule(u, gfull, x, mean, invstd, sums, true, true);
    check_close_f64({pdg, pdx}, {tensor::pool_gather(fdg, idx, pooled), fdx});
  }
}

TEST_CASE("the fused batch-norm rules in f32 are as accurate as the composition, at any thread count") {
  // conv-4's first layer (64 channels at 28x28, 5 images) and its second (20 images at 14x14).
  uint32_t seed = 200;
  for (const Shape& shape : {Shape{5, 64, 28, 28}, Shape{20, 64, 14, 14}}) {
    CAPTURE(tensor::to_string(shape));
    const RuleInputs k = random_inputs(shape, seed++, true);
    const std::vector<Tensor> ref_b = input_rule(k, DType::f64, true);
    check_as_accurate(relative_errors(input_rule(k, DType::f32, false), ref_b),
                      relative_errors(input_rule(k, DType::f32, true), ref_b), "dg, dx, dgamma, dsums");
    const std::vector<Tensor> ref_s = sums_rule(k, DType::f64, true);
    check_as_accurate(relative_errors(sums_rule(k, DType::f32, false), ref_s),
                      relative_errors(sums_rule(k, DType::f32, true), ref_s), "dg, dx");
    const auto one = at_threads(1, [&] { return input_rule(k, DType::f32, false); });
    const auto two = at_threads(2, [&] { return input_rule(k, DType::f32, false); });
    for (size_t i = 0; i < one.size(); ++i) CHECK(tensor::max_abs_diff(one[i], two[i]) == 0.0);
    const auto s1 = at_threads(1, [&] { return sums_rule(k, DType::f32, false); });
    const auto s2 = at_threads(2, [&] { return sums_rule(k, DType::f32, false); });
    for (size_t i = 0; i < s1.size(); ++i) CHECK(tensor::max_abs_diff(s1[i], s2[i]) == 0.0);
  }
}

}  // namespace
}  // namespace metafew::testing
