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

struct Episode {
  tensor::Tensor
      support_x;  // (ways*shots, C, H, W) f32 in [0, 1], class-major: all shots of way 0, then way 1...
  tensor::Tensor support_y;              // (ways*shots) i32 labels in [0, ways)
  tensor::Tensor query_x;                // (ways*queries, C, H, W) f32, class-major
  tensor::Tensor query_y;                // (ways*queries) i32
  std::vector<std::string> class_names;  // per way, e.g. "Greek/character05/rot90"
};

// A view on one split of a dataset. Episode i is a pure function of (seed, split name, i, spec): the same on
// any thread, any number of times, after a resume (Note [Episode sampling] in episode.cpp). Thread-safe
// (const).
class EpisodeSampler {
 public:
  // Throws (usage), before any episode is drawn, when the split is unknown, ways/shots are < 1 or queries <
  // 0, the split has fewer classes than ways, or a class of the split holds fewer than shots + queries images
  // (naming the first such class and both counts).
  EpisodeSampler(std::shared_ptr<const Dataset> ds, const std::string& split, EpisodeSpec spec,
                 uint64_t seed);

  Episode episode(uint64_t index) const;

  const Dataset& dataset() const { return *ds_; }
  const std::string& split_name() const { return split_->name; }
  const EpisodeSpec& spec() const { return spec_; }
  uint64_t seed() const { return seed_; }

 private:
  std::shared_ptr<const Dataset> ds_;
  const Split* split_;
  EpisodeSpec spec_;
  uint64_t seed_;
  uint64_t split_tag_;
};

}  // namespace metafew::data
