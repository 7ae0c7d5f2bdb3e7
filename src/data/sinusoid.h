#pragma once
// builtin:sinusoid, the regression family of the MAML paper (Finn et al. 2017, section 5.1):
// y = A sin(x - phase), amplitude A ~ U[0.1, 5], phase ~ U[0, pi], inputs x ~ U[-5, 5].
#include <cstdint>
#include <string>

#include "tensor/tensor.h"

namespace metafew::data {

struct RegressionTask {
  tensor::Tensor support_x, support_y, query_x, query_y;  // (shots, 1) and (queries, 1), f32
  double amplitude = 0, phase = 0;
};

// Task `index` of `split`: a pure function of (seed, split, index), like EpisodeSampler::episode.
// requires: shots >= 1, queries >= 0.
RegressionTask sinusoid_task(uint64_t seed, const std::string& split, uint64_t index, int64_t shots,
                             int64_t queries);

}  // namespace metafew::data
