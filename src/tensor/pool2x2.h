#pragma once
// 2x2, stride-2 max-pooling of one plane: the pooling kernels' loop (kernels.cpp) and the window corners,
// which the fused first block (conv_single_channel.cpp) shares.
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

// 2x2, stride-2 max-pooling of one plane of v = x * scale + shift (kAffine) or of x: maxima and their
// positions; ties keep the first position in scan order. Branch-free so that it vectorises (gathers).
template <bool kAffine, typename T>
inline void pool2x2_plane(const T* __restrict src, int64_t w, const int32_t* __restrict corners,
                          int64_t count, T scale, T shift, T* __restrict out, int32_t* __restrict arg,
                          T* __restrict raw = nullptr) {
  const int32_t ww = static_cast<int32_t>(w);
#pragma omp simd
  for (int64_t o = 0; o < count; ++o) {
    const int32_t base = corners[o];
    const T r00 = src[base], r01 = src[base + 1], r10 = src[base + ww], r11 = src[base + ww + 1];
    T v00 = r00, v01 = r01, v10 = r10, v11 = r11;
    if constexpr (kAffine) {
      v00 = v00 * scale + shift;
      v01 = v01 * scale + shift;
      v10 = v10 * scale + shift;
      v11 = v11 * scale + shift;
    }
    const bool top_b = v01 > v00;
    const T top = top_b ? v01 : v00;
    const int32_t top_i = top_b ? base + 1 : base;
    const bool bot_d = v11 > v10;
    const T bot = bot_d ? v11 : v10;
    const int32_t bot_i = bot_d ? base + ww + 1 : base + ww;
    const bool take_bot = bot > top;
    out[o] = take_bot ? bot : top;
    arg[o] = take_bot ? bot_i : top_i;
    if constexpr (kAffine) raw[o] = take_bot ? (bot_d ? r11 : r10) : (top_b ? r01 : r00);
  }
}

}  // namespace metafew::tensor
