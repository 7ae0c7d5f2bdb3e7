#include "data/episode.h"

#include <algorithm>
#include <numeric>

#include "core/error.h"
#include "core/rng.h"
#include "data/hash.h"

// Note [Episode sampling]
// Episode i of a sampler draws from its own counter-based stream Rng::from(seed, {hash(split name), i}), so
// it depends on nothing but (seed, split, i, spec) and the dataset: no shared generator, no thread-order
// effects. Ways: `ways` distinct classes of the split in the order drawn (way w gets label w, so labels are a
// random permutation of the chosen classes). Images: for each way, shots + queries distinct images of that
// class (a partial Fisher-Yates over its image indices); the first `shots` are the support, the rest the
// queries. Rotated classes use the base class's images, rotated when served. Both partial shuffles consume a
// fixed number of draws per position, so the stream never depends on thread count or timing.

namespace metafew::data {
namespace {

// The first k of a partial Fisher-Yates shuffle of [0, n).
std::vector<int64_t> choose_distinct(core::Rng& rng, int64_t n, int64_t k) {
  std::vector<int64_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), int64_t{0});
  for (int64_t i = 0; i < k; ++i) {
    const auto j = i + static_cast<int64_t>(rng.below(static_cast<uint64_t>(n - i)));
    std::swap(idx[static_cast<size_t>(i)], idx[static_cast<size_t>(j)]);
  }
  idx.resize(static_cast<size_t>(k));
  return idx;
}

}  // namespace

EpisodeSampler::EpisodeSampler(std::shared_ptr<const Dataset> ds, const std::string& split, EpisodeSpec spec,
                               uint64_t seed)
    : ds_(std::move(ds)), split_(nullptr), spec_(spec), seed_(seed), split_tag_(hash_string(split)) {
  MF_USAGE_CHECK(ds_ != nullptr, "EpisodeSampler: the dataset is null");
  split_ = &ds_->split(split);
  MF_USAGE_CHECK(spec.ways >= 1 && spec.shots >= 1 && spec.queries >= 0,
                 "EpisodeSampler: need ways >= 1, shots >= 1, queries >= 0, got ways ", spec.ways, ", shots ",
                 spec.shots, ", queries ", spec.queries);
  const auto classes = static_cast<int64_t>(split_->classes.size());
  MF_USAGE_CHECK(spec.ways <= classes, "EpisodeSampler: ", spec.ways, "-way episodes need ", spec.ways,
                 " classes but split '", split, "' of ", ds_->source(), " has ", classes);
  const bool rotated = split_->rotated;
  for (const SplitClass& c : split_->classes) {
    const int64_t have = ds_->class_size(c);
    MF_USAGE_CHECK(have >= spec.shots + spec.queries, "EpisodeSampler: class '", ds_->class_name(c, rotated),
                   "' of split '", split, "' has ", have,
                   " images, fewer than shots + queries = ", spec.shots, " + ", spec.queries, " = ",
                   spec.shots + spec.queries);
  }
}

Episode EpisodeSampler::episode(uint64_t index) const {
  core::Rng rng = core::Rng::from(seed_, {split_tag_, index});
  const ImageSpec& im = ds_->image_spec();
  const int64_t ways = spec_.ways, shots = spec_.shots, queries = spec_.queries, px = im.pixels();
  Episode ep;
  ep.support_x = tensor::Tensor::empty({ways * shots, im.channels, im.height, im.width});
  ep.query_x = tensor::Tensor::empty({ways * queries, im.channels, im.height, im.width});
  std::vector<int32_t> sy(static_cast<size_t>(ways * shots)), qy(static_cast<size_t>(ways * queries));
  float* sx = ep.support_x.data<float>();
  float* qx = ep.query_x.data<float>();
  const std::vector<int64_t> picked =
      choose_distinct(rng, static_cast<int64_t>(split_->classes.size()), ways);
  for (int64_t w = 0; w < ways; ++w) {
    const SplitClass& c = split_->classes[static_cast<size_t>(picked[static_cast<size_t>(w)])];
    ep.class_names.push_back(ds_->class_name(c, split_->rotated));
    const ClassEntry& base = ds_->base_class(c.base_class);
    const std::vector<int64_t> imgs = choose_distinct(rng, base.image_count, shots + queries);
    for (int64_t k = 0; k < shots + queries; ++k) {
      const int64_t image = base.first_image + imgs[static_cast<size_t>(k)];
      if (k < shots) {
        ds_->read_image(image, c.quarter_turns, sx + (w * shots + k) * px);
        sy[static_cast<size_t>(w * shots + k)] = static_cast<int32_t>(w);
      } else {
        const int64_t q = k - shots;
        ds_->read_image(image, c.quarter_turns, qx + (w * queries + q) * px);
        qy[static_cast<size_t>(w * queries + q)] = static_cast<int32_t>(w);
      }
    }
  }
  ep.support_y = tensor::Tensor::from_indices(sy, {ways * shots});
  ep.query_y = tensor::Tensor::from_indices(qy, {ways * queries});
  return ep;
}

}  // namespace metafew::data
