#include "data/batch.h"

#include <algorithm>
#include <numeric>

#include "core/error.h"
#include "core/rng.h"
#include "data/hash.h"

// Note [Pretraining batches]
// The split's images (every image of every class, a rotated class's images rotated) are numbered class by
// class. Epoch e visits them all once, in the order of a full Fisher-Yates shuffle drawn from the stream
// Rng::from(seed, {hash(split), "epoch", e}); batch i takes positions [i * batch, (i + 1) * batch) of the
// epochs laid end to end, so a batch may straddle two epochs. Nothing depends on earlier batches, threads or
// timing: a resumed run draws the batches an uninterrupted one would, and each image is seen once per epoch.

namespace metafew::data {

namespace {
constexpr uint64_t kEpochTag = 0x65706f6368ULL;  // "epoch"
}

BatchSampler::BatchSampler(std::shared_ptr<const Dataset> ds, const std::string& split, int64_t batch, uint64_t seed)
    : ds_(std::move(ds)), split_(nullptr), batch_(batch), seed_(seed), split_tag_(hash_string(split)) {
  MF_USAGE_CHECK(ds_ != nullptr, "BatchSampler: the dataset is null");
  split_ = &ds_->split(split);
  MF_USAGE_CHECK(batch_ >= 1, "BatchSampler: --batch-size must be at least 1, got ", batch_);
  MF_USAGE_CHECK(split_->classes.size() >= 2, "pretrain: split '", split, "' of ", ds_->source(), " has ",
                 split_->classes.size(), " classes; a classifier needs at least 2");
  for (const SplitClass& c : split_->classes) {
    first_.push_back(total_);
    total_ += ds_->class_size(c);
  }
  MF_USAGE_CHECK(total_ > 0, "pretrain: split '", split, "' of ", ds_->source(), " has no images");
}

std::shared_ptr<const std::vector<int64_t>> BatchSampler::epoch_order(uint64_t epoch) const {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (cached_ && cached_epoch_ == epoch) return cached_;
  }
  auto order = std::make_shared<std::vector<int64_t>>(static_cast<size_t>(total_));
  std::iota(order->begin(), order->end(), int64_t{0});
  core::Rng rng = core::Rng::from(seed_, {split_tag_, kEpochTag, epoch});
  for (int64_t i = total_ - 1; i > 0; --i) {
    const auto j = static_cast<int64_t>(rng.below(static_cast<uint64_t>(i + 1)));
    std::swap((*order)[static_cast<size_t>(i)], (*order)[static_cast<size_t>(j)]);
  }
  std::lock_guard<std::mutex> lock(mu_);
  cached_epoch_ = epoch;
  cached_ = order;
  return order;
}

Batch BatchSampler::batch(uint64_t index) const {
  const ImageSpec& im = ds_->image_spec();
  const int64_t px = im.pixels();
  Batch b;
  b.x = tensor::Tensor::empty({batch_, im.channels, im.height, im.width});
  std::vector<int32_t> y(static_cast<size_t>(batch_));
  float* x = b.x.data<float>();
  const uint64_t n = static_cast<uint64_t>(total_);
  std::shared_ptr<const std::vector<int64_t>> order;
  uint64_t epoch = ~uint64_t{0};
  for (int64_t k = 0; k < batch_; ++k) {
    const uint64_t pos = index * static_cast<uint64_t>(batch_) + static_cast<uint64_t>(k);
    if (pos / n != epoch) {
      epoch = pos / n;
      order = epoch_order(epoch);
    }
    const int64_t item = (*order)[static_cast<size_t>(pos % n)];
    // The class holding item: the last whose first position is <= item.
    const auto c = static_cast<size_t>(std::upper_bound(first_.begin(), first_.end(), item) - first_.begin() - 1);
    const SplitClass& sc = split_->classes[c];
    ds_->read_image(ds_->base_class(sc.base_class).first_image + (item - first_[c]), sc.quarter_turns, x + k * px);
    y[static_cast<size_t>(k)] = static_cast<int32_t>(c);
  }
  b.y = tensor::Tensor::from_indices(y, {batch_});
  return b;
}

}  // namespace metafew::data
