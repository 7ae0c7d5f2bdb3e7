#include "nn/model.h"

#include <cmath>

#include "ops/ops.h"

namespace metafew::nn {

Model::Model(ModelConfig config)
    : config_(std::move(config)), backbone_(find_backbone(config_.arch).make(config_)), specs_(backbone_->specs()) {
  head_begin_ = specs_.size();
  if (config_.outputs > 0) {
    specs_.push_back({"head.weight", {config_.outputs, backbone_->feature_dim()}, ParamSpec::Role::weight});
    specs_.push_back({"head.bias", {config_.outputs}, ParamSpec::Role::bias});
  }
}

std::vector<Variable> Model::init(core::Rng& rng) const {
  std::vector<Variable> params;
  for (size_t at = 0; at < specs_.size(); ++at) {
    const ParamSpec& s = specs_[at];
    tensor::Tensor t = tensor::Tensor::zeros(s.shape);
    if (s.role == ParamSpec::Role::bn_scale) {
      t.fill_(1.0);
    } else if (s.role == ParamSpec::Role::weight) {
      // He-uniform (bound sqrt(6 / fan_in)) for backbone weights, LeCun-uniform (sqrt(3 / fan_in)) for the head.
      int64_t fan_in = 1;
      for (size_t i = 1; i < s.shape.size(); ++i) fan_in *= s.shape[i];
      const bool head = at >= head_begin_;
      float* p = t.data<float>();
      if (head && config_.head_init == ModelConfig::HeadInit::normal) {
        for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<float>(rng.normal());
      } else {
        const double bound = std::sqrt(3.0 / static_cast<double>(fan_in)) * (head ? 1.0 : std::sqrt(2.0));
        for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<float>(rng.uniform(-bound, bound));
      }
    }
    params.emplace_back(t, true);
  }
  return params;
}

namespace {

template <class T>
void normalise_planes(const T* x, T* y, int64_t n, int64_t channels, int64_t plane, const std::vector<float>& mean,
                      const std::vector<float>& sd) {
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < channels; ++c) {
      const T m = static_cast<T>(mean[static_cast<size_t>(c)]), s = static_cast<T>(sd[static_cast<size_t>(c)]);
      const int64_t at = (i * channels + c) * plane;
      for (int64_t k = 0; k < plane; ++k) y[at + k] = (x[at + k] - m) / s;
    }
}

}  // namespace

Variable Model::input(const Variable& x) const {
  if (config_.input_mean.empty() || !x.defined()) return x;
  const Shape& s = x.shape();
  const auto channels = static_cast<int64_t>(config_.input_mean.size());
  MF_CHECK(s.size() == 4 && s[1] == channels && config_.input_std.size() == config_.input_mean.size(),
           "model: input normalisation has ", channels, " channel values, the input has shape ", tensor::to_string(s));
  const tensor::Tensor& t = x.data();
  tensor::Tensor y = tensor::Tensor::empty(s, t.dtype());
  const int64_t plane = s[2] * s[3];
  if (t.dtype() == tensor::DType::f64)
    normalise_planes(t.data<double>(), y.data<double>(), s[0], channels, plane, config_.input_mean, config_.input_std);
  else
    normalise_planes(t.data<float>(), y.data<float>(), s[0], channels, plane, config_.input_mean, config_.input_std);
  return Variable(y);
}

Variable Model::embed(const std::vector<Variable>& params, const Variable& x) const {
  MF_CHECK(params.size() >= head_begin_, "model: ", params.size(), " parameters given, the backbone needs ",
           head_begin_);
  return backbone_->forward(params, Stream{input(x), Variable()}).x;
}

std::pair<Variable, Variable> Model::embed_pair(const std::vector<Variable>& params, const Variable& xs,
                                                const Variable& xq) const {
  if (!queries_use_support()) return {embed(params, xs), embed(params, xq)};
  if (config_.bn == BnMode::nontransductive) {
    const int64_t ns = xs.shape()[0], nq = xq.shape()[0];
    std::vector<Variable> rows;
    rows.reserve(static_cast<size_t>(nq));
    for (int64_t q = 0; q < nq; ++q) {
      Variable both = ops::concat({xs, ops::slice(xq, 0, q, q + 1)}, 0);
      rows.push_back(ops::slice(embed(params, both), 0, ns, ns + 1));
    }
    return {embed(params, xs), ops::concat(rows, 0)};
  }
  MF_CHECK(params.size() >= head_begin_, "model: ", params.size(), " parameters given, the backbone needs ",
           head_begin_);
  Stream out = backbone_->forward(params, Stream{input(xq), input(xs)});
  return {out.support, out.x};
}

Variable Model::head(const Variable& w, const Variable& b, const Variable& features) {
  return ops::linear(features, w, b);
}

Variable Model::forward(const std::vector<Variable>& params, const Variable& x) const {
  MF_CHECK(config_.outputs > 0, "model: forward needs a head (outputs > 0)");
  MF_CHECK(params.size() == specs_.size(), "model: ", params.size(), " parameters given, expected ", specs_.size());
  return head(params[head_begin_], params[head_begin_ + 1], embed(params, x));
}

double Model::forward_macs(int64_t n) const {
  double macs = backbone_->forward_macs(n);
  if (config_.outputs > 0) macs += static_cast<double>(n) * backbone_->feature_dim() * config_.outputs;
  return macs;
}

}  // namespace metafew::nn
