#pragma once
// Outer-loop optimisers on leaf parameters (in place, f32), with learning-rate schedules. Their state is
// plain tensors and a step count, exposed for checkpoints.
#include <string>
#include <vector>

#include "autograd/variable.h"

namespace metafew::optim {

using autograd::Variable;
using tensor::Tensor;

struct Schedule {
  std::string kind = "constant";  // constant | step | cosine | linear
  int64_t step_size = 2000;       // step: multiply by gamma every step_size steps
  double gamma = 0.5;
  int64_t total = 0;              // cosine / linear: steps to reach 0 (linear) or the cosine's end
  // The learning rate at (0-based) step `t` for base rate `lr`.
  double at(double lr, int64_t t) const;
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // Applies one update with the given gradients (same shapes as the parameters; undefined = no gradient).
  virtual void step(std::vector<Variable>& params, const std::vector<Tensor>& grads) = 0;
  int64_t steps() const { return steps_; }
  double current_lr() const { return schedule_.at(lr_, steps_); }
  // State for checkpoints: the step count and the moment tensors (empty for SGD).
  virtual std::vector<Tensor> state() const { return {}; }
  virtual void load_state(int64_t steps, const std::vector<Tensor>& state);

 protected:
  Optimizer(double lr, Schedule schedule) : lr_(lr), schedule_(std::move(schedule)) {}
  double lr_;
  Schedule schedule_;
  int64_t steps_ = 0;
};

// Both optimisers take weight decay as PyTorch's weight_decay: an L2 term wd * w added to each gradient
// before the update (so Adam scales it too; not AdamW's decoupled decay).

// SGD, with PyTorch's momentum: v = momentum * v + (g + wd * w), w -= lr * v (v starts at 0, so the first
// step is plain SGD). Momentum 0 keeps no state.
class Sgd : public Optimizer {
 public:
  Sgd(double lr, Schedule schedule = {}, double momentum = 0, double weight_decay = 0)
      : Optimizer(lr, std::move(schedule)), momentum_(momentum), weight_decay_(weight_decay) {}
  void step(std::vector<Variable>& params, const std::vector<Tensor>& grads) override;
  std::vector<Tensor> state() const override { return velocity_; }
  void load_state(int64_t steps, const std::vector<Tensor>& state) override;

 private:
  double momentum_, weight_decay_;
  std::vector<Tensor> velocity_;
};

// Adam (Kingma & Ba) with bias correction; beta1 = 0 gives Reptile's inner optimiser.
class Adam : public Optimizer {
 public:
  Adam(double lr, Schedule schedule = {}, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8,
       double weight_decay = 0)
      : Optimizer(lr, std::move(schedule)), beta1_(beta1), beta2_(beta2), eps_(eps), weight_decay_(weight_decay) {}
  void step(std::vector<Variable>& params, const std::vector<Tensor>& grads) override;
  std::vector<Tensor> state() const override;
  void load_state(int64_t steps, const std::vector<Tensor>& state) override;

 private:
  double beta1_, beta2_, eps_, weight_decay_;
  std::vector<Tensor> m_, v_;
};

}  // namespace metafew::optim
