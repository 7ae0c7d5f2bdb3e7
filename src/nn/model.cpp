#include "nn/model.h"

#include <cmath>

#include "ops/ops.h"

namespace metafew::nn {

namespace {
constexpr double kBnEps = 1e-5;

// Batch norm of hs with its own statistics and of hq with hs's (bn = support), written with ops so that every
// derivative order exists.
std::pair<Variable, Variable> bn_support_stats(const Variable& hs, const Variable& hq, const Variable& gamma,
                                               const Variable& beta) {
  const std::vector<int64_t> axes = hs.dim() == 4 ? std::vector<int64_t>{0, 2, 3} : std::vector<int64_t>{0};
  const Shape bshape = hs.dim() == 4 ? Shape{1, hs.shape()[1], 1, 1} : Shape{1, hs.shape()[1]};
  Variable mu = ops::mean(hs, axes, true);
  Variable xc = ops::sub(hs, mu);
  Variable inv = ops::rsqrt(ops::add_scalar(ops::mean(ops::mul(xc, xc), axes, true), kBnEps));
  Variable scale = ops::mul(inv, ops::reshape(gamma, bshape));
  Variable shift = ops::reshape(beta, bshape);
  return {ops::add(ops::mul(xc, scale), shift), ops::add(ops::mul(ops::sub(hq, mu), scale), shift)};
}
}  // namespace

Model::Model(ModelConfig config) : config_(std::move(config)) {
  const ModelConfig& c = config_;
  if (c.arch == "conv4") {
    MF_CHECK(c.in_channels > 0 && c.height > 0 && c.width > 0 && c.filters > 0, "conv4: invalid input ",
             c.in_channels, "x", c.height, "x", c.width, " or filters ", c.filters);
    int64_t ch = c.in_channels, h = c.height, w = c.width;
    for (int b = 0; b < 4; ++b) {
      const std::string p = "block" + std::to_string(b + 1) + ".";
      specs_.push_back({p + "conv.weight", {c.filters, ch, 3, 3}});
      specs_.push_back({p + "conv.bias", {c.filters}});
      if (c.bn_scale) specs_.push_back({p + "bn.weight", {c.filters}});
      specs_.push_back({p + "bn.bias", {c.filters}});
      ch = c.filters;
      if (c.max_pool) {
        MF_CHECK(h >= 2 && w >= 2, "conv4: input ", c.height, "x", c.width, " is too small for four 2x2 pools");
        h /= 2;
        w /= 2;
      } else {
        h = (h + 2 - 3) / 2 + 1;
        w = (w + 2 - 3) / 2 + 1;
      }
      block_out_.push_back({ch, h, w});
    }
    feature_dim_ = c.features == ModelConfig::Features::mean ? ch : ch * h * w;
    per_block_ = c.bn_scale ? 4 : 3;
  } else if (c.arch == "mlp") {
    int64_t in = c.in_features;
    for (size_t i = 0; i < c.hidden.size(); ++i) {
      const std::string p = "fc" + std::to_string(i + 1) + ".";
      specs_.push_back({p + "weight", {c.hidden[i], in}});
      specs_.push_back({p + "bias", {c.hidden[i]}});
      in = c.hidden[i];
    }
    feature_dim_ = in;
  } else {
    throw Error(detail::concat("model: unknown architecture '", c.arch, "' (expected conv4 or mlp)"),
                ErrorKind::usage);
  }
  head_begin_ = specs_.size();
  if (c.outputs > 0) {
    specs_.push_back({"head.weight", {c.outputs, feature_dim_}});
    specs_.push_back({"head.bias", {c.outputs}});
  }
}

std::vector<Variable> Model::init(core::Rng& rng) const {
  std::vector<Variable> params;
  for (const ParamSpec& s : specs_) {
    tensor::Tensor t = tensor::Tensor::zeros(s.shape);
    const bool is_bias = s.name.ends_with(".bias");
    const bool is_bn_scale = s.name.ends_with("bn.weight");
    if (is_bn_scale) {
      t.fill_(1.0);
    } else if (!is_bias) {
      // He-uniform (bound sqrt(6 / fan_in)) for backbone weights, LeCun-uniform (sqrt(3 / fan_in)) for the head.
      int64_t fan_in = 1;
      for (size_t i = 1; i < s.shape.size(); ++i) fan_in *= s.shape[i];
      const bool head = s.name.starts_with("head");
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

Variable Model::embed_impl(const std::vector<Variable>& p, const Variable& x, const Variable* support_x,
                           Variable* support_out) const {
  const ModelConfig& c = config_;
  MF_CHECK(p.size() >= head_begin_, "model: ", p.size(), " parameters given, the backbone needs ", head_begin_);
  Variable h = x, hs = support_x ? *support_x : Variable();
  if (c.arch == "conv4") {
    MF_CHECK(x.dim() == 4 && x.shape()[1] == c.in_channels && x.shape()[2] == c.height && x.shape()[3] == c.width,
             "conv4: expected input (N, ", c.in_channels, ", ", c.height, ", ", c.width, "), got ",
             tensor::to_string(x.shape()));
    const ops::Conv2dParams conv{c.max_pool ? 1 : 2, 1};
    // Without a learned scale the blocks normalise with a constant scale of 1 (no gradient wanted for it).
    const Variable unit_scale =
        c.bn_scale ? Variable() : Variable(tensor::Tensor::full({c.filters}, 1.0, p[0].data().dtype()));
    for (size_t b = 0; b < 4; ++b) {
      const size_t at = per_block_ * b;
      const Variable& w = p[at];
      const Variable& bias = p[at + 1];
      const Variable& gamma = c.bn_scale ? p[at + 2] : unit_scale;
      const Variable& beta = p[at + per_block_ - 1];
      // Note [Pool before ReLU]: max-pooling commutes with ReLU (both monotone: max of relu = relu of max, and
      // the gradients agree almost everywhere), so the block computes conv -> BN -> pool -> ReLU, the same
      // function as the papers' conv -> BN -> ReLU -> pool with the ReLU and its backward on a quarter of the
      // activations.
      auto pool = [&](const Variable& v) { return c.max_pool ? ops::max_pool2d(v, 2, 2) : v; };
      if (support_x) {
        h = ops::conv2d(h, w, bias, conv);
        hs = ops::conv2d(hs, w, bias, conv);
        auto [ns, nq] = bn_support_stats(hs, h, gamma, beta);
        hs = ops::relu(pool(ns));
        h = ops::relu(pool(nq));
      } else if (c.max_pool) {
        // Note [Batch norm and max-pool fused]: one op with the convolution and the ReLU, without the
        // full-size normalised tensor: on the first block from the input's patch moments (Note [First block
        // fused]), on the 64-channel blocks in oneDNN's blocked layout (Note [Blocked conv block]).
        h = ops::conv_bn_max_pool(h, w, bias, gamma, beta, conv, kBnEps, /*relu=*/true);
      } else {
        h = ops::relu(ops::batch_norm(ops::conv2d(h, w, bias, conv), gamma, beta, kBnEps));
      }
    }
    // Note [Omniglot head as MAML's code]: cbfinn/maml averages the last block's output over its pixels
    // (tf.reduce_mean over height and width) for Omniglot and flattens it only for miniImageNet.
    auto features = [&](const Variable& v) {
      return c.features == ModelConfig::Features::mean ? ops::mean(v, {2, 3}, false) : ops::flatten(v);
    };
    h = features(h);
    if (support_x) hs = features(hs);
  } else {
    MF_CHECK(x.dim() == 2 && x.shape()[1] == c.in_features, "mlp: expected input (N, ", c.in_features, "), got ",
             tensor::to_string(x.shape()));
    for (size_t i = 0; i < c.hidden.size(); ++i) {
      h = ops::relu(ops::linear(h, p[2 * i], p[2 * i + 1]));
      if (support_x) hs = ops::relu(ops::linear(hs, p[2 * i], p[2 * i + 1]));
    }
  }
  if (support_out) *support_out = hs;
  return h;
}

BnMode parse_bn_mode(const std::string& name) {
  if (name == "transductive") return BnMode::transductive;
  if (name == "support") return BnMode::support;
  if (name == "nontransductive") return BnMode::nontransductive;
  throw Error(detail::concat("--bn must be transductive, support or nontransductive, got '", name, "'"),
              ErrorKind::usage);
}

ModelConfig::Features parse_features(const std::string& name) {
  if (name == "flatten") return ModelConfig::Features::flatten;
  if (name == "mean") return ModelConfig::Features::mean;
  throw Error(detail::concat("--features must be flatten or mean, got '", name, "'"), ErrorKind::usage);
}

ModelConfig::HeadInit parse_head_init(const std::string& name) {
  if (name == "lecun") return ModelConfig::HeadInit::lecun;
  if (name == "normal") return ModelConfig::HeadInit::normal;
  throw Error(detail::concat("--head-init must be lecun or normal, got '", name, "'"), ErrorKind::usage);
}

Variable Model::embed(const std::vector<Variable>& params, const Variable& x) const {
  return embed_impl(params, x, nullptr, nullptr);
}

std::pair<Variable, Variable> Model::embed_pair(const std::vector<Variable>& params, const Variable& xs,
                                                const Variable& xq) const {
  if (config_.bn == BnMode::transductive || config_.arch != "conv4")
    return {embed(params, xs), embed(params, xq)};
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
  Variable fs;
  Variable fq = embed_impl(params, xq, &xs, &fs);
  return {fs, fq};
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
  const ModelConfig& c = config_;
  double macs = 0;
  if (c.arch == "conv4") {
    int64_t ch = c.in_channels, h = c.height, w = c.width;
    for (int b = 0; b < 4; ++b) {
      const int64_t oh = c.max_pool ? h : (h + 2 - 3) / 2 + 1, ow = c.max_pool ? w : (w + 2 - 3) / 2 + 1;
      macs += static_cast<double>(n) * c.filters * oh * ow * ch * 9;
      ch = c.filters;
      h = block_out_[b][1];
      w = block_out_[b][2];
    }
  } else {
    int64_t in = c.in_features;
    for (int64_t hdim : c.hidden) {
      macs += static_cast<double>(n) * in * hdim;
      in = hdim;
    }
  }
  if (c.outputs > 0) macs += static_cast<double>(n) * feature_dim_ * c.outputs;
  return macs;
}

}  // namespace metafew::nn
