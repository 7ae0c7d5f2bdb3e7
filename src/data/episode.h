#pragma once
// N-way K-shot Q-query episodes drawn from one split of a Dataset (ARCHITECTURE.md, decision 4).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "tensor/tensor.h"

namespace metafew::data {

struct EpisodeSpec {
  int64_t ways = 5, shots = 1, queries = 15;
};

// Which classes share an episode, and which images serve (Note [Episodes within an alphabet] in episode.cpp).
enum class Within {
  any,       // any classes of the split, any distinct images of each
  alphabet,  // Lake's trials: the classes of one Omniglot alphabet; the support drawn by one person, the
             // queries by others
};
const char* within_name(Within within);
// "any" | "alphabet"; throws (usage) naming `flag` and the accepted values otherwise.
Within parse_within(const std::string& name, const std::string& flag = "--episodes-within");

struct Episode {
  tensor::Tensor
      support_x;  // (ways*shots, C, H, W) f32 in [0, 1], class-major: all shots of way 0, then way 1...
  tensor::Tensor support_y;              // (ways*shots) i32 labels in [0, ways)
  tensor::Tensor query_x;                // (ways*queries, C, H, W) f32, class-major
  tensor::Tensor query_y;                // (ways*queries) i32
  std::vector<std::string> class_names;  // per way, e.g. "Greek/character05/rot90"
  std::vector<int64_t> support_images, query_images;  // the base image of each row (Dataset::base_class)
};

// A view on one split of a dataset. Episode i is a pure function of (seed, split name, i, spec): the same on
// any thread, any number of times, after a resume (Note [Episode sampling] in episode.cpp). Thread-safe
// (const).
class EpisodeSampler {
 public:
  // Throws (usage), before any episode is drawn, when the split is unknown, ways/shots are < 1 or queries <
  // 0, the split has fewer classes than ways, or a class of the split holds fewer than shots + queries images
  // (naming the first such class and both counts). Within::alphabet also throws when the dataset is not in
  // the Omniglot layout, when no alphabet of the split has `ways` characters, or when a character of such an
  // alphabet has fewer than shots + queries drawers known from its file names.
  EpisodeSampler(std::shared_ptr<const Dataset> ds, const std::string& split, EpisodeSpec spec, uint64_t seed,
                 Within within = Within::any);

  Episode episode(uint64_t index) const;

  const Dataset& dataset() const { return *ds_; }
  const std::string& split_name() const { return split_->name; }
  const EpisodeSpec& spec() const { return spec_; }
  uint64_t seed() const { return seed_; }
  Within within() const { return within_; }
  // Within::alphabet: the alphabets episodes are drawn from (those with at least `ways` characters; with
  // "/rot<deg>" in a rotated split), in name order. Empty for Within::any.
  const std::vector<std::string>& alphabets() const { return group_names_; }

 private:
  Episode any_episode(uint64_t index) const;
  Episode alphabet_episode(uint64_t index) const;

  std::shared_ptr<const Dataset> ds_;
  const Split* split_;
  EpisodeSpec spec_;
  uint64_t seed_;
  uint64_t split_tag_;
  Within within_;
  std::vector<std::vector<int64_t>> groups_;  // Within::alphabet: per alphabet, indices into split_->classes
  std::vector<std::string> group_names_;
  // Within::alphabet: per index into split_->classes (empty outside groups_), drawer -> the class's base
  // image by that drawer, sorted by drawer.
  std::vector<std::vector<std::pair<int32_t, int64_t>>> drawer_images_;
};

}  // namespace metafew::data
