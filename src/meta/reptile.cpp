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

// ---- Reptile ---------------------------------------------------------------------------------------------
// Note [Reptile's inner optimiser state]: supervised-reptile (openai/supervised-reptile, reptile.py) resets
// only the trainable variables between tasks (its VariableState covers tf.trainable_variables()); the inner
// Adam's slots and beta-power accumulators are non-trainable variables, so they carry over from task to task
// through the whole of meta-training, and evaluate() saves and restores the full state around each test task,
// so that every test task starts its 50 steps from the state meta-training ended with. With inner_state =
// carry (the default) the same happens here, in a form that does not depend on the thread count:
//   - every task of a meta-batch starts from the carried state (the tasks run in parallel, so the sequential
//     chain task 1 -> task 2 -> ... of the reference cannot be followed);
//   - after the meta-step the carried state becomes the mean, in task order, of the tasks' final states (the
//     second moments v; beta1 = 0, so the first moment is the last gradient and is not carried), and the step
//     count advances by the inner steps of one task: it counts the decays v has undergone, which is what
//     Adam's bias correction 1 - beta2^t needs. (The reference advances by meta-batch x inner steps, so its v
//     forgets meta-batch times faster per meta-iteration; with beta2 = 0.999 both are long averages.)
//   - validation and test tasks start from the carried state and leave it unchanged.
// The state is part of the training state: checkpoints keep it ("state/..." tensors), --resume restores it.
// inner_state = fresh gives every task a fresh optimiser (metafew before issue 7; checkpoints written then
// carry no state and load as fresh). With the sgd inner optimiser there is no state to carry.
class Reptile : public Algorithm {
 public:
  Reptile(nn::Model model, AlgoConfig config, core::Rng& rng) : Algorithm(std::move(model), std::move(config)) {
    params_ = model_.init(rng);
    for (const auto& s : model_.specs()) names_.push_back(s.name);
    MF_CHECK(config_.inner_optimizer == "adam" || config_.inner_optimizer == "sgd",
             "reptile: inner optimizer must be adam or sgd, got '", config_.inner_optimizer, "'");
    MF_CHECK(config_.inner_batch > 0, "reptile: inner batch must be positive, got ", config_.inner_batch);
    if (config_.carry_inner_state && config_.inner_optimizer == "adam") {
      // A zero state with step count 0 is exactly a fresh Adam: the first meta-iteration is the same either
      // way.
      for (size_t i = 0; i < params_.size(); ++i) {
        state_.push_back(Tensor::zeros(params_[i].shape()));
        state_names_.push_back("inner_adam.v." + names_[i]);
      }
      state_.push_back(Tensor::from_indices({0}, {1}));
      state_names_.push_back("inner_adam.steps");
    }
  }

  TaskOutput meta_gradient(const Task& t, std::vector<Tensor>& grads) const override {
    TaskOutput r;
    std::vector<Variable> fast = inner_loop(t, config_.inner_steps, &r.state, &r);
    grads.resize(params_.size());
    for (size_t i = 0; i < params_.size(); ++i)
      grads[i] = tensor::binary(tensor::BinaryOp::sub, params_[i].data(), fast[i].data());
    if (config_.inner_steps > 0) return r;  // the log's loss and accuracy: the last inner mini-batch's
    autograd::NoGradGuard ng;
    Variable out = model_.forward(fast, Variable(t.query_x));
    r.loss = task_loss(out, t.query_y, t.regression()).item();
    r.accuracy = score(out.data(), t.query_y, t.regression());
    return r;
  }

  Adapted adapt_own(const Task& t, int64_t steps) const override {
    Adapted a{{}, t.support_x, t.support_y, t.ways};
    for (const auto& p : inner_loop(t, steps, nullptr)) a.weights.push_back(p.data());
    return a;
  }

  Tensor predict_own(const Adapted& a, const Tensor& query_x) const override {
    return forward_query(model_, a, query_x);
  }

 private:
  // k inner iterations on mini-batches drawn from the support set without replacement (reshuffled each pass),
  // the Adam optimiser starting from the carried state when there is one. The optimiser's final state goes to
  // `end_state` (when given and carried). `log` (when given) gets the loss and accuracy of the last mini-batch,
  // before its step: the training log's figures, as supervised-reptile's and the PyTorch reference's, with no
  // forward pass of its own (a query forward for the log cost ~13% of a 20-way meta-iteration).
  std::vector<Variable> inner_loop(const Task& t, int64_t steps, std::vector<Tensor>* end_state,
                                   TaskOutput* log = nullptr) const {
    std::vector<Variable> fast;
    for (const Variable& p : params_) fast.emplace_back(p.data().clone(), true);
    std::unique_ptr<optim::Optimizer> opt;
    if (config_.inner_optimizer == "adam") {
      auto adam = std::make_unique<optim::Adam>(config_.inner_lr, optim::Schedule{}, 0.0, 0.999, 1e-8);
      if (!state_.empty()) {
        // beta1 = 0: the first moment is replaced by the first step's gradient, so zeros stand in for it.
        const size_t nv = state_.size() - 1;
        std::vector<Tensor> moments;
        for (size_t i = 0; i < nv; ++i) moments.push_back(Tensor::zeros(state_[i].shape()));
        for (size_t i = 0; i < nv; ++i) moments.push_back(state_[i]);
        adam->load_state(state_[nv].data<int32_t>()[0], moments);  // copies the tensors
      }
      opt = std::move(adam);
    } else {
      opt = std::make_unique<optim::Sgd>(config_.inner_lr);
    }
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
      Variable out = model_.forward(fast, x);
      Variable loss = task_loss(out, y, t.regression());
      if (log && s + 1 == steps) {
        log->loss = loss.item();
        log->accuracy = score(out.data(), y, t.regression());
      }
      auto g = autograd::grad({loss}, fast, {}, {.allow_unused = true});
      std::vector<Tensor> gt;
      for (size_t i = 0; i < fast.size(); ++i) gt.push_back(g[i].defined() ? g[i].data() : Tensor());
      opt->step(fast, gt);
    }
    if (end_state && !state_.empty()) {
      const std::vector<Tensor> moments = opt->state();  // first moments, then second moments
      MF_CHECK(opt->steps() < std::numeric_limits<int32_t>::max(), "reptile: the inner step count ",
               opt->steps(), " no longer fits the checkpoint's 32-bit counter");
      end_state->assign(moments.begin() + static_cast<std::ptrdiff_t>(moments.size() / 2), moments.end());
      end_state->push_back(Tensor::from_indices({static_cast<int32_t>(opt->steps())}, {1}));
    }
    return fast;
  }
};


}  // namespace

std::unique_ptr<Algorithm> make_reptile(const nn::Model& model, const AlgoConfig& config, core::Rng& rng) {
  return std::make_unique<Reptile>(model, config, rng);
}

}  // namespace metafew::meta
