#pragma once
// The model's settings: the typed options (ModelConfig), their declarations (key, default taken from the
// struct, help, valid values) and the options of a resolved configuration.
//
// Note [Batch norm in meta-learning]: batch norm always uses the statistics of the batch it is given, in
// meta-training, adaptation and prediction alike (no running averages), as MAML's reference code does. With
// bn = transductive (the default) the query set is normalised with its own statistics, which makes the
// prediction of one query depend on the others in its batch (the usual "transductive" setting of the
// papers). With bn = support the query set is normalised with the support set's statistics at every layer,
// so each query is classified on its own. With bn = nontransductive each query is forwarded in one batch with
// the support set (support + that query, statistics over both), so each query is again classified on its own:
// the non-transductive protocol of supervised-reptile (its default test mode, behind the 95.39% 5-way 1-shot
// Reptile figure). It costs one forward pass of (support + 1) inputs per query. In the last two modes the
// support features come from the support set alone. The modes apply to every backbone with batch norm
// (Note [Batch-norm context] in nn/layers.h); a backbone without it gives the same features in every mode.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/setting.h"
#include "tensor/conv_shape.h"

namespace metafew::nn {

enum class BnMode { transductive, support, nontransductive };
// Input normalisation (Note [Input normalisation] in nn/options.cpp): none, or channel (x -> (x - mean_c) /
// std_c with the training split's per-channel statistics, or those given).
enum class Normalize { none, channel };
// "transductive", "support", "nontransductive"; throws a usage error naming the accepted values otherwise.
BnMode parse_bn_mode(const std::string& name);

struct ModelConfig {
  std::string arch = "conv4";   // a registered backbone (nn/backbone.h): conv4 | mlp
  int64_t in_channels = 1, height = 28, width = 28;
  int64_t filters = 64;          // conv4: filters per block
  bool max_pool = true;          // conv4: 3x3 conv + 2x2 max-pool; false = MAML's stride-2 conv variant
  // conv4: the head's input (Note [Omniglot head as MAML's code]): the last block's output flattened
  // (filters x h x w), or its mean over the pixels (filters), as cbfinn/maml's Omniglot model.
  enum class Features { flatten, mean } features = Features::flatten;
  // The head's initial weights: LeCun-uniform (bound sqrt(3 / fan_in)), or standard normal as cbfinn/maml's
  // Omniglot head (tf.random_normal).
  enum class HeadInit { lecun, normal } head_init = HeadInit::lecun;
  BnMode bn = BnMode::transductive;
  // conv4: batch norm with a learned per-channel scale (bn.weight), or without one (scale fixed at 1, no
  // parameter), as cbfinn/maml's tf.contrib.layers.batch_norm (scale=False). Its shift is always learned.
  bool bn_scale = true;
  int64_t outputs = 5;           // head outputs (ways, or 1 for regression); 0 = no head (metric methods)
  std::vector<int64_t> hidden = {40, 40};  // mlp: hidden widths
  std::vector<int64_t> widths = {64, 160, 320, 640};  // resnet12: output channels of its residual blocks
  // resnet12 in training (Note [Training noise] in nn/noise.cpp): dropout at this rate after the first two
  // blocks, DropBlock with blocks of dropblock_size after the others; 0: none. RFS: 0.1 and 5.
  double drop_rate = 0.0;
  int64_t dropblock_size = 5;
  int64_t in_features = 1;       // mlp: input width
  // How the 3x3 convolutions are computed (Note [Winograd convolution] in backend/dnnl/conv.cpp); the default
  // of a backbone's registry entry (resnet12: winograd) unless set.
  tensor::ConvAlgorithm conv_algorithm = tensor::ConvAlgorithm::direct;
  // Image inputs become (x - input_mean[c]) / input_std[c] before the backbone when normalize is channel and
  // the values are known (Note [Input normalisation] in nn/options.cpp; meta-train fills them in); empty: taken
  // as they are. One value per input channel.
  Normalize normalize = Normalize::none;
  std::vector<float> input_mean, input_std;
};

// "none" | "channel" (ModelConfig::normalize); throws (usage) naming `flag` and the accepted values otherwise.
Normalize parse_normalize(const std::string& name, const std::string& flag = "--normalize");
const char* normalize_name(Normalize kind);
// "0.485,0.456,0.406": empty, or 1 to 3 finite numbers (positive when `positive`); a usage error naming `flag`
// otherwise.
std::vector<float> parse_channel_values(const std::string& text, const std::string& flag, bool positive);
// The shortest text that parse_channel_values reads back to the same floats.
std::string channel_values_name(const std::vector<float>& values);

// "flatten" / "mean" and "lecun" / "normal"; throw a usage error naming the accepted values otherwise.
ModelConfig::Features parse_features(const std::string& name);
ModelConfig::HeadInit parse_head_init(const std::string& name);
// "direct" / "winograd"; a usage error naming --conv-algorithm otherwise.
tensor::ConvAlgorithm parse_conv_algorithm(const std::string& name);
std::string conv_algorithm_name(tensor::ConvAlgorithm algorithm);
// "64,160,320,640": 1 to 8 positive widths of at most 4096; a usage error naming --widths otherwise.
std::vector<int64_t> parse_widths(const std::string& text);
std::string widths_name(const std::vector<int64_t>& widths);
// The names those parsers accept, for each value.
std::string bn_mode_name(BnMode mode);
std::string features_name(ModelConfig::Features features);
std::string head_init_name(ModelConfig::HeadInit init);

// The model's settings (model, filters, widths, drop_rate, dropblock_size, conv_algorithm, normalize,
// input_mean, input_std, max_pool, features, head_init, bn, bn_scale).
std::vector<core::Setting> model_settings();
// The options of a resolved configuration, with a head of `outputs` (0: none). Image size and channels come
// from the data settings (image_size, channels).
ModelConfig model_config(const nlohmann::json& cfg, int64_t outputs);

}  // namespace metafew::nn
