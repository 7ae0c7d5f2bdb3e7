// The engine's reason to exist: second-order MAML through conv, batch norm, ReLU, max-pool and the loss.
#include <doctest/doctest.h>

#include <fstream>
#include <random>
#include <unistd.h>

#include "support/gradcheck.h"
#include "tensor/storage.h"

namespace metafew::testing {
namespace {

struct TinyNet {
  // conv 3x3 (1 -> 3, pad 1) -> batch norm -> ReLU -> max-pool 2 -> linear (12 -> 2)
  static std::vector<Tensor> init(std::mt19937& rng, DType dtype) {
    return {random_tensor({3, 1, 3, 3}, rng, -0.6, 0.6, dtype), random_tensor({3}, rng, -0.1, 0.1, dtype),
            random_tensor({3}, rng, 0.8, 1.2, dtype),           random_tensor({3}, rng, -0.1, 0.1, dtype),
            random_tensor({2, 12}, rng, -0.5, 0.5, dtype),      random_tensor({2}, rng, -0.1, 0.1, dtype)};
  }
  static Variable forward(const std::vector<Variable>& p, const Variable& x) {
    Variable h = ops::conv2d(x, p[0], p[1], {1, 1});
    h = ops::max_pool2d(ops::relu(ops::batch_norm(h, p[2], p[3])), 2, 2);
    return ops::linear(ops::flatten(h), p[4], p[5]);
  }
};

struct Task {
  Variable xs, xq;
  Tensor ys, yq;
};

Task make_task(std::mt19937& rng, DType dtype) {
  return {Variable(random_tensor({4, 1, 4, 4}, rng, -1, 1, dtype)), Variable(random_tensor({6, 1, 4, 4}, rng, -1, 1, dtype)),
          Tensor::from_indices({0, 1, 0, 1}, {4}), Tensor::from_indices({1, 0, 1, 1, 0, 0}, {6})};
}

// w' = w - a * dLs/dw (recorded when second_order), then dLq(w')/dw.
std::vector<Variable> meta_gradient(const std::vector<Variable>& p, const Task& t, double a, bool second_order) {
  Variable ls = ops::cross_entropy(TinyNet::forward(p, t.xs), t.ys);
  auto g = autograd::grad({ls}, p, {}, {.create_graph = second_order});
  std::vector<Variable> fast;
  for (size_t i = 0; i < p.size(); ++i) fast.push_back(ops::sub(p[i], ops::mul_scalar(g[i], a)));
  Variable lq = ops::cross_entropy(TinyNet::forward(fast, t.xq), t.yq);
  return autograd::grad({lq}, p);
}

TEST_CASE("MAML meta-gradient through conv, batch norm, ReLU, max-pool equals central differences") {
  std::mt19937 rng(42);
  const double a = 0.5;
  std::vector<Tensor> w = TinyNet::init(rng, DType::f64);
  Task task = make_task(rng, DType::f64);
  std::vector<Variable> p = leaves(w);
  auto second = meta_gradient(p, task, a, true);
  auto first = meta_gradient(p, task, a, false);

  // F(w) = Lq(w - a * grad Ls(w)), evaluated with first-order gradients only.
  auto numeric = numeric_gradient(
      [&](std::vector<Tensor>& ws) {
        std::vector<Variable> q;
        for (auto& t : ws) q.emplace_back(t, true);
        Variable ls = ops::cross_entropy(TinyNet::forward(q, task.xs), task.ys);
        auto g = autograd::grad({ls}, q);
        autograd::NoGradGuard ng;
        std::vector<Variable> fast;
        for (size_t i = 0; i < q.size(); ++i) fast.push_back(ops::sub(q[i], ops::mul_scalar(g[i], a)));
        return ops::cross_entropy(TinyNet::forward(fast, task.xq), task.yq).item();
      },
      w);
  CHECK(compare("second-order MAML", second, numeric) == 0);

  // First-order MAML drops the Hessian term: it must differ measurably on the same case, far beyond the
  // tolerance of the check above.
  double diff = 0, norm = 0;
  for (size_t i = 0; i < second.size(); ++i) {
    diff += std::pow(tensor::max_abs_diff(second[i].data(), first[i].data()), 2);
    norm += std::pow(tensor::max_abs(second[i].data()), 2);
  }
  CHECK(std::sqrt(diff) > 1e-2 * std::sqrt(norm));
  CHECK(compare("first-order MAML", first, numeric, false) > 0);
}

long resident_kib() {
  std::ifstream f("/proc/self/statm");
  long pages = 0, resident = 0;
  f >> pages >> resident;
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

TEST_CASE("grad with create_graph 1000 times in a loop does not grow memory") {
  std::mt19937 rng(5);
  std::vector<Variable> p = leaves(TinyNet::init(rng, DType::f32));
  for (auto& v : p) v = Variable(v.data().to(DType::f32), true);
  Task task = make_task(rng, DType::f32);
  const int64_t nodes0 = autograd::live_nodes(), vars0 = autograd::live_variables();
  auto step = [&] {
    auto g = meta_gradient(p, task, 0.4, true);
    autograd::NoGradGuard ng;
    for (size_t i = 0; i < p.size(); ++i) p[i].mutable_data().copy_(ops::sub(p[i], ops::mul_scalar(g[i], 1e-3)).data());
  };
  for (int i = 0; i < 50; ++i) step();
  const long rss0 = resident_kib();
  const size_t os0 = tensor::buffer_cache_stats().os_allocations;
  for (int i = 0; i < 1000; ++i) step();
  const long grown = resident_kib() - rss0;
  // Every graph is gone once its last reference is: no node or variable outlives its iteration.
  CHECK(autograd::live_nodes() == nodes0);
  CHECK(autograd::live_variables() == vars0);
  // Steady state reuses buffers: the cache asked the system for nothing new over 1000 iterations.
  CHECK(tensor::buffer_cache_stats().os_allocations == os0);
#ifndef METAFEW_SANITIZE
  // AddressSanitizer quarantines freed memory, so resident size is only meaningful without it.
  CHECK_MESSAGE(grown < 2048, "resident memory grew by " << grown << " KiB over 1000 iterations");
#else
  (void)grown;
#endif
}

}  // namespace
}  // namespace metafew::testing
