#pragma once
// 16-float vectors through GCC vector extensions, shared by metafew's hand-vectorised kernels
// (conv_single_channel.cpp, conv_small_image.cpp, blocked_layout.cpp). One AVX-512 register; on a machine without AVX-512 GCC
// splits each into narrower registers, so the code stays portable.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

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

// The first `lanes` lanes from p, the others 0 (all 16 when lanes == kLanes); reads nothing past them.
inline Vec load_lanes(const float* p, int64_t lanes) {
  if (lanes == kLanes) return load(p);
  Vec v{};
  std::memcpy(&v, p, static_cast<size_t>(lanes) * sizeof(float));
  return v;
}
// Writes the first `lanes` lanes of v to p (all 16 when lanes == kLanes).
inline void store_lanes(float* p, const Vec& v, int64_t lanes) {
  if (lanes == kLanes) {
    store(p, v);
  } else {
    std::memcpy(p, &v, static_cast<size_t>(lanes) * sizeof(float));
  }
}

// 16 int32 lanes: the masks of comparisons between Vecs (-1 true, 0 false) and integer lanes beside them.
typedef int32_t IVec __attribute__((vector_size(kLanes * sizeof(int32_t))));
inline IVec load(const int32_t* p) {
  IVec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store(int32_t* p, const IVec& v) { std::memcpy(p, &v, sizeof v); }

// Lanes picked by a run-time index vector: shuffle(a, idx)[i] = a[idx[i] mod 16]; shuffle(a, b, idx)[i] =
// (a ++ b)[idx[i] mod 32]. GCC's __builtin_shuffle; clang (the sanitizer and fuzz builds only) has no
// run-time form of it, so there a plain loop gives the same lanes.
inline Vec shuffle(const Vec& a, const IVec& idx) {
#if defined(__clang__)
  Vec r;
  for (int i = 0; i < kLanes; ++i) r[i] = a[idx[i] & static_cast<int>(kLanes - 1)];
  return r;
#else
  return __builtin_shuffle(a, idx);
#endif
}
inline Vec shuffle(const Vec& a, const Vec& b, const IVec& idx) {
#if defined(__clang__)
  Vec r;
  for (int i = 0; i < kLanes; ++i) {
    const int k = idx[i] & static_cast<int>(2 * kLanes - 1);
    r[i] = k < kLanes ? a[k] : b[k - kLanes];
  }
  return r;
#else
  return __builtin_shuffle(a, b, idx);
#endif
}

// f in every lane. Written out: `Vec{} + f` costs a scalar add of +0 before the broadcast, and the broadcast
// then comes from a register instead of straight from memory.
inline Vec splat(float f) { return Vec{f, f, f, f, f, f, f, f, f, f, f, f, f, f, f, f}; }

// Grow-only scratch of the calling thread, 64-byte aligned (a vector load that splits a cache line costs
// two): steady-state calls allocate nothing. One buffer per thread, shared by the kernels that use it; a
// kernel must not hold the pointer across a call to another kernel.
inline float* thread_scratch(size_t floats) {
  thread_local std::vector<float> buffer;
  constexpr size_t kAlign = 64 / sizeof(float);
  if (buffer.size() < floats + kAlign) buffer.resize(floats + kAlign);
  const auto address = reinterpret_cast<uintptr_t>(buffer.data());
  return buffer.data() + (kAlign - address / sizeof(float) % kAlign) % kAlign;
}

}  // namespace metafew::tensor::vec16
