// conv-4 (Vinyals et al. 2016; MAML's and ProtoNets' backbone): four blocks of 3x3 conv + batch norm + ReLU +
// 2x2 max-pool (or MAML's stride-2 conv variant), then the last block's output flattened or averaged.
#include "core/error.h"
#include "nn/backbone.h"

namespace metafew::nn {

namespace {

class Conv4 : public Backbone {
 public:
  explicit Conv4(const ModelConfig& c) : c_(c) {
    MF_CHECK(c.in_channels > 0 && c.height > 0 && c.width > 0 && c.filters > 0, "conv4: invalid input ",
             c.in_channels, "x", c.height, "x", c.width, " or filters ", c.filters);
    int64_t ch = c.in_channels, h = c.height, w = c.width;
    for (int b = 0; b < 4; ++b) {
      const std::string p = "block" + std::to_string(b + 1) + ".";
      specs_.push_back({p + "conv.weight", {c.filters, ch, 3, 3}, ParamSpec::Role::weight});
      specs_.push_back({p + "conv.bias", {c.filters}, ParamSpec::Role::bias});
      if (c.bn_scale) specs_.push_back({p + "bn.weight", {c.filters}, ParamSpec::Role::bn_scale});
      specs_.push_back({p + "bn.bias", {c.filters}, ParamSpec::Role::bn_shift});
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
  }

  bool has_batch_norm() const override { return true; }

  Stream forward(const std::vector<Variable>& p, const Stream& input) const override {
    const Variable& x = input.x;
    MF_CHECK(x.dim() == 4 && x.shape()[1] == c_.in_channels && x.shape()[2] == c_.height && x.shape()[3] == c_.width,
             "conv4: expected input (N, ", c_.in_channels, ", ", c_.height, ", ", c_.width, "), got ",
             tensor::to_string(x.shape()));
    const ops::Conv2dParams conv{c_.max_pool ? 1 : 2, 1, c_.conv_algorithm};
    // Without a learned scale the blocks normalise with a constant scale of 1 (no gradient wanted for it).
    const Variable unit_scale =
        c_.bn_scale ? Variable() : Variable(tensor::Tensor::full({c_.filters}, 1.0, p[0].data().dtype()));
    Stream h = input;
    for (size_t b = 0; b < 4; ++b) {
      const size_t at = per_block_ * b;
      const Variable& gamma = c_.bn_scale ? p[at + 2] : unit_scale;
      h = conv_bn_pool_relu(h, p[at], p[at + 1], gamma, p[at + per_block_ - 1], conv, c_.max_pool);
    }
    // Note [Omniglot head as MAML's code]: cbfinn/maml averages the last block's output over its pixels
    // (tf.reduce_mean over height and width) for Omniglot and flattens it only for miniImageNet.
    return c_.features == ModelConfig::Features::mean ? spatial_mean(h) : flatten(h);
  }

  std::vector<tensor::ConvShape> conv_layers(int64_t n) const override {
    std::vector<tensor::ConvShape> layers;
    int64_t ch = c_.in_channels, h = c_.height, w = c_.width;
    const int64_t stride = c_.max_pool ? 1 : 2;
    for (int b = 0; b < 4; ++b) {
      layers.push_back({n, ch, h, w, c_.filters, 3, 3, stride, stride, 1, 1, c_.conv_algorithm});
      ch = c_.filters;
      h = block_out_[b][1];
      w = block_out_[b][2];
    }
    return layers;
  }

  double forward_macs(int64_t n) const override {
    double macs = 0;
    int64_t ch = c_.in_channels, h = c_.height, w = c_.width;
    for (int b = 0; b < 4; ++b) {
      const int64_t oh = c_.max_pool ? h : (h + 2 - 3) / 2 + 1, ow = c_.max_pool ? w : (w + 2 - 3) / 2 + 1;
      macs += static_cast<double>(n) * c_.filters * oh * ow * ch * 9;
      ch = c_.filters;
      h = block_out_[b][1];
      w = block_out_[b][2];
    }
    return macs;
  }

 private:
  ModelConfig c_;
  size_t per_block_ = 0;                  // parameters per block (4 with a batch-norm scale, 3 without)
  std::vector<tensor::Shape> block_out_;  // (C, H, W) after each block
};

}  // namespace

std::unique_ptr<const Backbone> make_conv4(const ModelConfig& config) { return std::make_unique<Conv4>(config); }

}  // namespace metafew::nn
