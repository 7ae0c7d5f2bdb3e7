#pragma once
// The data settings: the dataset, its image preprocessing and splits, and the shape of the episodes drawn
// from it; declarations (defaults from the typed options) and the options of a resolved configuration.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/setting.h"
#include "data/augment.h"
#include "data/dataset.h"
#include "data/episode.h"

namespace metafew::data {

inline constexpr const char* kBuiltinGlyphs = "builtin:glyphs";
inline constexpr const char* kBuiltinSinusoid = "builtin:sinusoid";

struct DataOptions {
  std::string data = kBuiltinGlyphs;
  std::string train_split = "train", val_split = "val";
  EpisodeSpec train;  // ways, shots, queries of a training task
};

// Per-channel mean and standard deviation (population) of the images of `split`, in [0, 1] units, each base
// image counted once (what meta-train fills input_mean and input_std with: Note [Input normalisation] in
// nn/options.cpp); throws (usage) naming the split when a channel is constant (nothing to divide by).
struct ChannelStatistics {
  std::vector<float> mean, std;
};
ChannelStatistics channel_statistics(const Dataset& ds, const std::string& split);

// data, layout, cache_dir, ways, shots, queries, test_ways, test_shots, test_queries, episodes_within,
// test_episodes_within, augment, image_size, channels, train_split, val_split, split_file.
std::vector<core::Setting> data_settings();
// The settings a dataset changes from the generic defaults (builtin:sinusoid: MAML's regression recipe).
nlohmann::json dataset_defaults(const std::string& data);
// Whether the dataset is the regression family (builtin:sinusoid) rather than images.
bool is_regression(const nlohmann::json& cfg);
// The dataset options of a resolved configuration.
OpenOptions open_options(const nlohmann::json& cfg);

}  // namespace metafew::data
