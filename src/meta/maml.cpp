#include <cmath>
#include <limits>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "meta/inner_loop.h"
#include "ops/ops.h"
#include "optim/optimizer.h"
#include "tensor/kernels.h"

namespace metafew::meta {

namespace {

// ---- MAML family: MAML, first-order MAML, Meta-SGD -------------------------------------------------------
// Note [Batch norm outside the inner loop]: cbfinn/maml builds its batch norm with tf.contrib.layers.batch_norm,
// whose offset is a variable of that layer, not one of the fast weights its inner loop differentiates and steps
// (the dict `weights`: convolutions, their biases, the head). So its inner loop adapts only those, while the
// outer Adam (over all trainable variables) learns the offsets. inner_bn = false does the same here: the inner
// loop leaves every batch-norm parameter (shift and, if any, scale) as the outer loop set it; the meta-gradient
// still reaches them through the adapted model. inner_bn = true (the default) adapts every parameter. Meta-SGD
// keeps a rate for each parameter either way; the rates of parameters that are not adapted get no gradient.
class Maml : public Algorithm {
 public:
  Maml(nn::Model model, AlgoConfig config, core::Rng& rng, bool per_parameter_rates)
      : Algorithm(std::move(model), std::move(config)), rates_(per_parameter_rates) {
    params_ = model_.init(rng);
    for (const auto& s : model_.specs()) {
      names_.push_back(s.name);
      adapted_.push_back(config_.inner_bn || !s.batch_norm());
    }
    if (rates_) {
      // Per-parameter inner learning rates, initialised to inner_lr (Li et al. initialise uniformly; a
      // constant start makes Meta-SGD begin exactly as MAML).
      const size_t n = params_.size();
      for (size_t i = 0; i < n; ++i) {
        params_.emplace_back(Tensor::full(params_[i].shape(), config_.inner_lr), true);
        names_.push_back("lr." + names_[i]);
      }
    }
  }

  TaskOutput meta_gradient(const Task& t, std::vector<Tensor>& grads) const override {
    Variable out = adapted_query_outputs(t, config_.inner_steps, !config_.first_order);
    Variable loss = task_loss(out, t.query_y, t.regression());
    TaskOutput r{loss.item(), score(out.data(), t.query_y, t.regression())};
    write_grads(loss, params_, grads);
    return r;
  }

  Adapted adapt_own(const Task& t, int64_t steps) const override {
    std::vector<Variable> fast;
    const size_t n = model_.specs().size();
    for (size_t i = 0; i < n; ++i) fast.emplace_back(params_[i].data(), true);
    std::vector<Variable> rates;
    if (rates_)
      for (size_t i = n; i < 2 * n; ++i) rates.push_back(params_[i].detach());
    Variable xs(t.support_x);
    for (int64_t s = 0; s < steps; ++s) {
      Variable loss = task_loss(model_.forward(fast, xs), t.support_y, t.regression());
      fast = sgd_step(fast, loss, false, config_.inner_lr, rates.empty() ? nullptr : &rates, &adapted_);
      for (auto& p : fast) p = Variable(p.data(), true);
    }
    Adapted a{{}, t.support_x, t.support_y, t.ways};
    for (const auto& p : fast) a.weights.push_back(p.data());
    return a;
  }

  Tensor predict_own(const Adapted& a, const Tensor& query_x) const override {
    return forward_query(model_, a, query_x);
  }

 private:
  // Query outputs after `steps` inner steps, with the whole computation recorded for the meta-gradient.
  Variable adapted_query_outputs(const Task& t, int64_t steps, bool create_graph) const {
    const size_t n = model_.specs().size();
    std::vector<Variable> fast = slice_params(params_, 0, n);
    std::vector<Variable> rates;
    if (rates_) rates = slice_params(params_, n, 2 * n);
    Variable xs(t.support_x), xq(t.query_x);
    for (int64_t s = 0; s < steps; ++s) {
      Variable loss = task_loss(model_.forward(fast, xs), t.support_y, t.regression());
      fast = sgd_step(fast, loss, create_graph, config_.inner_lr, rates.empty() ? nullptr : &rates, &adapted_);
    }
    if (model_.queries_use_support()) {
      auto [fs, fq] = model_.embed_pair(fast, xs, xq);
      return nn::Model::head(fast[model_.head_begin()], fast[model_.head_begin() + 1], fq);
    }
    return model_.forward(fast, xq);
  }

  bool rates_;                 // Meta-SGD: a learned inner rate per parameter value
  std::vector<bool> adapted_;  // per model parameter: stepped by the inner loop
};

// ---- ANIL: inner loop on the head only -------------------------------------------------------------------
class Anil : public Algorithm {
 public:
  Anil(nn::Model model, AlgoConfig config, core::Rng& rng) : Algorithm(std::move(model), std::move(config)) {
    params_ = model_.init(rng);
    for (const auto& s : model_.specs()) names_.push_back(s.name);
  }

  TaskOutput meta_gradient(const Task& t, std::vector<Tensor>& grads) const override {
    Variable out = run(t, config_.inner_steps, !config_.first_order);
    Variable loss = task_loss(out, t.query_y, t.regression());
    TaskOutput r{loss.item(), score(out.data(), t.query_y, t.regression())};
    write_grads(loss, params_, grads);
    return r;
  }

  Adapted adapt_own(const Task& t, int64_t steps) const override {
    autograd::NoGradGuard ng;
    const size_t hb = model_.head_begin();
    Variable fs = model_.embed(params_, Variable(t.support_x));
    std::vector<Variable> head;
    for (size_t i = hb; i < hb + 2; ++i) head.emplace_back(params_[i].data(), true);
    for (int64_t s = 0; s < steps; ++s) {
      autograd::GradModeGuard on(true);
      Variable loss = task_loss(nn::Model::head(head[0], head[1], fs), t.support_y, t.regression());
      head = sgd_step(head, loss, false, config_.inner_lr, nullptr);
      for (auto& p : head) p = Variable(p.data(), true);
    }
    Adapted a{{}, t.support_x, t.support_y, t.ways};
    for (size_t i = 0; i < hb; ++i) a.weights.push_back(params_[i].data());
    for (const auto& p : head) a.weights.push_back(p.data());
    return a;
  }

  Tensor predict_own(const Adapted& a, const Tensor& query_x) const override {
    return forward_query(model_, a, query_x);
  }

 private:
  // Query outputs after `steps` inner steps on the head, recorded for the meta-gradient.
  Variable run(const Task& t, int64_t steps, bool create_graph) const {
    const size_t hb = model_.head_begin();
    auto [fs, fq] = model_.embed_pair(params_, Variable(t.support_x), Variable(t.query_x));
    std::vector<Variable> head = slice_params(params_, hb, hb + 2);
    for (int64_t s = 0; s < steps; ++s) {
      Variable loss = task_loss(nn::Model::head(head[0], head[1], fs), t.support_y, t.regression());
      head = sgd_step(head, loss, create_graph, config_.inner_lr, nullptr);
    }
    return nn::Model::head(head[0], head[1], fq);
  }
};


}  // namespace

std::unique_ptr<Algorithm> make_maml(const nn::Model& model, const AlgoConfig& config, core::Rng& rng,
                                     bool per_parameter_rates) {
  return std::make_unique<Maml>(model, config, rng, per_parameter_rates);
}

std::unique_ptr<Algorithm> make_anil(const nn::Model& model, const AlgoConfig& config, core::Rng& rng) {
  return std::make_unique<Anil>(model, config, rng);
}

}  // namespace metafew::meta
