#pragma once
// One few-shot task as the algorithms see it: a labelled support set and a query set.
#include <cstdint>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace metafew::meta {

using tensor::Tensor;

struct Task {
  Tensor support_x;  // (ways*shots, C, H, W) or (K, features), f32
  Tensor support_y;  // classification: (ways*shots) i32 in [0, ways); regression: (K, 1) f32
  Tensor query_x;
  Tensor query_y;
  int64_t ways = 0;  // 0 for regression
  uint64_t seed = 0;  // for the task's own random choices (Reptile's inner mini-batches)
  std::vector<std::string> class_names;  // per way, the dataset's class (eval's per-class results); may be empty
  bool regression() const { return ways == 0; }
};

}  // namespace metafew::meta
