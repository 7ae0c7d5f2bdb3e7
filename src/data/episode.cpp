#include "data/episode.h"

#include <algorithm>
#include <iterator>
#include <map>
#include <numeric>

#include "core/error.h"
#include "core/rng.h"
#include "core/setting.h"
#include "data/hash.h"

// Note [Episode sampling]
// Episode i of a sampler draws from its own counter-based stream Rng::from(seed, {hash(split name), i}), so
// it depends on nothing but (seed, split, i, spec) and the dataset: no shared generator, no thread-order
// effects. Ways: `ways` distinct classes of the split in the order drawn (way w gets label w, so labels are a
// random permutation of the chosen classes). Images: for each way, shots + queries distinct images of that
// class (a partial Fisher-Yates over its image indices); the first `shots` are the support, the rest the
// queries. Rotated classes use the base class's images, rotated when served. Both partial shuffles consume a
// fixed number of draws per position, so the stream never depends on thread count or timing.
//
// Note [Episodes within an alphabet]
// Lake, Salakhutdinov and Tenenbaum (2015) test one-shot learning on 20-way trials within one alphabet of
// images_evaluation: one image of each of 20 characters of the alphabet, and test images of the same
// characters drawn by a different person. Within::alphabet builds episode i from the same stream as above,
// drawn in this order: an alphabet, uniformly among the split's alphabets with at least `ways` characters
// (a rotated split makes each rotation of an alphabet an alphabet of its own, as it makes each rotation of
// a character a class); `ways` distinct characters of it (way w gets label w); then shots + queries distinct
// drawers among those who drew every one of the chosen characters (Omniglot: all 20). The first `shots`
// drawers give the support images of every way, the others the queries: so, as in Lake's runs, one person
// drew the whole support set, and every query was drawn by someone else. A drawer is the number after the
// last '_' of Omniglot's file names ("0965_07.png": drawer 7).

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

// Drawer -> base image of one class (the first image by that drawer), sorted by drawer; unknown drawers left out.
std::vector<std::pair<int32_t, int64_t>> drawer_images(const Dataset& ds, const ClassEntry& c) {
  std::vector<std::pair<int32_t, int64_t>> out;
  for (int64_t k = 0; k < c.image_count; ++k)
    if (const int32_t d = ds.drawer(c.first_image + k); d > 0) out.push_back({d, c.first_image + k});
  std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  out.erase(std::unique(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first == b.first; }),
            out.end());
  return out;
}

// Fills an episode: image k of way w is support image k when k < shots, else query k - shots.
class EpisodeBuilder {
 public:
  EpisodeBuilder(const Dataset& ds, const EpisodeSpec& spec)
      : ds_(ds), spec_(spec), px_(ds.image_spec().pixels()),
        sy_(static_cast<size_t>(spec.ways * spec.shots)), qy_(static_cast<size_t>(spec.ways * spec.queries)) {
    const ImageSpec& im = ds.image_spec();
    ep_.support_images.resize(sy_.size());
    ep_.query_images.resize(qy_.size());
    ep_.support_x = tensor::Tensor::empty({spec.ways * spec.shots, im.channels, im.height, im.width});
    ep_.query_x = tensor::Tensor::empty({spec.ways * spec.queries, im.channels, im.height, im.width});
  }
  void name(std::string class_name) { ep_.class_names.push_back(std::move(class_name)); }
  void put(int64_t w, int64_t k, int64_t image, int32_t quarter_turns) {
    const bool support = k < spec_.shots;
    const int64_t row = support ? w * spec_.shots + k : w * spec_.queries + (k - spec_.shots);
    float* dst = (support ? ep_.support_x : ep_.query_x).data<float>() + row * px_;
    ds_.read_image(image, quarter_turns, dst);
    (support ? sy_ : qy_)[static_cast<size_t>(row)] = static_cast<int32_t>(w);
    (support ? ep_.support_images : ep_.query_images)[static_cast<size_t>(row)] = image;
  }
  Episode finish() {
    ep_.support_y = tensor::Tensor::from_indices(sy_, {spec_.ways * spec_.shots});
    ep_.query_y = tensor::Tensor::from_indices(qy_, {spec_.ways * spec_.queries});
    return std::move(ep_);
  }

 private:
  const Dataset& ds_;
  const EpisodeSpec& spec_;
  int64_t px_;
  Episode ep_;
  std::vector<int32_t> sy_, qy_;
};

}  // namespace

const char* within_name(Within within) { return within == Within::alphabet ? "alphabet" : "any"; }

Within parse_within(const std::string& name, const std::string& flag) {
  if (name == "any") return Within::any;
  if (name == "alphabet") return Within::alphabet;
  throw Error(::metafew::detail::concat(flag, " must be any (classes from anywhere in the split) or alphabet ",
                                        "(Lake's trials: the classes of one Omniglot alphabet, support and ",
                                        "queries by different drawers), got '", name, "'"),
              ErrorKind::usage);
}

EpisodeSampler::EpisodeSampler(std::shared_ptr<const Dataset> ds, const std::string& split, EpisodeSpec spec,
                               uint64_t seed, Within within)
    : ds_(std::move(ds)), split_(nullptr), spec_(spec), seed_(seed), split_tag_(hash_string(split)),
      within_(within) {
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
  if (within_ == Within::any) return;
  MF_USAGE_CHECK(ds_->layout() == Layout::omniglot, "--episodes-within alphabet needs a dataset in the Omniglot ",
                 "layout (ROOT/images_background/<alphabet>/<character>/*.png); ", ds_->source(), " is in the ",
                 layout_name(ds_->layout()), " layout");
  std::map<std::string, std::vector<int64_t>> by_alphabet;
  for (size_t i = 0; i < split_->classes.size(); ++i) {
    const SplitClass& c = split_->classes[i];
    std::string name = ds_->alphabet(c.base_class);
    if (rotated) name += "/rot" + std::to_string(90 * c.quarter_turns);
    by_alphabet[name].push_back(static_cast<int64_t>(i));
  }
  std::string largest;
  size_t most = 0;
  for (auto& [name, members] : by_alphabet) {
    if (members.size() > most) most = members.size(), largest = name;
    if (static_cast<int64_t>(members.size()) < spec.ways) continue;
    drawer_images_.resize(split_->classes.size());
    for (int64_t i : members) {
      const SplitClass& c = split_->classes[static_cast<size_t>(i)];
      auto& table = drawer_images_[static_cast<size_t>(i)];
      table = drawer_images(*ds_, ds_->base_class(c.base_class));
      const auto drawers = static_cast<int64_t>(table.size());
      MF_USAGE_CHECK(drawers >= spec.shots + spec.queries, "--episodes-within alphabet: character '",
                     ds_->class_name(c, rotated), "' of split '", split, "' has images by ", drawers,
                     " known drawers (from file names like 0965_07.png: drawer 7), fewer than shots + queries = ",
                     spec.shots + spec.queries, "; every support and query image of an episode needs a drawer");
    }
    group_names_.push_back(name);
    groups_.push_back(std::move(members));
  }
  MF_USAGE_CHECK(!groups_.empty(), "--episodes-within alphabet: ", spec.ways, "-way episodes need an alphabet ",
                 "with ", spec.ways, " characters, but the largest of split '", split, "' ('", largest,
                 "') has ", most, "; use --ways ", most, " or fewer");
}

Episode EpisodeSampler::episode(uint64_t index) const {
  return within_ == Within::alphabet ? alphabet_episode(index) : any_episode(index);
}

Episode EpisodeSampler::alphabet_episode(uint64_t index) const {
  core::Rng rng = core::Rng::from(seed_, {split_tag_, index});
  const int64_t ways = spec_.ways, shots = spec_.shots, queries = spec_.queries;
  const std::vector<int64_t>& group = groups_[static_cast<size_t>(rng.below(groups_.size()))];
  const std::vector<int64_t> picked = choose_distinct(rng, static_cast<int64_t>(group.size()), ways);
  std::vector<const SplitClass*> classes;
  std::vector<const std::vector<std::pair<int32_t, int64_t>>*> images;  // each character's image by each drawer
  std::vector<std::string> names;
  for (int64_t p : picked) {
    const auto i = static_cast<size_t>(group[static_cast<size_t>(p)]);
    classes.push_back(&split_->classes[i]);
    images.push_back(&drawer_images_[i]);
    names.push_back(ds_->class_name(*classes.back(), split_->rotated));
  }
  // The drawers who drew every chosen character.
  std::vector<int32_t> common;
  for (size_t w = 0; w < images.size(); ++w) {
    std::vector<int32_t> mine;
    for (const auto& entry : *images[w]) mine.push_back(entry.first);
    if (w > 0) {
      std::vector<int32_t> both;
      std::set_intersection(common.begin(), common.end(), mine.begin(), mine.end(), std::back_inserter(both));
      mine = std::move(both);
    }
    common = std::move(mine);
  }
  MF_USAGE_CHECK(static_cast<int64_t>(common.size()) >= shots + queries, "--episodes-within alphabet: episode ",
                 index, " of split '", split_->name, "' drew characters (", core::join(names), ") that only ",
                 common.size(), " drawers drew all of, fewer than shots + queries = ", shots + queries);
  const std::vector<int64_t> drawers = choose_distinct(rng, static_cast<int64_t>(common.size()), shots + queries);
  EpisodeBuilder b(*ds_, spec_);
  for (int64_t w = 0; w < ways; ++w) {
    b.name(std::move(names[static_cast<size_t>(w)]));
    const auto& mine = *images[static_cast<size_t>(w)];
    for (int64_t k = 0; k < shots + queries; ++k) {
      const int32_t d = common[static_cast<size_t>(drawers[static_cast<size_t>(k)])];
      const auto it = std::lower_bound(mine.begin(), mine.end(), d,
                                       [](const std::pair<int32_t, int64_t>& e, int32_t v) { return e.first < v; });
      b.put(w, k, it->second, classes[static_cast<size_t>(w)]->quarter_turns);
    }
  }
  return b.finish();
}

Episode EpisodeSampler::any_episode(uint64_t index) const {
  core::Rng rng = core::Rng::from(seed_, {split_tag_, index});
  const int64_t ways = spec_.ways, shots = spec_.shots, queries = spec_.queries;
  const std::vector<int64_t> picked = choose_distinct(rng, static_cast<int64_t>(split_->classes.size()), ways);
  EpisodeBuilder b(*ds_, spec_);
  for (int64_t w = 0; w < ways; ++w) {
    const SplitClass& c = split_->classes[static_cast<size_t>(picked[static_cast<size_t>(w)])];
    b.name(ds_->class_name(c, split_->rotated));
    const ClassEntry& base = ds_->base_class(c.base_class);
    const std::vector<int64_t> imgs = choose_distinct(rng, base.image_count, shots + queries);
    for (int64_t k = 0; k < shots + queries; ++k)
      b.put(w, k, base.first_image + imgs[static_cast<size_t>(k)], c.quarter_turns);
  }
  return b.finish();
}

}  // namespace metafew::data
