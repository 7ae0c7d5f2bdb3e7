#include "data/sinusoid.h"

#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "data/hash.h"

namespace metafew::data {

RegressionTask sinusoid_task(uint64_t seed, const std::string& split, uint64_t index, int64_t shots,
                             int64_t queries) {
  MF_USAGE_CHECK(shots >= 1 && queries >= 0, "sinusoid_task: need shots >= 1 and queries >= 0, got shots ",
                 shots, ", queries ", queries);
  core::Rng rng = core::Rng::from(seed, {hash_string("sinusoid"), hash_string(split), index});
  RegressionTask t;
  t.amplitude = rng.uniform(0.1, 5.0);
  t.phase = rng.uniform(0.0, M_PI);
  auto draw = [&](int64_t n, tensor::Tensor& x, tensor::Tensor& y) {
    std::vector<double> xv(static_cast<size_t>(n)), yv(static_cast<size_t>(n));
    for (size_t i = 0; i < xv.size(); ++i) {
      xv[i] = rng.uniform(-5.0, 5.0);
      yv[i] = t.amplitude * std::sin(xv[i] - t.phase);
    }
    x = tensor::Tensor::from_vector(xv, {n, 1});
    y = tensor::Tensor::from_vector(yv, {n, 1});
  };
  draw(shots, t.support_x, t.support_y);
  draw(queries, t.query_x, t.query_y);
  return t;
}

}  // namespace metafew::data
