#pragma once
// The window corners of 2x2, stride-2 max-pooling, shared by the pooling kernels (kernels.cpp) and the fused
// first block (conv_single_channel.cpp).
#include <cstdint>
#include <vector>

namespace metafew::tensor {

// The input offsets of the top-left corners of the 2x2 windows of an (h, w) plane, in output order, so that
// the pooling loops run over a whole plane at once (rows of 3 to 14 outputs are too short to vectorise).
inline std::vector<int32_t> pool2x2_corners(int64_t h, int64_t w) {
  const int64_t oh = h / 2, ow = w / 2;
  std::vector<int32_t> t(static_cast<size_t>(oh * ow));
  for (int64_t i = 0; i < oh; ++i)
    for (int64_t j = 0; j < ow; ++j)
      t[static_cast<size_t>(i * ow + j)] = static_cast<int32_t>(2 * i * w + 2 * j);
  return t;
}

}  // namespace metafew::tensor
