#include "data/options.h"

#include <cmath>

#include "core/error.h"

namespace metafew::data {

ChannelStatistics channel_statistics(const Dataset& ds, const std::string& split_name) {
  const Split& split = ds.split(split_name);
  const ImageSpec& im = ds.image_spec();
  const int64_t plane = im.height * im.width;
  std::vector<bool> seen(static_cast<size_t>(ds.base_class_count()), false);
  // Exact integer sums (an 8-bit channel of 2^40 pixels still fits), so the figures do not depend on the order.
  std::vector<uint64_t> sum(static_cast<size_t>(im.channels), 0), squares(sum);
  uint64_t n = 0;  // pixels per channel
  for (const SplitClass& sc : split.classes) {
    if (seen[static_cast<size_t>(sc.base_class)]) continue;
    seen[static_cast<size_t>(sc.base_class)] = true;
    const ClassEntry& c = ds.base_class(sc.base_class);
    for (int64_t i = 0; i < c.image_count; ++i) {
      const uint8_t* px = ds.image_u8(c.first_image + i);
      for (int64_t ch = 0; ch < im.channels; ++ch)
        for (int64_t k = 0; k < plane; ++k) {
          const uint64_t v = px[ch * plane + k];
          sum[static_cast<size_t>(ch)] += v;
          squares[static_cast<size_t>(ch)] += v * v;
        }
      n += static_cast<uint64_t>(plane);
    }
  }
  MF_USAGE_CHECK(n > 0, "split '", split_name, "' has no images to take the input statistics from");
  ChannelStatistics out;
  for (size_t ch = 0; ch < sum.size(); ++ch) {
    const long double nn = static_cast<long double>(n);
    const long double mean = static_cast<long double>(sum[ch]) / nn;
    const long double var = static_cast<long double>(squares[ch]) / nn - mean * mean;  // exactly 0 when constant
    MF_USAGE_CHECK(var > 0, "--normalize channel: channel ", ch, " of split '", split_name,
                   "' has the same value in every pixel (standard deviation 0); pass --normalize none");
    out.mean.push_back(static_cast<float>(mean / 255.0L));
    out.std.push_back(static_cast<float>(std::sqrt(var) / 255.0L));
  }
  return out;
}

std::vector<core::Setting> data_settings() {
  const DataOptions d;
  const OpenOptions o;
  return {
      core::text_setting("data", d.data,
                         "dataset: a folder (Omniglot or class-per-folder layout), builtin:glyphs or builtin:sinusoid"),
      core::text_setting("layout", layout_name(o.layout), "folder layout: auto, omniglot or folder",
                         [](const std::string& v) { parse_layout(v); }),
      core::text_setting("cache_dir", o.cache_dir,
                         "decoded-image cache folder (empty: $METAFEW_CACHE_DIR or ~/.cache/metafew)"),
      core::integer_setting("ways", d.train.ways, 0, 10000, "classes per training task (N)"),
      core::integer_setting("shots", d.train.shots, 1, 10000, "labelled examples per class in a training task (K)"),
      core::integer_setting("queries", d.train.queries, 1, 10000, "query examples per class in a training task"),
      core::integer_setting("test_ways", 0, 0, 10000, "classes per validation/test task (0: same as --ways)"),
      core::integer_setting("test_shots", 0, 0, 10000, "shots per validation/test task (0: same as --shots)"),
      core::integer_setting("test_queries", 0, 0, 10000, "queries per validation/test task (0: same as --queries)"),
      core::text_setting("episodes_within", within_name(Within::any),
                         "classes of a training task: any (from anywhere in the split) or alphabet (Lake's "
                         "trials: one Omniglot alphabet, support and queries by different drawers)",
                         [](const std::string& v) { parse_within(v); }),
      core::text_setting("test_episodes_within", "",
                         "classes of a validation/test task: any or alphabet (empty: same as --episodes-within)",
                         [](const std::string& v) {
                           if (!v.empty()) parse_within(v, "--test-episodes-within");
                         }),
      core::text_setting("augment", augment_name(Augment::none),
                         "training-time augmentation of training tasks and pretraining batches (never of "
                         "validation or test): none, affine (rotation, shear, scale, translation, as Koch et al. "
                         "for characters) or photo (random resized crop, horizontal flip, colour jitter)",
                         [](const std::string& v) { parse_augment(v); }),
      core::integer_setting("image_size", o.image.height, 1, 1024, "images are resized to image_size x image_size"),
      core::integer_setting("channels", o.image.channels, 1, 3, "image channels (1 grayscale, 3 RGB)"),
      core::text_setting("train_split", d.train_split, "split to meta-train on"),
      core::text_setting("val_split", d.val_split, "split to validate on (empty: no validation)"),
      core::text_setting("split_file", o.split_file,
                         "read the class splits from this file ([split] headers, one class per line; `metafew data "
                         "--write-split FILE` writes one) instead of deriving them; eval uses the run's unless given "
                         "its own"),
  };
}

nlohmann::json dataset_defaults(const std::string& data) {
  if (data != kBuiltinSinusoid) return nlohmann::json::object();
  // MAML's sinusoid regression: an MLP, 10 shots, meta-batch 25, one step of 0.01. The test tasks take the
  // training shape unless set.
  return {{"model", "mlp"},     {"ways", 0},         {"shots", 10},     {"queries", 10},
          {"meta_batch", 25},   {"inner_lr", 0.01},  {"eval_steps", 1}, {"val_split", "val"},
          {"test_shots", 0},    {"test_queries", 0}};
}

bool is_regression(const nlohmann::json& cfg) { return cfg["data"] == kBuiltinSinusoid; }

OpenOptions open_options(const nlohmann::json& cfg) {
  OpenOptions o;
  o.layout = parse_layout(cfg["layout"]);
  o.image.channels = cfg["channels"];
  o.image.height = o.image.width = cfg["image_size"];
  o.cache_dir = cfg["cache_dir"];
  o.split_file = cfg["split_file"];
  // split_seed keeps its default: the documented split seed of the built-in and Omniglot splits, independent
  // of --seed.
  return o;
}

}  // namespace metafew::data
