#pragma once
// Thread-local grad mode: when off, ops record no graph. The engine runs backward rules with grad mode equal
// to create_graph, which is what makes second-order gradients fall out of the same rules.
namespace metafew::autograd {

bool grad_mode_enabled();
void set_grad_mode(bool enabled);

class GradModeGuard {
 public:
  explicit GradModeGuard(bool enabled) : previous_(grad_mode_enabled()) { set_grad_mode(enabled); }
  ~GradModeGuard() { set_grad_mode(previous_); }
  GradModeGuard(const GradModeGuard&) = delete;
  GradModeGuard& operator=(const GradModeGuard&) = delete;

 private:
  bool previous_;
};

class NoGradGuard : public GradModeGuard {
 public:
  NoGradGuard() : GradModeGuard(false) {}
};

}  // namespace metafew::autograd
