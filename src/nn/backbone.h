#pragma once
// Note [Backbones]: a backbone is the feature extractor under the head: its parameter specs, its forward as a
// pure function of an explicit parameter list (so inner loops run on fast weights, and second-order MAML
// differentiates through it), and its multiply-add count (for bench's FLOP figures). Backbones are written
// with the layers of nn/layers.h, which give every batch-norm mode and reach the fused kernels. Adding one is
// a new file defining its class and factory, plus one line in the registry (backbones() in backbone.cpp).
#include <functional>
#include <nlohmann/json.hpp>
#include <memory>
#include <string>
#include <vector>

#include "nn/layers.h"
#include "tensor/conv_shape.h"
#include "nn/options.h"

namespace metafew::nn {

struct ParamSpec {
  // How Model::init starts it: He-uniform (weights; LeCun or normal for the head's), zeros (biases and
  // batch-norm shifts) or ones (batch-norm scales). Batch-norm parameters are the ones MAML's inner_bn = false
  // leaves to the outer loop.
  enum class Role { weight, bias, bn_scale, bn_shift };
  std::string name;
  tensor::Shape shape;
  Role role = Role::weight;
  bool batch_norm() const { return role == Role::bn_scale || role == Role::bn_shift; }
};

class Backbone {
 public:
  virtual ~Backbone() = default;
  const std::vector<ParamSpec>& specs() const { return specs_; }
  int64_t feature_dim() const { return feature_dim_; }
  // Whether any layer normalises with batch statistics (the batch-norm modes then matter).
  virtual bool has_batch_norm() const = 0;
  // Features (N, feature_dim) of the stream; `params` starts with this backbone's specs() (more may follow).
  virtual Stream forward(const std::vector<Variable>& params, const Stream& input) const = 0;
  // Multiply-adds of one forward pass over n inputs.
  virtual double forward_macs(int64_t n) const = 0;
  // The convolutions of one forward pass over n inputs (bench times the bare oneDNN primitive of each).
  virtual std::vector<tensor::ConvShape> conv_layers(int64_t n) const { (void)n; return {}; }

 protected:
  std::vector<ParamSpec> specs_;
  int64_t feature_dim_ = 0;
};

struct BackboneEntry {
  const char* name;
  bool image_input;  // takes (N, C, H, W) images; otherwise (N, features) vectors
  std::function<std::unique_ptr<const Backbone>(const ModelConfig&)> make;
  // Settings this backbone brings unless the user sets them (Note [Algorithm and dataset defaults] in
  // io/settings.cpp), e.g. resnet12's Winograd convolutions.
  nlohmann::json defaults = nlohmann::json::object();
};

// The registered backbones, and the one named (a usage error listing the names otherwise).
const std::vector<BackboneEntry>& backbones();
const BackboneEntry& find_backbone(const std::string& name);

// The factories the registry lists (conv4.cpp, mlp.cpp, resnet12.cpp).
std::unique_ptr<const Backbone> make_conv4(const ModelConfig& config);
std::unique_ptr<const Backbone> make_mlp(const ModelConfig& config);
std::unique_ptr<const Backbone> make_resnet12(const ModelConfig& config);

}  // namespace metafew::nn
