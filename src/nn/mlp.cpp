// The MLP of MAML's sinusoid regression: fully connected layers with ReLU (hidden widths 40-40).
#include "core/error.h"
#include "nn/backbone.h"

namespace metafew::nn {

namespace {

class Mlp : public Backbone {
 public:
  explicit Mlp(const ModelConfig& c) : c_(c) {
    int64_t in = c.in_features;
    for (size_t i = 0; i < c.hidden.size(); ++i) {
      const std::string p = "fc" + std::to_string(i + 1) + ".";
      specs_.push_back({p + "weight", {c.hidden[i], in}, ParamSpec::Role::weight});
      specs_.push_back({p + "bias", {c.hidden[i]}, ParamSpec::Role::bias});
      in = c.hidden[i];
    }
    feature_dim_ = in;
  }

  bool has_batch_norm() const override { return false; }

  Stream forward(const std::vector<Variable>& p, const Stream& input) const override {
    MF_CHECK(input.x.dim() == 2 && input.x.shape()[1] == c_.in_features, "mlp: expected input (N, ", c_.in_features,
             "), got ", tensor::to_string(input.x.shape()));
    Stream h = input;
    for (size_t i = 0; i < c_.hidden.size(); ++i) h = relu(linear(h, p[2 * i], p[2 * i + 1]));
    return h;
  }

  double forward_macs(int64_t n) const override {
    double macs = 0;
    int64_t in = c_.in_features;
    for (int64_t h : c_.hidden) {
      macs += static_cast<double>(n) * in * h;
      in = h;
    }
    return macs;
  }

 private:
  ModelConfig c_;
};

}  // namespace

std::unique_ptr<const Backbone> make_mlp(const ModelConfig& config) { return std::make_unique<Mlp>(config); }

}  // namespace metafew::nn
