#include "nn/options.h"

#include <algorithm>
#include <charconv>
#include <cmath>

#include "core/error.h"
#include "nn/backbone.h"

// Note [Input normalisation]
// --normalize channel maps every input image x to (x - mean_c) / std_c, channel by channel, as the torchvision
// Normalize of the ResNet-12 papers' data pipelines does. The model applies it (Model::embed), so
// meta-training, validation, eval, adapt and predict all see the same inputs, and a checkpoint carries it: the
// values are settings (input_mean, input_std), recorded in the run's config.json, its checkpoints and its
// exports. Left empty, meta-train fills them at the start of a run (not on resume) with the population mean
// and standard deviation of every image of the training split, as stored (resized, converted and inverted,
// 8-bit, read as v / 255), each base image once (a rotated class has the same pixels as its base). The sums
// are exact integers, so the values do not depend on the thread count or the image order. Given values (such
// as ImageNet's 0.485,0.456,0.406 and 0.229,0.224,0.225) are used as they are. The default is none, so every
// recipe that reads pixels in [0, 1] (Omniglot's, as MAML's code has them) keeps its numbers, and checkpoints
// from before the setting load as none. With batch norm after the first convolution the shift and scale
// matter less than one might think: on the generated colour set of tests/cli/test_cli_colour.cpp,
// 150-iteration conv-4 pretraining tested with the centroid head gave 87.8% with it against 93.3% without
// (mean of seeds 1-6, 200 test episodes each), so it is offered, not imposed; a backbone without batch norm
// sees the inputs as they come.

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

const char* normalize_name(Normalize kind) { return kind == Normalize::channel ? "channel" : "none"; }

Normalize parse_normalize(const std::string& name, const std::string& flag) {
  if (name == "none") return Normalize::none;
  if (name == "channel") return Normalize::channel;
  throw Error(detail::concat(flag, " must be none or channel (per-channel mean and standard deviation), got '", name,
                             "'"),
              ErrorKind::usage);
}

std::vector<float> parse_channel_values(const std::string& text, const std::string& flag, bool positive) {
  std::vector<float> out;
  if (text.empty()) return out;
  size_t at = 0;
  while (true) {
    const size_t comma = text.find(',', at);
    const std::string item = text.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
    float v = 0;
    const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    MF_USAGE_CHECK(ec == std::errc() && end == item.data() + item.size() && std::isfinite(v) && (!positive || v > 0),
                   flag, " must be 1 to 3 comma-separated ", positive ? "positive " : "", "numbers, one per image ",
                   "channel (such as 0.485,0.456,0.406), got '", text, "'");
    out.push_back(v);
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  MF_USAGE_CHECK(out.size() <= 3, flag, " must be 1 to 3 comma-separated numbers, one per image channel, got ",
                 out.size(), " ('", text, "')");
  return out;
}

std::string channel_values_name(const std::vector<float>& values) {
  std::string s;
  for (float v : values) {
    char buf[32];
    const auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
    MF_CHECK(ec == std::errc(), "channel_values_name: cannot print ", v);
    if (!s.empty()) s += ',';
    s.append(buf, end);
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
      core::number_setting("drop_rate", d.drop_rate,
                           "resnet12 in training: dropout at this rate after its first two blocks and DropBlock "
                           "after the others (RFS: 0.1); 0: none; below 1"),
      core::integer_setting("dropblock_size", d.dropblock_size, 1, 64,
                            "resnet12: side of DropBlock's dropped squares (RFS: 5; cut to the feature map)"),
      core::text_setting("conv_algorithm", conv_algorithm_name(d.conv_algorithm),
                         "3x3 convolutions: direct, or winograd (faster, about 4x the rounding error; where the "
                         "shape allows, direct elsewhere). Default: the backbone's (resnet12: winograd)",
                         [](const std::string& v) { parse_conv_algorithm(v); }),
      core::text_setting("normalize", normalize_name(d.normalize),
                         "input normalisation: none, or channel (x -> (x - mean) / std per channel, with the "
                         "training split's statistics unless --input-mean and --input-std are given)",
                         [](const std::string& v) { parse_normalize(v); }),
      core::text_setting("input_mean", "",
                         "per-channel means for --normalize channel, comma-separated (empty: meta-train fills in "
                         "the training split's)",
                         [](const std::string& v) { parse_channel_values(v, "--input-mean", false); }),
      core::text_setting("input_std", "",
                         "per-channel standard deviations for --normalize channel, comma-separated (empty: "
                         "meta-train fills in the training split's)",
                         [](const std::string& v) { parse_channel_values(v, "--input-std", true); }),
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
  m.drop_rate = cfg["drop_rate"];
  m.dropblock_size = cfg["dropblock_size"];
  m.max_pool = cfg["max_pool"];
  m.features = parse_features(cfg["features"]);
  m.bn_scale = cfg["bn_scale"];
  m.bn = parse_bn_mode(cfg["bn"]);
  m.head_init = parse_head_init(cfg["head_init"]);
  m.conv_algorithm = parse_conv_algorithm(cfg["conv_algorithm"]);
  m.outputs = outputs;
  // Applied once meta-train has filled in the values (a model built before, such as bench's, takes raw pixels).
  m.normalize = parse_normalize(cfg["normalize"]);
  if (m.normalize == Normalize::channel) {
    m.input_mean = parse_channel_values(cfg["input_mean"], "--input-mean", false);
    m.input_std = parse_channel_values(cfg["input_std"], "--input-std", true);
  }
  return m;
}

}  // namespace metafew::nn
