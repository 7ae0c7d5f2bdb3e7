#include "meta/algorithm.h"

#include "autograd/grad_mode.h"
#include "meta/heads.h"
#include "meta/inner_loop.h"
#include "ops/ops.h"

namespace metafew::meta {

Adapted Algorithm::adapt(const Task& t, int64_t steps) const {
  if (config_.head == TestHead::own) return adapt_own(t, steps);
  MF_USAGE_CHECK(!t.regression(), "--head ", test_head_name(config_.head),
                 " classifies images; a regression model predicts with its own head (--head own)");
  return frozen(t);  // the meta-learned parameters as they are (Note [Test-time heads])
}

Adapted Algorithm::frozen(const Task& t) const {
  Adapted a{{}, t.support_x, t.support_y, t.ways};
  for (const auto& p : params_) a.weights.push_back(p.data());
  return a;
}

Tensor Algorithm::predict_adapted(const Adapted& a, const Tensor& query_x) const {
  if (config_.head == TestHead::own) return predict_own(a, query_x);
  autograd::NoGradGuard ng;
  const AdaptedFeatures f = adapted_features(model_, a, query_x);
  return feature_head_logits(config_.head, f.support, a.support_y, f.query, a.ways, config_.logreg_c);
}

Variable Algorithm::task_loss(const Variable& outputs, const Tensor& labels, bool regression) {
  return regression ? ops::mse(outputs, Variable(labels)) : ops::cross_entropy(outputs, labels);
}

double Algorithm::score(const Tensor& outputs, const Tensor& labels, bool regression) {
  if (regression) {
    autograd::NoGradGuard ng;
    return -ops::mse(Variable(outputs), Variable(labels)).item();
  }
  const int64_t n = outputs.shape()[0], c = outputs.shape()[1];
  std::vector<double> o = outputs.to_vector();
  const int32_t* y = labels.data<int32_t>();
  int64_t correct = 0;
  for (int64_t i = 0; i < n; ++i) {
    int64_t best = 0;
    for (int64_t k = 1; k < c; ++k)
      if (o[static_cast<size_t>(i * c + k)] > o[static_cast<size_t>(i * c + best)]) best = k;
    correct += best == y[i];
  }
  return static_cast<double>(correct) / static_cast<double>(n);
}

Variable class_prototypes(const Variable& fs, const Tensor& ys, int64_t ways) {
  MF_CHECK(fs.dim() == 2 && ys.numel() == fs.shape()[0], "prototypes: ", ys.numel(), " labels for features ",
           tensor::to_string(fs.shape()));
  std::vector<double> counts(static_cast<size_t>(ways), 0.0);
  const int32_t* y = ys.data<int32_t>();
  for (int64_t i = 0; i < ys.numel(); ++i) {
    MF_CHECK(y[i] >= 0 && y[i] < ways, "prototypes: label ", y[i], " outside [0, ", ways, ")");
    counts[static_cast<size_t>(y[i])] += 1;
  }
  for (int64_t c = 0; c < ways; ++c) MF_CHECK(counts[c] > 0, "prototypes: class ", c, " has no support example");
  for (double& c : counts) c = 1.0 / c;
  Variable sums = ops::index_add(fs, 0, ys, ways);
  return ops::mul(sums, Variable(Tensor::from_vector(counts, {ways, 1}, fs.dtype())));
}

Variable protonet_logits(const Variable& fs, const Tensor& ys, const Variable& fq, int64_t ways) {
  return ops::neg(ops::pairwise_sq_distance(fq, class_prototypes(fs, ys, ways)));
}

// Note [Matching Networks attention]: the paper (Vinyals et al. 2016) attends with a softmax over cosine
// similarities, c(q, s) = q . s / (|q| |s|). Our embeddings end in a ReLU, so the cosines lie in [0, 1] and
// the softmax is nearly flat (5-way 1-shot: no class gets more than e / (e + 4) = 0.40), which slows learning
// a great deal (issue 7: 84.3% after 1,500 episodes). The widely used reference implementation
// (AntreasAntoniou/MatchingNetworks, DistanceNetwork) normalises the support embeddings only:
// q . s / |s| = |q| cos(q, s), so the query's norm acts as a learned inverse temperature (96.6% after the
// same 1,500 episodes). matching_attention = supnorm selects that form; cosine (the default) keeps the
// paper's. With one support example per class the two rank the classes alike (|q| > 0 scales a query's
// similarities), so a supnorm-trained model tested with cosine attention (eval --matching-attention) predicts
// the same labels (up to float rounding in a near-tie; the committed Omniglot models give identical figures):
// the forms differ in the training loss, and with several shots in the per-class vote. The support norm uses
// the same guard as cosine_similarity, 1 / sqrt(|s|^2 + 1e-8) (the reference clamps |s|^2 at 1e-10), so an
// all-zero support embedding gives zero similarities instead of a division by zero.
Variable matching_log_probs(const Variable& fs, const Tensor& ys, const Variable& fq, int64_t ways,
                            MatchingAttention attention) {
  const int64_t n = ys.numel();
  std::vector<double> onehot(static_cast<size_t>(n * ways), 0.0);
  const int32_t* y = ys.data<int32_t>();
  for (int64_t i = 0; i < n; ++i) {
    MF_CHECK(y[i] >= 0 && y[i] < ways, "matchingnet: label ", y[i], " outside [0, ", ways, ")");
    onehot[static_cast<size_t>(i * ways + y[i])] = 1.0;
  }
  Variable similarity;  // (Q, N)
  if (attention == MatchingAttention::cosine) {
    similarity = ops::cosine_similarity(fq, fs);
  } else {
    Variable unit = ops::mul(fs, ops::rsqrt(ops::add_scalar(ops::sum(ops::mul(fs, fs), {1}, true), 1e-8)));
    similarity = ops::matmul(fq, unit, false, true);
  }
  Variable weights = ops::softmax(similarity, 1);  // (Q, N)
  Variable probs = ops::matmul(weights, Variable(Tensor::from_vector(onehot, {n, ways}, fs.dtype())));
  // The rows of probs sum to 1, so cross_entropy (which applies log_softmax) on log(probs) is exactly the
  // negative log-likelihood of the attention vote.
  return ops::log(probs);
}

std::pair<Variable, Variable> paramnet_head(const Variable& protos, const Variable& a, const Variable& s) {
  Variable w = ops::matmul(protos, a, false, true);  // (ways, D)
  Variable norms = ops::sum(ops::mul(protos, protos), {1}, true);  // (ways, 1)
  Variable feats = ops::concat({norms, Variable(Tensor::full(norms.shape(), 1.0, norms.dtype()))}, 1);  // (ways, 2)
  Variable b = ops::reshape(ops::matmul(feats, ops::reshape(s, {2, 1})), {protos.shape()[0]});
  return {w, b};
}


void Algorithm::set_state(const std::vector<Tensor>& state) {
  MF_CHECK(state.size() == state_.size(), name(), ": ", state.size(),
           " state tensors given, the algorithm carries ", state_.size());
  for (size_t i = 0; i < state.size(); ++i)
    MF_CHECK(
        state[i].defined() && state[i].shape() == state_[i].shape() && state[i].dtype() == state_[i].dtype(),
        name(), ": state tensor ", state_names_[i], " has shape ",
        state[i].defined() ? tensor::to_string(state[i].shape()) : std::string("(undefined)"), ", expected ",
        tensor::to_string(state_[i].shape()));
  for (size_t i = 0; i < state.size(); ++i) state_[i] = state[i].clone();
}


}  // namespace metafew::meta
