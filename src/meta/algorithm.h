#pragma once
// The meta-learning algorithms behind one interface: a meta-gradient for one task (the trainer sums them over
// a meta-batch and takes an outer step), and adaptation + prediction for evaluation.
#include <memory>
#include <string>
#include <vector>

#include "meta/options.h"
#include "meta/task.h"
#include "nn/model.h"

namespace metafew::meta {

using autograd::Variable;

// A model adapted to one support set: what `metafew adapt --save-adapted` stores and `predict` reuses.
// weights: the adapted parameters (gradient-based methods), or the meta-parameters plus any predicted head
// (metric methods); the support set is kept because metric methods classify against it, and batch norm in
// support mode normalises with its statistics.
struct Adapted {
  std::vector<Tensor> weights;
  Tensor support_x, support_y;
  int64_t ways = 0;
};

struct TaskOutput {
  // Query loss and accuracy (classification) or -MSE (regression) after adaptation; Reptile: those of its last
  // inner mini-batch, before that step (it has no query loss).
  double loss = 0;
  double accuracy = 0;
  // The task's final carried state (same layout as Algorithm::state()); empty when the algorithm carries
  // none.
  std::vector<Tensor> state;
};

class Algorithm {
 public:
  virtual ~Algorithm() = default;
  const std::string& name() const { return config_.algo; }
  const AlgoConfig& config() const { return config_; }
  const nn::Model& model() const { return model_; }

  // Every meta-learned tensor: the model's parameters, then the algorithm's own (Meta-SGD's rates, ...).
  std::vector<Variable>& parameters() { return params_; }
  const std::vector<Variable>& parameters() const { return params_; }
  const std::vector<std::string>& parameter_names() const { return names_; }

  // State carried from task to task besides the meta-parameters: not meta-learned, but part of the training
  // state (checkpoints keep it, --resume restores it). Empty except for Reptile with a carried inner Adam
  // state (Note [Reptile's inner optimiser state]). After a meta-step it becomes the task-order mean of the
  // tasks' final states (TaskOutput::state; integer tensors, the same in every task, as they are), formed by
  // the trainer with the meta-gradient (Note [Task-order reduction] in meta/trainer.cpp).
  const std::vector<Tensor>& state() const { return state_; }
  const std::vector<std::string>& state_names() const { return state_names_; }
  // Replaces the state (from a checkpoint); throws naming the tensor whose count, shape or dtype does not
  // fit.
  void set_state(const std::vector<Tensor>& state);

  // One task's contribution to the meta-update, one tensor per parameter: the meta-gradient, or for
  // Reptile the direction (parameters - adapted parameters). Thread-safe: reads the parameters only.
  virtual TaskOutput meta_gradient(const Task& task, std::vector<Tensor>& grads) const = 0;
  // Adapts to the support set with `steps` inner steps (ignored by metric methods) and returns query
  // outputs: logits (Q, ways) or regression predictions (Q, 1). No graph is kept.
  Tensor predict(const Task& task, int64_t steps) const { return predict_adapted(adapt(task, steps), task.query_x); }
  // Adaptation alone (the task's query set is not used), and prediction with an adapted model: the
  // algorithm's own head, or the test-time head config().head names (Note [Test-time heads] in heads.cpp).
  Adapted adapt(const Task& task, int64_t steps) const;
  Tensor predict_adapted(const Adapted& adapted, const Tensor& query_x) const;

  // The loss of outputs against labels (cross-entropy, or MSE for regression), and the score of predictions.
  static Variable task_loss(const Variable& outputs, const Tensor& labels, bool regression);
  static double score(const Tensor& outputs, const Tensor& labels, bool regression);

 protected:
  Algorithm(nn::Model model, AlgoConfig config) : model_(std::move(model)), config_(std::move(config)) {}
  // The algorithm's own adaptation and prediction.
  virtual Adapted adapt_own(const Task& task, int64_t steps) const = 0;
  virtual Tensor predict_own(const Adapted& adapted, const Tensor& query_x) const = 0;
  // The support set with the parameters as they are: the frozen backbone of a test-time head, and the
  // adapted model of the methods that do not step.
  Adapted frozen(const Task& task) const;
  nn::Model model_;
  AlgoConfig config_;
  std::vector<Variable> params_;
  std::vector<std::string> names_;
  std::vector<Tensor> state_;
  std::vector<std::string> state_names_;
};

// The algorithm named by config.algo (meta/registry.h), with freshly initialised parameters.
std::unique_ptr<Algorithm> make_algorithm(const nn::Model& model, const AlgoConfig& config, core::Rng& rng);

// Head computations of the metric methods, exposed for hand-checked tests.
// prototypes: per-class means of support features (ways, D), support labels i32 in [0, ways).
Variable class_prototypes(const Variable& support_features, const Tensor& support_y, int64_t ways);
// ProtoNets: logits = -|q - p_c|^2.
Variable protonet_logits(const Variable& support_features, const Tensor& support_y, const Variable& query_features,
                         int64_t ways);
// Matching Networks: log of the attention-weighted vote of the support labels, the attention a softmax over
// the similarities of each query to the support features (cosine, or q . s / |s| with supnorm).
Variable matching_log_probs(const Variable& support_features, const Tensor& support_y,
                            const Variable& query_features, int64_t ways,
                            MatchingAttention attention = MatchingAttention::cosine);
// Pretraining's test-time head (Note [Pretraining] in pretrain.cpp): the nearest class centroid of
// L2-normalised features, logits -|q/|q| - mean_c(s/|s|)|^2. Not differentiated (features are taken as data).
Variable centroid_logits(const Variable& support_features, const Tensor& support_y, const Variable& query_features,
                         int64_t ways);
// ParamNet: head weights W = P A^T and biases b_c = s0 |p_c|^2 + s1 predicted from the prototypes P.
std::pair<Variable, Variable> paramnet_head(const Variable& prototypes, const Variable& a, const Variable& s);

}  // namespace metafew::meta
