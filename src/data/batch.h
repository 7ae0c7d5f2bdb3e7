#pragma once
// Mini-batches of images from every class of one split, labelled by class (0 .. classes-1 in the split's
// order): what supervised pretraining (--algo pretrain) trains on instead of episodes.
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "tensor/tensor.h"

namespace metafew::data {

struct Batch {
  tensor::Tensor x;  // (batch, C, H, W) f32 in [0, 1]
  tensor::Tensor y;  // (batch) i32: the image's class, its index among the split's classes
};

// Batch i is a pure function of (seed, split, batch size, i) and the dataset (Note [Pretraining batches] in
// batch.cpp). Thread-safe.
class BatchSampler {
 public:
  // Throws (usage) when the split is unknown, has fewer than 2 classes, or batch is < 1.
  BatchSampler(std::shared_ptr<const Dataset> ds, const std::string& split, int64_t batch, uint64_t seed);

  Batch batch(uint64_t index) const;
  int64_t classes() const { return static_cast<int64_t>(split_->classes.size()); }
  int64_t images() const { return total_; }

 private:
  std::shared_ptr<const std::vector<int64_t>> epoch_order(uint64_t epoch) const;

  std::shared_ptr<const Dataset> ds_;
  const Split* split_;
  int64_t batch_;
  uint64_t seed_, split_tag_;
  std::vector<int64_t> first_;  // per split class, its first position among the split's images
  int64_t total_ = 0;
  mutable std::mutex mu_;  // guards the cached order of the most recent epoch
  mutable uint64_t cached_epoch_ = 0;
  mutable std::shared_ptr<const std::vector<int64_t>> cached_;
};

}  // namespace metafew::data
