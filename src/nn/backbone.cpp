#include "nn/backbone.h"

#include "core/error.h"

namespace metafew::nn {

const std::vector<BackboneEntry>& backbones() {
  static const std::vector<BackboneEntry> all{
      {"conv4", true, make_conv4},
      {"mlp", false, make_mlp},
  };
  return all;
}

const BackboneEntry& find_backbone(const std::string& name) {
  std::string names;
  for (const BackboneEntry& b : backbones()) {
    if (name == b.name) return b;
    names += (names.empty() ? "" : ", ") + std::string(b.name);
  }
  throw Error(detail::concat("--model must be one of ", names, ", got '", name, "'"), ErrorKind::usage);
}

}  // namespace metafew::nn
