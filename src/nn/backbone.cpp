#include "nn/backbone.h"

#include "core/error.h"

namespace metafew::nn {

const std::vector<BackboneEntry>& backbones() {
  static const std::vector<BackboneEntry> all{
      // conv4 keeps direct convolutions: its published rows and the check against PyTorch were made with them.
      {"conv4", true, make_conv4},
      {"mlp", false, make_mlp},
      {"resnet12", true, make_resnet12, {{"conv_algorithm", "winograd"}}},
  };
  return all;
}

const BackboneEntry& find_backbone(const std::string& name) { return core::find_named(backbones(), name, "--model"); }

}  // namespace metafew::nn
