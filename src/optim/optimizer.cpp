#include "optim/optimizer.h"

#include <cmath>

namespace metafew::optim {

double Schedule::at(double lr, int64_t t) const {
  if (kind == "constant") return lr;
  if (kind == "step") return lr * std::pow(gamma, static_cast<double>(t / std::max<int64_t>(1, step_size)));
  if (kind == "cosine" || kind == "linear") {
    MF_CHECK(total > 0, "schedule ", kind, ": the total number of steps must be positive");
    const double f = std::min(1.0, static_cast<double>(t) / static_cast<double>(total));
    return kind == "linear" ? lr * (1.0 - f) : lr * 0.5 * (1.0 + std::cos(M_PI * f));
  }
  throw Error(detail::concat("--schedule must be constant, step, cosine or linear, got '", kind, "'"),
              ErrorKind::usage);
}

void Optimizer::load_state(int64_t steps, const std::vector<Tensor>& state) {
  MF_CHECK(state.empty(), "optimizer: unexpected state of ", state.size(), " tensors for a stateless optimizer");
  steps_ = steps;
}

namespace {
void check_grads(const std::vector<Variable>& params, const std::vector<Tensor>& grads, const char* op) {
  MF_CHECK(params.size() == grads.size(), op, ": ", grads.size(), " gradients for ", params.size(), " parameters");
  for (size_t i = 0; i < params.size(); ++i)
    MF_CHECK(!grads[i].defined() || grads[i].shape() == params[i].shape(), op, ": gradient ", i, " has shape ",
             tensor::to_string(grads[i].shape()), ", the parameter ", tensor::to_string(params[i].shape()));
}
}  // namespace

void Sgd::step(std::vector<Variable>& params, const std::vector<Tensor>& grads) {
  check_grads(params, grads, "sgd");
  const float lr = static_cast<float>(current_lr());
  const float mu = static_cast<float>(momentum_), wd = static_cast<float>(weight_decay_);
  if (momentum_ > 0 && velocity_.empty())
    for (const Variable& p : params) velocity_.push_back(Tensor::zeros(p.shape()));
  MF_CHECK(momentum_ == 0 || velocity_.size() == params.size(), "sgd: momentum for ", velocity_.size(),
           " parameters, given ", params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    if (!grads[i].defined()) continue;
    float* __restrict w = params[i].mutable_data().data<float>();
    const float* __restrict g = grads[i].data<float>();
    const int64_t n = grads[i].numel();
    if (momentum_ > 0) {
      float* __restrict v = velocity_[i].data<float>();
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) {
        v[j] = mu * v[j] + (g[j] + wd * w[j]);
        w[j] -= lr * v[j];
      }
    } else if (weight_decay_ > 0) {
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) w[j] -= lr * (g[j] + wd * w[j]);
    } else {
      for (int64_t j = 0; j < n; ++j) w[j] -= lr * g[j];
    }
  }
  ++steps_;
}

void Sgd::load_state(int64_t steps, const std::vector<Tensor>& state) {
  MF_CHECK(momentum_ > 0 || state.empty(), "sgd: a momentum state of ", state.size(),
           " tensors for SGD without momentum");
  velocity_.clear();
  for (const Tensor& t : state) velocity_.push_back(t.clone());
  steps_ = steps;
}

void Adam::step(std::vector<Variable>& params, const std::vector<Tensor>& grads) {
  check_grads(params, grads, "adam");
  if (m_.empty()) {
    for (const Variable& p : params) {
      m_.push_back(Tensor::zeros(p.shape()));
      v_.push_back(Tensor::zeros(p.shape()));
    }
  }
  MF_CHECK(m_.size() == params.size(), "adam: state for ", m_.size(), " parameters, given ", params.size());
  const double lr = current_lr();
  const int64_t t = steps_ + 1;
  const double c1 = 1.0 - std::pow(beta1_, static_cast<double>(t));
  const double c2 = 1.0 - std::pow(beta2_, static_cast<double>(t));
  const float b1 = static_cast<float>(beta1_), b2 = static_cast<float>(beta2_);
  const float step = static_cast<float>(lr / c1), rc2 = static_cast<float>(1.0 / std::sqrt(c2));
  const float eps = static_cast<float>(eps_), wd = static_cast<float>(weight_decay_);
  for (size_t i = 0; i < params.size(); ++i) {
    if (!grads[i].defined()) continue;
    // Distinct tensors (restrict): without it GCC keeps the loop scalar, and Reptile's inner loop runs an
    // Adam step per task step.
    float* __restrict w = params[i].mutable_data().data<float>();
    const float* __restrict g = grads[i].data<float>();
    float* __restrict m = m_[i].data<float>();
    float* __restrict v = v_[i].data<float>();
    const int64_t n = grads[i].numel();
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) {
      const float gj = g[j] + wd * w[j];
      m[j] = b1 * m[j] + (1 - b1) * gj;
      v[j] = b2 * v[j] + (1 - b2) * gj * gj;
      w[j] -= step * m[j] / (std::sqrt(v[j]) * rc2 + eps);
    }
  }
  steps_ = t;
}

std::vector<Tensor> Adam::state() const {
  std::vector<Tensor> s = m_;
  s.insert(s.end(), v_.begin(), v_.end());
  return s;
}

void Adam::load_state(int64_t steps, const std::vector<Tensor>& state) {
  MF_CHECK(state.size() % 2 == 0, "adam: state must hold first and second moments, got ", state.size(), " tensors");
  m_.assign(state.begin(), state.begin() + static_cast<std::ptrdiff_t>(state.size() / 2));
  v_.assign(state.begin() + static_cast<std::ptrdiff_t>(state.size() / 2), state.end());
  for (auto& t : m_) t = t.clone();
  for (auto& t : v_) t = t.clone();
  steps_ = steps;
}

}  // namespace metafew::optim
