#include "nn/options.h"

#include <algorithm>

#include "core/error.h"
#include "nn/backbone.h"

namespace metafew::nn {

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

tensor::ConvAlgorithm parse_conv_algorithm(const std::string& name) {
  if (name == "direct") return tensor::ConvAlgorithm::direct;
  if (name == "winograd") return tensor::ConvAlgorithm::winograd;
  throw Error(detail::concat("--conv-algorithm must be direct or winograd, got '", name, "'"), ErrorKind::usage);
}

std::string conv_algorithm_name(tensor::ConvAlgorithm a) {
  return a == tensor::ConvAlgorithm::winograd ? "winograd" : "direct";
}

std::vector<int64_t> parse_widths(const std::string& text) {
  std::vector<int64_t> w;
  size_t at = 0;
  while (at <= text.size()) {
    const size_t comma = std::min(text.find(',', at), text.size());
    const std::string item = text.substr(at, comma - at);
    const bool digits = !item.empty() && item.size() <= 4 && item.find_first_not_of("0123456789") == std::string::npos;
    MF_USAGE_CHECK(digits && std::stoll(item) >= 1 && std::stoll(item) <= 4096,
                   "--widths must be 1 to 8 comma-separated channel counts from 1 to 4096 (e.g. 64,160,320,640), got '",
                   text, "'");
    w.push_back(std::stoll(item));
    at = comma + 1;
  }
  MF_USAGE_CHECK(w.size() <= 8, "--widths must be 1 to 8 comma-separated channel counts, got ", w.size());
  return w;
}

std::string widths_name(const std::vector<int64_t>& widths) {
  std::string s;
  for (int64_t w : widths) {
    if (!s.empty()) s += ',';
    s += std::to_string(w);
  }
  return s;
}

std::string bn_mode_name(BnMode mode) {
  return mode == BnMode::transductive ? "transductive" : mode == BnMode::support ? "support" : "nontransductive";
}
std::string features_name(ModelConfig::Features f) { return f == ModelConfig::Features::flatten ? "flatten" : "mean"; }
std::string head_init_name(ModelConfig::HeadInit i) { return i == ModelConfig::HeadInit::lecun ? "lecun" : "normal"; }

std::vector<core::Setting> model_settings() {
  const ModelConfig d;
  return {
      core::text_setting("model", d.arch, "backbone: " + core::join(core::names_of(backbones())) + " (images: conv4 or resnet12; builtin:sinusoid: mlp)",
                         [](const std::string& v) { find_backbone(v); }),
      core::integer_setting("filters", d.filters, 1, 4096, "conv4 filters per block"),
      core::text_setting("widths", widths_name(d.widths),
                         "resnet12 output channels of each residual block (MetaOptNet / RFS: 64,160,320,640)",
                         [](const std::string& v) { parse_widths(v); }),
      core::text_setting("conv_algorithm", conv_algorithm_name(d.conv_algorithm),
                         "3x3 convolutions: direct, or winograd (faster, about 4x the rounding error; where the "
                         "shape allows, direct elsewhere). Default: the backbone's (resnet12: winograd)",
                         [](const std::string& v) { parse_conv_algorithm(v); }),
      core::boolean_setting("max_pool", d.max_pool, "conv4 with 2x2 max-pool (false: MAML's stride-2 convolutions)"),
      core::text_setting("features", features_name(d.features),
                         "conv4 head input: flatten (the last block's output) or mean (over its pixels, as MAML's "
                         "Omniglot code)",
                         [](const std::string& v) { parse_features(v); }),
      core::text_setting("head_init", head_init_name(d.head_init),
                         "head initialisation: lecun (uniform, bound sqrt(3 / inputs)) or normal (N(0, 1), as "
                         "MAML's Omniglot code)",
                         [](const std::string& v) { parse_head_init(v); }),
      core::text_setting("bn", bn_mode_name(d.bn),
                         "batch norm statistics: transductive (query batch), support, or nontransductive (support "
                         "+ 1 query)",
                         [](const std::string& v) { parse_bn_mode(v); }),
      core::boolean_setting("bn_scale", d.bn_scale,
                            "conv4 batch norm with a learned scale (false: scale fixed at 1, no parameter, as "
                            "MAML's code)"),
  };
}

ModelConfig model_config(const nlohmann::json& cfg, int64_t outputs) {
  ModelConfig m;
  m.arch = cfg["model"];
  m.in_channels = cfg["channels"];
  m.height = m.width = cfg["image_size"];
  m.filters = cfg["filters"];
  m.widths = parse_widths(cfg["widths"]);
  m.max_pool = cfg["max_pool"];
  m.features = parse_features(cfg["features"]);
  m.bn_scale = cfg["bn_scale"];
  m.bn = parse_bn_mode(cfg["bn"]);
  m.head_init = parse_head_init(cfg["head_init"]);
  m.conv_algorithm = parse_conv_algorithm(cfg["conv_algorithm"]);
  m.outputs = outputs;
  return m;
}

}  // namespace metafew::nn
