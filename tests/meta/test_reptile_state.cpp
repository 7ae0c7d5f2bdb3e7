// Reptile's carried inner Adam state (Note [Reptile's inner optimiser state]): the fold rule, its agreement
// with an independent computation of Adam's second moments, and that carrying changes adaptation.
#include <doctest/doctest.h>

#include <cstring>

#include "meta/trainer.h"
#include "support/gradcheck.h"

namespace metafew::testing {
namespace {

// 1-40-... MLP regression tasks of `n` points: every inner mini-batch is the whole support set, so with n = 1
// the inner loop sees exactly the gradient computed below by hand.
meta::Task point_task(std::mt19937& rng, int64_t n, uint64_t seed) {
  meta::Task t;
  t.support_x = random_tensor({n, 1}, rng, -1, 1, DType::f32);
  t.support_y = random_tensor({n, 1}, rng, -1, 1, DType::f32);
  t.query_x = random_tensor({n, 1}, rng, -1, 1, DType::f32);
  t.query_y = random_tensor({n, 1}, rng, -1, 1, DType::f32);
  t.ways = 0;
  t.seed = seed;
  return t;
}

std::unique_ptr<meta::Algorithm> reptile_mlp(bool carry, int64_t inner_steps) {
  nn::ModelConfig mc;
  mc.arch = "mlp";
  mc.hidden = {8, 8};
  mc.outputs = 1;
  meta::AlgoConfig ac;
  ac.algo = "reptile";
  ac.inner_steps = inner_steps;
  ac.inner_lr = 1e-3;
  ac.carry_inner_state = carry;
  core::Rng init(5);
  return meta::make_algorithm(nn::Model(mc), ac, init);
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::memcmp(a.raw_data(), b.raw_data(),
                     static_cast<size_t>(a.numel()) * tensor::dtype_size(a.dtype())) == 0;
}

int32_t steps_of(const meta::Algorithm& a) {
  return a.state().back().data<int32_t>()[0];
}

TEST_CASE("reptile: the carried state is a second moment per parameter and a step count, first zero") {
  auto carry = reptile_mlp(true, 1);
  const size_t n = carry->parameters().size();
  REQUIRE(carry->state().size() == n + 1);
  CHECK(carry->state_names()[0] == "inner_adam.v." + carry->parameter_names()[0]);
  CHECK(carry->state_names()[n] == "inner_adam.steps");
  for (size_t i = 0; i < n; ++i) CHECK(carry->state()[i].shape() == carry->parameters()[i].shape());
  CHECK(steps_of(*carry) == 0);
  CHECK(reptile_mlp(false, 1)->state().empty());
}

TEST_CASE("reptile: the carried state after a meta-step is the task-order mean of the moments with the common step count") {
  auto a = reptile_mlp(true, 1);
  const size_t n = a->parameters().size();
  // Task k holds v = (k + 1) + j at element j: the mean over 4 tasks is 2.5 + j, exact in f32. The trainer
  // forms it (meta::reduce_in_task_order, Note [Task-order reduction]) with the step count kept.
  std::vector<meta::TaskShare> shares(4);
  for (int k = 0; k < 4; ++k) {
    for (size_t i = 0; i < n; ++i) {
      Tensor v = Tensor::zeros(a->parameters()[i].shape());
      for (int64_t j = 0; j < v.numel(); ++j) v.data<float>()[j] = static_cast<float>(k + 1 + j);
      shares[k].tensors.push_back(v);
    }
    shares[k].tensors.push_back(Tensor::from_indices({7}, {1}));
  }
  a->set_state(meta::reduce_in_task_order(shares, 0, 4, a->state(), a->state_names(), 0).tensors);
  for (size_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < a->state()[i].numel(); ++j)
      CHECK(a->state()[i].data<float>()[j] == static_cast<float>(2.5 + static_cast<double>(j)));
  CHECK(steps_of(*a) == 7);

  // Tasks that ended at different step counts, or a state of the wrong size, are refused.
  shares[2].tensors.back() = Tensor::from_indices({8}, {1});
  CHECK_THROWS_WITH(meta::reduce_in_task_order(shares, 0, 4, a->state(), a->state_names(), 0),
                    "meta-step: the tasks of a meta-batch ended with different inner_adam.steps (7 and 8 at task 2)");
  shares[2].tensors.pop_back();
  const std::string expected = "meta-step: task 2 gives " + std::to_string(n) + " tensors, expected " + std::to_string(n + 1);
  CHECK_THROWS_WITH(meta::reduce_in_task_order(shares, 0, 4, a->state(), a->state_names(), 0), expected.c_str());
  CHECK_THROWS_WITH(a->set_state({}), doctest::Contains("0 state tensors given"));
}

TEST_CASE("reptile: after a meta-step the carried moments equal Adam's, computed independently") {
  // One inner step from the zero state on a single support point: each task's v is (1 - beta2) g^2 with g the
  // gradient of the support loss at the meta-parameters; the carried v is their mean over the meta-batch.
  std::mt19937 rng(3);
  auto a = reptile_mlp(true, 1);
  std::vector<meta::Task> tasks{point_task(rng, 1, 11), point_task(rng, 1, 12)};
  std::vector<std::vector<Tensor>> g2;
  for (const meta::Task& t : tasks) {
    std::vector<Variable> p;
    for (const Variable& v : a->parameters()) p.emplace_back(v.data().clone(), true);
    Variable loss =
        meta::Algorithm::task_loss(a->model().forward(p, Variable(t.support_x)), t.support_y, true);
    auto g = autograd::grad({loss}, p);
    std::vector<Tensor> v;
    const float b2 = 0.999f;
    for (const Variable& gi : g) {
      Tensor vi = Tensor::zeros(gi.shape());
      const float* gp = gi.data().data<float>();
      for (int64_t j = 0; j < vi.numel(); ++j) vi.data<float>()[j] = b2 * 0.0f + (1 - b2) * gp[j] * gp[j];
      v.push_back(vi);
    }
    g2.push_back(v);
  }
  optim::Sgd outer(0.5);
  meta::meta_step(*a, tasks, outer);
  for (size_t i = 0; i < g2[0].size(); ++i) {
    Tensor expect = g2[0][i].clone();
    for (int64_t j = 0; j < expect.numel(); ++j)
      expect.data<float>()[j] = (expect.data<float>()[j] + g2[1][i].data<float>()[j]) * (1.0f / 2.0f);
    CAPTURE(a->state_names()[i]);
    CHECK(same_bits(a->state()[i], expect));
  }
  CHECK(steps_of(*a) == 1);
  meta::meta_step(*a, tasks, outer);
  CHECK(steps_of(*a) == 2);  // the step count advances by one task's inner steps per meta-step
}

TEST_CASE("reptile: a carried state changes the next task's first Adam step, a zero one is fresh Adam") {
  std::mt19937 rng(4);
  auto carry = reptile_mlp(true, 5);
  auto fresh = reptile_mlp(false, 5);
  const meta::Task first = point_task(rng, 4, 21), second = point_task(rng, 4, 22);

  // Same initialisation, zero state: adaptation with carry is bit for bit the fresh optimiser's.
  auto w_carry = carry->adapt(second, 1).weights, w_fresh = fresh->adapt(second, 1).weights;
  for (size_t i = 0; i < w_carry.size(); ++i) CHECK(same_bits(w_carry[i], w_fresh[i]));

  // After one meta-step on the first task, give both the same meta-parameters: only the state differs.
  optim::Sgd outer(1.0);
  meta::meta_step(*carry, {first}, outer);
  for (size_t i = 0; i < carry->parameters().size(); ++i)
    fresh->parameters()[i] = Variable(carry->parameters()[i].data().clone(), true);
  REQUIRE(steps_of(*carry) == 5);
  std::vector<Tensor> state_before;
  for (const Tensor& t : carry->state()) state_before.push_back(t.clone());
  w_carry = carry->adapt(second, 1).weights;
  w_fresh = fresh->adapt(second, 1).weights;
  // A fresh Adam's first step moves every weight with a gradient by about lr = 1e-3 (m / sqrt(v_hat) =
  // sign(g)); from the carried v it moves by lr |g| / sqrt(v_hat) instead.
  double max_diff = 0;
  for (size_t i = 0; i < w_carry.size(); ++i)
    for (int64_t j = 0; j < w_carry[i].numel(); ++j)
      max_diff = std::max(
          max_diff, std::abs(static_cast<double>(w_carry[i].data<float>()[j] - w_fresh[i].data<float>()[j])));
  CHECK(max_diff > 1e-5);
  // Adaptation reads the carried state and leaves it as it was.
  for (size_t i = 0; i < state_before.size(); ++i) CHECK(same_bits(carry->state()[i], state_before[i]));
}

}  // namespace
}  // namespace metafew::testing
