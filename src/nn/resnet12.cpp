// ResNet-12 as MetaOptNet (Lee et al. 2019) and RFS (Tian et al. 2020) use it: residual blocks of three 3x3
// convolutions (no bias) with batch norm, LeakyReLU(0.1) after the first two, a 1x1 convolution + batch norm
// shortcut, the sum through LeakyReLU(0.1), then 2x2 max-pooling; the features are the last block's mean over
// its pixels. Widths 64-160-320-640 by default. In training, with drop_rate > 0, RFS's dropout after the
// first two blocks and DropBlock after the others (Note [Training noise] in nn/noise.cpp).
#include "core/error.h"
#include "core/rng.h"
#include "nn/backbone.h"
#include "nn/noise.h"

namespace metafew::nn {

namespace {

constexpr double kSlope = 0.1;
constexpr size_t kPerBlock = 12;  // conv1, bn1 (2), conv2, bn2 (2), conv3, bn3 (2), shortcut conv, bn (2)

class ResNet12 : public Backbone {
 public:
  explicit ResNet12(const ModelConfig& c) : c_(c) {
    MF_USAGE_CHECK(c.in_channels > 0 && c.height > 0 && c.width > 0 && !c.widths.empty(), "resnet12: invalid input ",
                   c.in_channels, "x", c.height, "x", c.width, " or no block widths");
    int64_t ch = c.in_channels, h = c.height, w = c.width;
    for (size_t b = 0; b < c.widths.size(); ++b) {
      const int64_t out = c.widths[b];
      const std::string p = "block" + std::to_string(b + 1) + ".";
      auto conv_bn = [&](const std::string& conv, const std::string& bn, int64_t in, int64_t k) {
        specs_.push_back({p + conv + ".weight", {out, in, k, k}, ParamSpec::Role::weight});
        specs_.push_back({p + bn + ".weight", {out}, ParamSpec::Role::bn_scale});
        specs_.push_back({p + bn + ".bias", {out}, ParamSpec::Role::bn_shift});
      };
      conv_bn("conv1", "bn1", ch, 3);
      conv_bn("conv2", "bn2", out, 3);
      conv_bn("conv3", "bn3", out, 3);
      conv_bn("shortcut.conv", "shortcut.bn", ch, 1);
      MF_USAGE_CHECK(h >= 2 && w >= 2, "resnet12: input ", c.height, "x", c.width, " is too small for ",
                     c.widths.size(), " 2x2 pools (block ", b + 1, " gets ", h, "x", w, "); use a larger --image-size");
      block_in_.push_back({ch, h, w});
      ch = out;
      h /= 2;
      w /= 2;
    }
    feature_dim_ = ch;
  }

  bool has_batch_norm() const override { return true; }

  Stream forward(const std::vector<Variable>& p, const Stream& input) const override {
    const Variable& x = input.x;
    MF_USAGE_CHECK(x.dim() == 4 && x.shape()[1] == c_.in_channels && x.shape()[2] == c_.height &&
                       x.shape()[3] == c_.width,
                   "resnet12: expected input (N, ", c_.in_channels, ", ", c_.height, ", ", c_.width, "), got ",
                   tensor::to_string(x.shape()));
    const ops::Conv2dParams same{1, 1, c_.conv_algorithm}, pointwise{1, 0};
    const std::optional<uint64_t> noise = c_.drop_rate > 0 ? next_noise_key() : std::nullopt;
    Stream h = input;
    for (size_t b = 0; b < c_.widths.size(); ++b) {
      const Variable* q = p.data() + kPerBlock * b;
      Stream y = batch_norm_leaky_relu(conv2d(h, q[0], same), q[1], q[2], kSlope);
      y = batch_norm_leaky_relu(conv2d(y, q[3], same), q[4], q[5], kSlope);
      // The block's end, leaky_relu(bn3(conv3(y)) + bn(shortcut(h))), as one op: the graph keeps neither
      // normalised tensor nor their sum.
      h = max_pool2x2(batch_norm_add_leaky_relu(conv2d(y, q[6], same), q[7], q[8], conv2d(h, q[9], pointwise), q[10],
                                                q[11], kSlope));
      if (noise) h = drop(h, b, *noise);
    }
    return spatial_mean(h);
  }

  std::vector<tensor::ConvShape> conv_layers(int64_t n) const override {
    std::vector<tensor::ConvShape> layers;
    for (size_t b = 0; b < c_.widths.size(); ++b) {
      const int64_t in = block_in_[b][0], h = block_in_[b][1], w = block_in_[b][2], out = c_.widths[b];
      const tensor::ConvAlgorithm a = c_.conv_algorithm;
      layers.push_back({n, in, h, w, out, 3, 3, 1, 1, 1, 1, a});
      layers.push_back({n, out, h, w, out, 3, 3, 1, 1, 1, 1, a});
      layers.push_back({n, out, h, w, out, 3, 3, 1, 1, 1, 1, a});
      layers.push_back({n, in, h, w, out, 1, 1, 1, 1, 0, 0});
    }
    return layers;
  }

  double forward_macs(int64_t n) const override {
    double macs = 0;
    for (size_t b = 0; b < c_.widths.size(); ++b) {
      const double in = static_cast<double>(block_in_[b][0]), pixels = static_cast<double>(block_in_[b][1] * block_in_[b][2]);
      const double out = static_cast<double>(c_.widths[b]);
      macs += pixels * out * (in * 9 + 2 * out * 9 + in);
    }
    return macs * static_cast<double>(n);
  }

 private:
  // Block b's output times its training mask: dropout after blocks 1 and 2, DropBlock after the others; the
  // support batch of a paired stream draws its own.
  Stream drop(const Stream& s, size_t b, uint64_t key) const {
    auto masked = [&](const Variable& v, uint64_t part) {
      if (!v.defined()) return v;
      const uint64_t k = core::derive_key(key, {static_cast<uint64_t>(b), part});
      const tensor::Tensor m = b < 2 ? dropout_mask(v.shape(), c_.drop_rate, k)
                                     : dropblock_mask(v.shape(), c_.drop_rate, c_.dropblock_size, k);
      return ops::mul(v, Variable(v.dtype() == tensor::DType::f64 ? m.to(tensor::DType::f64) : m));
    };
    return {masked(s.x, 0), masked(s.support, 1)};
  }

  ModelConfig c_;
  std::vector<tensor::Shape> block_in_;  // (C, H, W) entering each block
};

}  // namespace

std::unique_ptr<const Backbone> make_resnet12(const ModelConfig& config) { return std::make_unique<ResNet12>(config); }

}  // namespace metafew::nn
