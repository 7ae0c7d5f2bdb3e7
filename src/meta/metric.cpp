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

// ---- Prototypical Networks, Matching Networks, ParamNet ----------------------------------------------------
class Metric : public Algorithm {
 public:
  Metric(nn::Model model, AlgoConfig config, core::Rng& rng, MetricHead head)
      : Algorithm(std::move(model), std::move(config)), head_(head) {
    params_ = model_.init(rng);
    for (const auto& s : model_.specs()) names_.push_back(s.name);
    if (head_ == MetricHead::paramnet) {
      // A starts at 2I and s at (-1, 0): the predicted head then equals the ProtoNet classifier
      // (-|q - p|^2 = 2 p.q - |p|^2 - |q|^2, the last term the same for every class).
      const int64_t d = model_.feature_dim();
      Tensor a = Tensor::zeros({d, d});
      for (int64_t i = 0; i < d; ++i) a.data<float>()[i * d + i] = 2.0f;
      params_.emplace_back(a, true);
      names_.push_back("paramnet.a");
      params_.emplace_back(Tensor::from_vector({-1.0, 0.0}, {2}), true);
      names_.push_back("paramnet.s");
    }
    if (head_ == MetricHead::prototypes && config_.cosine_prototypes) {
      params_.emplace_back(Tensor::from_vector({10.0}, {1}), true);
      names_.push_back("protonet.scale");
    }
  }

  TaskOutput meta_gradient(const Task& t, std::vector<Tensor>& grads) const override {
    MF_CHECK(!t.regression(), name(), ": metric methods need a classification task");
    Variable out = logits(t, config_.refine_steps, !config_.first_order, true);
    Variable loss = ops::cross_entropy(out, t.query_y);
    TaskOutput r{loss.item(), score(out.data(), t.query_y, false)};
    write_grads(loss, params_, grads);
    return r;
  }

  Adapted adapt_own(const Task& t, int64_t steps) const override {
    Adapted a = frozen(t);
    if (head_ == MetricHead::paramnet) {
      // The predicted (and refined) head is part of the adapted model.
      Task support_only = t;
      support_only.query_x = t.support_x;
      auto [w, b] = paramnet_adapted_head(support_only, steps);
      a.weights.push_back(w);
      a.weights.push_back(b);
    }
    return a;
  }

  Tensor predict_own(const Adapted& a, const Tensor& query_x) const override {
    autograd::NoGradGuard ng;
    const AdaptedFeatures f = adapted_features(model_, a, query_x);
    if (head_ == MetricHead::prototypes) return prototype_logits(f.support, a.support_y, f.query, a.ways, f.weights).data();
    if (head_ == MetricHead::matching)
      return matching_log_probs(f.support, a.support_y, f.query, a.ways, config_.matching_attention).data();
    const size_t n = params_.size();
    MF_CHECK(a.weights.size() == n + 2, "paramnet: the adapted model lacks its predicted head");
    return nn::Model::head(f.weights[n], f.weights[n + 1], f.query).data();
  }

 private:
  Variable logits(const Task& t, int64_t steps, bool create_graph, bool meta) const {
    autograd::GradModeGuard mode(meta);
    auto [fs, fq] = model_.embed_pair(params_, Variable(t.support_x), Variable(t.query_x));
    if (head_ == MetricHead::prototypes) return prototype_logits(fs, t.support_y, fq, t.ways, params_);
    if (head_ == MetricHead::matching)
      return matching_log_probs(fs, t.support_y, fq, t.ways, config_.matching_attention);
    return paramnet_refined(fs, fq, t, steps, create_graph, meta);
  }

  // Note [Cosine prototypes]: Meta-Baseline (Chen et al. 2021) fine-tunes a pretrained backbone as ProtoNets
  // with logits s * cos(q, p_c), p_c the mean of class c's support features and s a learned scale
  // (protonet.scale, starting at 10 as its code); distance = cosine selects it, euclidean keeps the paper's
  // -|q - p_c|^2. `weights` are the parameters (or an adapted model's), the scale after the model's.
  Variable prototype_logits(const Variable& fs, const Tensor& ys, const Variable& fq, int64_t ways,
                            const std::vector<Variable>& weights) const {
    if (!config_.cosine_prototypes) return protonet_logits(fs, ys, fq, ways);
    const size_t n = model_.specs().size();
    MF_CHECK(weights.size() == n + 1, "protonet: cosine prototypes need the learned scale after the ", n,
             " model parameters; got ", weights.size(), " tensors");
    return ops::mul(weights[n], ops::cosine_similarity(fq, class_prototypes(fs, ys, ways)));
  }

  std::pair<Tensor, Tensor> paramnet_adapted_head(const Task& t, int64_t steps) const {
    autograd::NoGradGuard ng;
    Variable fs = model_.embed(params_, Variable(t.support_x));
    std::pair<Variable, Variable> head = paramnet_head_for(fs, t, steps, false, false);
    return {head.first.data(), head.second.data()};
  }

  Variable paramnet_refined(const Variable& fs, const Variable& fq, const Task& t, int64_t steps,
                            bool create_graph, bool meta) const {
    auto [w, b] = paramnet_head_for(fs, t, steps, create_graph, meta);
    return nn::Model::head(w, b, fq);
  }

  std::pair<Variable, Variable> paramnet_head_for(const Variable& fs, const Task& t, int64_t steps,
                                                  bool create_graph, bool meta) const {
    const size_t n = model_.specs().size();
    auto [w, b] = paramnet_head(class_prototypes(fs, t.support_y, t.ways), params_[n], params_[n + 1]);
    std::vector<Variable> head{w, b};
    for (int64_t s = 0; s < steps; ++s) {
      autograd::GradModeGuard on(true);
      if (!meta) {
        for (auto& p : head) p = Variable(p.data(), true);
      }
      Variable loss = ops::cross_entropy(nn::Model::head(head[0], head[1], fs), t.support_y);
      head = sgd_step(head, loss, create_graph && meta, config_.inner_lr, nullptr);
    }
    return {head[0], head[1]};
  }

  MetricHead head_;
};


}  // namespace

std::unique_ptr<Algorithm> make_metric(const nn::Model& model, const AlgoConfig& config, core::Rng& rng,
                                       MetricHead head) {
  MF_USAGE_CHECK(model.config().outputs == 0, config.algo,
                 ": metric methods use a model without a head (outputs 0)");
  return std::make_unique<Metric>(model, config, rng, head);
}

}  // namespace metafew::meta
