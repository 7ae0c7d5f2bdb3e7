#include <cmath>

#include "autograd/grad_mode.h"
#include "core/error.h"
#include "meta/inner_loop.h"
#include "ops/ops.h"

// Note [Pretraining]
// --algo pretrain is the baseline the field measures meta-learning against (Chen et al. 2019's Baseline,
// SimpleShot, RFS): the backbone and a linear classifier over every class of the training split, trained
// with cross-entropy on mini-batches of images (data/batch.h) instead of episodes; the trainer takes one
// batch per iteration (meta-batch 1), so its kernels split each batch over the threads. The classifier is the
// algorithm's own parameter pair (pretrain.classifier.weight (classes, features) with LeCun-uniform
// initial values, pretrain.classifier.bias zero), sized by the setting pretrain_classes that meta-train fills
// from the training split when a run starts. At validation and test time the classifier is dropped: an
// episode is classified by the nearest class centroid of L2-normalised features (SimpleShot's "L2N"; the
// logits are -|q - c|^2 of the unit-length query to the mean of its class's unit-length support features), so
// the best checkpoint is chosen on validation episodes the way it will be used.

namespace metafew::meta {

namespace {

class Pretrain : public Algorithm {
 public:
  Pretrain(nn::Model model, AlgoConfig config, core::Rng& rng) : Algorithm(std::move(model), std::move(config)) {
    params_ = model_.init(rng);
    for (const auto& s : model_.specs()) names_.push_back(s.name);
    const int64_t classes = config_.pretrain_classes, d = model_.feature_dim();
    MF_USAGE_CHECK(classes >= 2, "pretrain: the classifier needs the number of training classes (pretrain_classes "
                   ">= 2, filled in by meta-train from the training split), got ", classes);
    const double bound = std::sqrt(3.0 / static_cast<double>(d));
    std::vector<double> w(static_cast<size_t>(classes * d));
    for (double& x : w) x = rng.uniform(-bound, bound);
    params_.emplace_back(Tensor::from_vector(w, {classes, d}), true);
    names_.push_back("pretrain.classifier.weight");
    params_.emplace_back(Tensor::zeros({classes}), true);
    names_.push_back("pretrain.classifier.bias");
  }

  // One mini-batch (the task's query set, labelled over every training class): cross-entropy of the
  // classifier on the backbone's features.
  TaskOutput meta_gradient(const Task& t, std::vector<Tensor>& grads) const override {
    MF_CHECK(!t.regression() && t.ways == config_.pretrain_classes, "pretrain: a batch labelled over ", t.ways,
             " classes, but the classifier has ", config_.pretrain_classes);
    autograd::GradModeGuard mode(true);
    const size_t n = model_.specs().size();
    Variable features = model_.embed(params_, Variable(t.query_x));
    Variable logits = nn::Model::head(params_[n], params_[n + 1], features);
    Variable loss = ops::cross_entropy(logits, t.query_y);
    TaskOutput r{loss.item(), score(logits.data(), t.query_y, false)};
    write_grads(loss, params_, grads);
    return r;
  }

  Adapted adapt_own(const Task& t, int64_t steps) const override {
    (void)steps;  // the centroid head has nothing to step
    return frozen(t);
  }

  Tensor predict_own(const Adapted& a, const Tensor& query_x) const override {
    autograd::NoGradGuard ng;
    const AdaptedFeatures f = adapted_features(model_, a, query_x);
    return centroid_logits(f.support, a.support_y, f.query, a.ways).data();
  }
};

}  // namespace

std::unique_ptr<Algorithm> make_pretrain(const nn::Model& model, const AlgoConfig& config, core::Rng& rng) {
  MF_USAGE_CHECK(model.config().outputs == 0, "pretrain: the backbone's classifier is the algorithm's own; the model "
                 "must have no head (outputs 0)");
  return std::make_unique<Pretrain>(model, config, rng);
}

}  // namespace metafew::meta
