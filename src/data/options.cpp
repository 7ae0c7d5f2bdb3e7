#include "data/options.h"

namespace metafew::data {

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
                         "validation or test): none or affine (rotation, shear, scale, translation, as Koch et al. "
                         "for characters)",
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
