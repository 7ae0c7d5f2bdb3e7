#pragma once
// 16-float vectors through GCC vector extensions, shared by metafew's hand-vectorised kernels
// (conv_single_channel.cpp, blocked_layout.cpp). One AVX-512 register; on a machine without AVX-512 GCC
// splits each into narrower registers, so the code stays portable.
#include <cstdint>
#include <cstring>

namespace metafew::tensor::vec16 {

constexpr int64_t kLanes = 16;
typedef float Vec __attribute__((vector_size(kLanes * sizeof(float))));

// Unaligned load and store (memcpy compiles to one vector move).
inline Vec load(const float* p) {
  Vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, const Vec& v) { std::memcpy(p, &v, sizeof v); }

}  // namespace metafew::tensor::vec16
