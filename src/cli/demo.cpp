#include "cli/demo.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <cxxopts.hpp>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "ops/ops.h"

namespace metafew::cli {
namespace {

using autograd::Variable;
using tensor::Tensor;

// One sinusoid task: y = A sin(x - phase), A in [0.1, 5], phase in [0, pi], x in [-5, 5] (MAML paper).
struct SineTask {
  Variable xs, ys, xq, yq;
};

SineTask sample_task(std::mt19937& rng, int k) {
  std::uniform_real_distribution<double> amp(0.1, 5.0), phase(0.0, M_PI), xd(-5.0, 5.0);
  const double a = amp(rng), ph = phase(rng);
  auto draw = [&](int n, Variable& x, Variable& y) {
    std::vector<double> xv(n), yv(n);
    for (int i = 0; i < n; ++i) {
      xv[i] = xd(rng);
      yv[i] = a * std::sin(xv[i] - ph);
    }
    x = Variable(Tensor::from_vector(xv, {n, 1}));
    y = Variable(Tensor::from_vector(yv, {n, 1}));
  };
  SineTask t;
  draw(k, t.xs, t.ys);
  draw(k, t.xq, t.yq);
  return t;
}

std::vector<Variable> init_mlp(std::mt19937& rng) {
  auto layer = [&](int64_t out, int64_t in) {
    const double bound = std::sqrt(6.0 / static_cast<double>(in + out));
    std::uniform_real_distribution<double> d(-bound, bound);
    std::vector<double> w(static_cast<size_t>(out * in));
    for (double& v : w) v = d(rng);
    return std::vector<Variable>{Variable(Tensor::from_vector(w, {out, in}), true),
                                 Variable(Tensor::zeros({out}), true)};
  };
  std::vector<Variable> p;
  for (auto [o, i] : {std::pair<int64_t, int64_t>{40, 1}, {40, 40}, {1, 40}})
    for (auto& v : layer(o, i)) p.push_back(v);
  return p;
}

Variable mlp(const std::vector<Variable>& p, const Variable& x) {
  Variable h = ops::relu(ops::linear(x, p[0], p[1]));
  h = ops::relu(ops::linear(h, p[2], p[3]));
  return ops::linear(h, p[4], p[5]);
}

std::vector<Variable> adapt(const std::vector<Variable>& p, const SineTask& t, double lr, int steps, bool create) {
  std::vector<Variable> fast = p;
  for (int s = 0; s < steps; ++s) {
    auto g = autograd::grad({ops::mse(mlp(fast, t.xs), t.ys)}, fast, {}, {.create_graph = create});
    for (size_t i = 0; i < fast.size(); ++i) fast[i] = ops::sub(fast[i], ops::mul_scalar(g[i], lr));
  }
  return fast;
}

double evaluate(const std::vector<Variable>& p, uint32_t seed, int tasks, double lr) {
  std::mt19937 rng(seed);
  double total = 0;
  for (int i = 0; i < tasks; ++i) {
    SineTask t = sample_task(rng, 10);
    std::vector<Variable> leaves;
    for (const Variable& v : p) leaves.emplace_back(v.data(), true);
    auto fast = adapt(leaves, t, lr, 1, false);
    autograd::NoGradGuard ng;
    total += ops::mse(mlp(fast, t.xq), t.yq).item();
  }
  return total / tasks;
}

}  // namespace

int run_demo(int argc, char** argv) {
  cxxopts::Options opts("metafew demo", "Second-order MAML on sinusoid regression (engine smoke demo)");
  opts.add_options()("iterations", "meta-iterations", cxxopts::value<int>()->default_value("10000"))(
      "seed", "random seed", cxxopts::value<uint32_t>()->default_value("1"))("h,help", "show this help");
  auto args = opts.parse(argc, argv);
  if (args.count("help")) {
    std::printf("%s\n", opts.help().c_str());
    return 0;
  }
  const int iterations = args["iterations"].as<int>();
  MF_USAGE_CHECK(iterations > 0, "demo: --iterations must be positive, got ", iterations);
  const uint32_t seed = args["seed"].as<uint32_t>();
  const double inner_lr = 0.01, outer_lr = 1e-3;
  const int meta_batch = 25;

  std::mt19937 rng(seed);
  std::vector<Variable> p = init_mlp(rng);
  std::vector<Tensor> m, v;
  for (const Variable& x : p) {
    m.push_back(Tensor::zeros(x.shape()));
    v.push_back(Tensor::zeros(x.shape()));
  }
  const double before = evaluate(p, seed + 1000, 100, inner_lr);
  std::fprintf(stderr, "demo: MAML (second order), sinusoid 10-shot, MLP 1-40-40-1, meta-batch %d, %d iterations\n",
               meta_batch, iterations);
  const auto t0 = std::chrono::steady_clock::now();
  for (int it = 1; it <= iterations; ++it) {
    std::vector<Variable> meta(p.size());
    double loss = 0;
    for (int b = 0; b < meta_batch; ++b) {
      SineTask t = sample_task(rng, 10);
      auto fast = adapt(p, t, inner_lr, 1, true);
      Variable lq = ops::mse(mlp(fast, t.xq), t.yq);
      loss += lq.item();
      auto g = autograd::grad({lq}, p);
      for (size_t i = 0; i < p.size(); ++i) meta[i] = meta[i].defined() ? ops::add(meta[i], g[i]) : g[i];
    }
    // Adam on the mean meta-gradient.
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    for (size_t i = 0; i < p.size(); ++i) {
      const float* g = meta[i].data().data<float>();
      float* w = p[i].mutable_data().data<float>();
      float* mm = m[i].data<float>();
      float* vv = v[i].data<float>();
      for (int64_t j = 0; j < p[i].numel(); ++j) {
        const double gj = g[j] / meta_batch;
        mm[j] = static_cast<float>(b1 * mm[j] + (1 - b1) * gj);
        vv[j] = static_cast<float>(b2 * vv[j] + (1 - b2) * gj * gj);
        const double mh = mm[j] / (1 - std::pow(b1, it)), vh = vv[j] / (1 - std::pow(b2, it));
        w[j] = static_cast<float>(w[j] - outer_lr * mh / (std::sqrt(vh) + eps));
      }
    }
    if (!std::isfinite(loss)) throw Error(detail::concat("demo: the meta-loss became ", loss, " at iteration ", it));
    if (it % 200 == 0 || it == iterations) {
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::fprintf(stderr, "iteration %d/%d  query MSE %.3f  %.0f it/s\n", it, iterations, loss / meta_batch,
                   it / secs);
    }
  }
  const double after = evaluate(p, seed + 1000, 100, inner_lr);
  std::printf("post-adaptation MSE on 100 held-out tasks (1 step, 10 shots): %.3f before meta-training, %.3f after\n",
              before, after);
  return 0;
}

}  // namespace metafew::cli
