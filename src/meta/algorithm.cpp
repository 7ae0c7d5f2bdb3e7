#include "meta/algorithm.h"

#include <cmath>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "ops/ops.h"
#include "optim/optimizer.h"
#include "tensor/kernels.h"

namespace metafew::meta {

namespace {

std::vector<Variable> slice_params(const std::vector<Variable>& p, size_t begin, size_t end) {
  return std::vector<Variable>(p.begin() + static_cast<std::ptrdiff_t>(begin), p.begin() + static_cast<std::ptrdiff_t>(end));
}

// Writes the gradients of `loss` with respect to `wrt` into grads[offset ...], zeros where unused.
void write_grads(const Variable& loss, const std::vector<Variable>& wrt, std::vector<Tensor>& grads) {
  auto g = autograd::grad({loss}, wrt, {}, {.allow_unused = true});
  grads.resize(wrt.size());
  for (size_t i = 0; i < wrt.size(); ++i) grads[i] = g[i].defined() ? g[i].data() : Tensor::zeros(wrt[i].shape(), wrt[i].dtype());
}

// One gradient step on fast weights: fast_i - lr_i * dL/dfast_i (recorded when create_graph).
std::vector<Variable> sgd_step(const std::vector<Variable>& fast, const Variable& loss, bool create_graph,
                               double lr, const std::vector<Variable>* rates) {
  auto g = autograd::grad({loss}, fast, {}, {.create_graph = create_graph, .allow_unused = true});
  std::vector<Variable> next(fast.size());
  for (size_t i = 0; i < fast.size(); ++i) {
    if (!g[i].defined()) {
      next[i] = fast[i];
      continue;
    }
    next[i] = rates ? ops::sub(fast[i], ops::mul((*rates)[i], g[i])) : ops::sub(fast[i], ops::mul_scalar(g[i], lr));
  }
  return next;
}

// Query outputs of an adapted gradient-based model (weights = a full parameter list of the model).
Tensor forward_query(const nn::Model& model, const Adapted& a, const Tensor& query_x) {
  autograd::NoGradGuard ng;
  std::vector<Variable> p;
  for (const auto& t : a.weights) p.emplace_back(t);
  MF_CHECK(p.size() == model.specs().size(), "predict: the adapted model has ", p.size(), " tensors, the model ",
           model.specs().size());
  if (model.config().bn == nn::BnMode::support && model.config().arch == "conv4") {
    auto [fs, fq] = model.embed_pair(p, Variable(a.support_x), Variable(query_x));
    return nn::Model::head(p[model.head_begin()], p[model.head_begin() + 1], fq).data();
  }
  return model.forward(p, Variable(query_x)).data();
}

// ---- MAML family: MAML, first-order MAML, Meta-SGD -------------------------------------------------------
class Maml : public Algorithm {
 public:
  Maml(nn::Model model, AlgoConfig config, core::Rng& rng) : Algorithm(std::move(model), std::move(config)) {
    params_ = model_.init(rng);
    for (const auto& s : model_.specs()) names_.push_back(s.name);
    if (config_.algo == "metasgd") {
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

  Adapted adapt(const Task& t, int64_t steps) const override {
    std::vector<Variable> fast;
    const size_t n = model_.specs().size();
    for (size_t i = 0; i < n; ++i) fast.emplace_back(params_[i].data(), true);
    std::vector<Variable> rates;
    if (config_.algo == "metasgd")
      for (size_t i = n; i < 2 * n; ++i) rates.push_back(params_[i].detach());
    Variable xs(t.support_x);
    for (int64_t s = 0; s < steps; ++s) {
      Variable loss = task_loss(model_.forward(fast, xs), t.support_y, t.regression());
      fast = sgd_step(fast, loss, false, config_.inner_lr, rates.empty() ? nullptr : &rates);
      for (auto& p : fast) p = Variable(p.data(), true);
    }
    Adapted a{{}, t.support_x, t.support_y, t.ways};
    for (const auto& p : fast) a.weights.push_back(p.data());
    return a;
  }

  Tensor predict_adapted(const Adapted& a, const Tensor& query_x) const override {
    return forward_query(model_, a, query_x);
  }

 private:
  // Query outputs after `steps` inner steps, with the whole computation recorded for the meta-gradient.
  Variable adapted_query_outputs(const Task& t, int64_t steps, bool create_graph) const {
    const size_t n = model_.specs().size();
    std::vector<Variable> fast = slice_params(params_, 0, n);
    std::vector<Variable> rates;
    if (config_.algo == "metasgd") rates = slice_params(params_, n, 2 * n);
    Variable xs(t.support_x), xq(t.query_x);
    for (int64_t s = 0; s < steps; ++s) {
      Variable loss = task_loss(model_.forward(fast, xs), t.support_y, t.regression());
      fast = sgd_step(fast, loss, create_graph, config_.inner_lr, rates.empty() ? nullptr : &rates);
    }
    if (model_.config().bn == nn::BnMode::support) {
      auto [fs, fq] = model_.embed_pair(fast, xs, xq);
      return nn::Model::head(fast[model_.head_begin()], fast[model_.head_begin() + 1], fq);
    }
    return model_.forward(fast, xq);
  }
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

  Adapted adapt(const Task& t, int64_t steps) const override {
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

  Tensor predict_adapted(const Adapted& a, const Tensor& query_x) const override {
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

// ---- Reptile ---------------------------------------------------------------------------------------------
class Reptile : public Algorithm {
 public:
  Reptile(nn::Model model, AlgoConfig config, core::Rng& rng) : Algorithm(std::move(model), std::move(config)) {
    params_ = model_.init(rng);
    for (const auto& s : model_.specs()) names_.push_back(s.name);
    MF_CHECK(config_.inner_optimizer == "adam" || config_.inner_optimizer == "sgd",
             "reptile: inner optimizer must be adam or sgd, got '", config_.inner_optimizer, "'");
    MF_CHECK(config_.inner_batch > 0, "reptile: inner batch must be positive, got ", config_.inner_batch);
  }

  TaskOutput meta_gradient(const Task& t, std::vector<Tensor>& grads) const override {
    std::vector<Variable> fast = inner_loop(t, config_.inner_steps);
    grads.resize(params_.size());
    for (size_t i = 0; i < params_.size(); ++i)
      grads[i] = tensor::binary(tensor::BinaryOp::sub, params_[i].data(), fast[i].data());
    autograd::NoGradGuard ng;
    Variable out = model_.forward(fast, Variable(t.query_x));
    return {task_loss(out, t.query_y, t.regression()).item(), score(out.data(), t.query_y, t.regression())};
  }

  Adapted adapt(const Task& t, int64_t steps) const override {
    Adapted a{{}, t.support_x, t.support_y, t.ways};
    for (const auto& p : inner_loop(t, steps)) a.weights.push_back(p.data());
    return a;
  }

  Tensor predict_adapted(const Adapted& a, const Tensor& query_x) const override {
    return forward_query(model_, a, query_x);
  }

 private:
  // k inner iterations on mini-batches drawn from the support set without replacement (reshuffled each pass).
  std::vector<Variable> inner_loop(const Task& t, int64_t steps) const {
    std::vector<Variable> fast;
    for (const Variable& p : params_) fast.emplace_back(p.data().clone(), true);
    std::unique_ptr<optim::Optimizer> opt;
    if (config_.inner_optimizer == "adam")
      opt = std::make_unique<optim::Adam>(config_.inner_lr, optim::Schedule{}, 0.0, 0.999, 1e-8);
    else
      opt = std::make_unique<optim::Sgd>(config_.inner_lr);
    const int64_t n = t.support_x.shape()[0];
    const int64_t b = std::min(config_.inner_batch, n);
    core::Rng rng(core::derive_key(t.seed, {0x5245505449ULL}));
    std::vector<int32_t> order(static_cast<size_t>(n));
    int64_t at = n;
    for (int64_t s = 0; s < steps; ++s) {
      std::vector<int32_t> pick;
      while (static_cast<int64_t>(pick.size()) < b) {
        if (at == n) {
          for (int64_t i = 0; i < n; ++i) order[static_cast<size_t>(i)] = static_cast<int32_t>(i);
          rng.shuffle(order.begin(), order.end());
          at = 0;
        }
        pick.push_back(order[static_cast<size_t>(at++)]);
      }
      Tensor idx = Tensor::from_indices(pick, {b});
      Variable x(tensor::index_select(t.support_x, 0, idx));
      Tensor y = tensor::index_select(t.regression() ? t.support_y : t.support_y.reshape({n}), 0, idx);
      Variable loss = task_loss(model_.forward(fast, x), y, t.regression());
      auto g = autograd::grad({loss}, fast, {}, {.allow_unused = true});
      std::vector<Tensor> gt;
      for (size_t i = 0; i < fast.size(); ++i) gt.push_back(g[i].defined() ? g[i].data() : Tensor());
      opt->step(fast, gt);
    }
    return fast;
  }
};

// ---- Prototypical Networks, Matching Networks, ParamNet ----------------------------------------------------
class Metric : public Algorithm {
 public:
  Metric(nn::Model model, AlgoConfig config, core::Rng& rng) : Algorithm(std::move(model), std::move(config)) {
    params_ = model_.init(rng);
    for (const auto& s : model_.specs()) names_.push_back(s.name);
    if (config_.algo == "paramnet") {
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
  }

  TaskOutput meta_gradient(const Task& t, std::vector<Tensor>& grads) const override {
    MF_CHECK(!t.regression(), name(), ": metric methods need a classification task");
    Variable out = logits(t, config_.refine_steps, !config_.first_order, true);
    Variable loss = ops::cross_entropy(out, t.query_y);
    TaskOutput r{loss.item(), score(out.data(), t.query_y, false)};
    write_grads(loss, params_, grads);
    return r;
  }

  Adapted adapt(const Task& t, int64_t steps) const override {
    Adapted a{{}, t.support_x, t.support_y, t.ways};
    for (const auto& p : params_) a.weights.push_back(p.data());
    if (config_.algo == "paramnet") {
      // The predicted (and refined) head is part of the adapted model.
      Task support_only = t;
      support_only.query_x = t.support_x;
      auto [w, b] = paramnet_adapted_head(support_only, steps);
      a.weights.push_back(w);
      a.weights.push_back(b);
    }
    return a;
  }

  Tensor predict_adapted(const Adapted& a, const Tensor& query_x) const override {
    autograd::NoGradGuard ng;
    std::vector<Variable> p;
    for (const auto& t : a.weights) p.emplace_back(t);
    auto [fs, fq] = model_.embed_pair(p, Variable(a.support_x), Variable(query_x));
    if (config_.algo == "protonet") return protonet_logits(fs, a.support_y, fq, a.ways).data();
    if (config_.algo == "matchingnet") return matching_log_probs(fs, a.support_y, fq, a.ways).data();
    const size_t n = params_.size();
    MF_CHECK(a.weights.size() == n + 2, "paramnet: the adapted model lacks its predicted head");
    return nn::Model::head(p[n], p[n + 1], fq).data();
  }

 private:
  Variable logits(const Task& t, int64_t steps, bool create_graph, bool meta) const {
    autograd::GradModeGuard mode(meta);
    auto [fs, fq] = model_.embed_pair(params_, Variable(t.support_x), Variable(t.query_x));
    if (config_.algo == "protonet") return protonet_logits(fs, t.support_y, fq, t.ways);
    if (config_.algo == "matchingnet") return matching_log_probs(fs, t.support_y, fq, t.ways);
    return paramnet_refined(fs, fq, t, steps, create_graph, meta);
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
};

}  // namespace

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

Variable matching_log_probs(const Variable& fs, const Tensor& ys, const Variable& fq, int64_t ways) {
  const int64_t n = ys.numel();
  std::vector<double> onehot(static_cast<size_t>(n * ways), 0.0);
  const int32_t* y = ys.data<int32_t>();
  for (int64_t i = 0; i < n; ++i) {
    MF_CHECK(y[i] >= 0 && y[i] < ways, "matchingnet: label ", y[i], " outside [0, ", ways, ")");
    onehot[static_cast<size_t>(i * ways + y[i])] = 1.0;
  }
  Variable attention = ops::softmax(ops::cosine_similarity(fq, fs), 1);  // (Q, N)
  Variable probs = ops::matmul(attention, Variable(Tensor::from_vector(onehot, {n, ways}, fs.dtype())));
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

bool algorithm_uses_head(const std::string& algo) {
  return algo != "protonet" && algo != "matchingnet" && algo != "paramnet";
}

const std::vector<std::string>& algorithm_names() {
  static const std::vector<std::string> names{"maml",    "fomaml",   "metasgd",     "anil",
                                              "reptile", "protonet", "matchingnet", "paramnet"};
  return names;
}

std::unique_ptr<Algorithm> make_algorithm(const nn::Model& model, const AlgoConfig& config, core::Rng& rng) {
  AlgoConfig c = config;
  const bool head = algorithm_uses_head(c.algo);
  MF_USAGE_CHECK(!head || model.config().outputs > 0, c.algo, ": the model needs a head (outputs > 0)");
  MF_USAGE_CHECK(c.inner_steps >= 0, c.algo, ": inner steps must be >= 0, got ", c.inner_steps);
  MF_USAGE_CHECK(std::isfinite(c.inner_lr) && c.inner_lr >= 0, c.algo, ": inner learning rate must be >= 0, got ",
                 c.inner_lr);
  if (c.algo == "maml" || c.algo == "metasgd") return std::make_unique<Maml>(model, c, rng);
  if (c.algo == "fomaml") {
    c.first_order = true;
    return std::make_unique<Maml>(model, c, rng);
  }
  if (c.algo == "anil") return std::make_unique<Anil>(model, c, rng);
  if (c.algo == "reptile") return std::make_unique<Reptile>(model, c, rng);
  if (c.algo == "protonet" || c.algo == "matchingnet" || c.algo == "paramnet") {
    MF_USAGE_CHECK(model.config().outputs == 0, c.algo, ": metric methods use a model without a head (outputs 0)");
    return std::make_unique<Metric>(model, c, rng);
  }
  std::string list;
  for (const auto& n : algorithm_names()) list += (list.empty() ? "" : ", ") + n;
  throw Error(detail::concat("unknown algorithm '", c.algo, "' (expected one of: ", list, ")"), ErrorKind::usage);
}

}  // namespace metafew::meta
