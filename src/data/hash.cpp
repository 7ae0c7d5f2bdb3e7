#include "data/hash.h"

#include <cstring>

#include "core/rng.h"

namespace metafew::data {

uint64_t hash_string(std::string_view s, uint64_t seed) {
  uint64_t h = 0xcbf29ce484222325ULL ^ core::mix64(seed);
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return core::mix64(h);
}

uint64_t hash_combine(uint64_t h, uint64_t v) {
  return core::mix64(h ^ (v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2)));
}

namespace {
inline uint64_t rotl(uint64_t x, int r) {
  return (x << r) | (x >> (64 - r));
}
inline uint64_t lane(uint64_t h, uint64_t w) {
  return rotl(h ^ (w * 0x9e3779b97f4a7c15ULL), 29) * 0xbf58476d1ce4e5b9ULL;
}
}  // namespace

uint64_t hash_bytes(const void* data, size_t size, uint64_t seed) {
  // Four independent lanes over 32-byte blocks keep the multipliers busy; words are read little-endian as the
  // machine stores them (the cache is a per-machine file, see Note [Cache format] in cache.cpp).
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t h[4] = {core::mix64(seed), core::mix64(seed + 1), core::mix64(seed + 2), core::mix64(seed + 3)};
  size_t i = 0;
  for (; i + 32 <= size; i += 32) {
    uint64_t w[4];
    std::memcpy(w, p + i, 32);
    for (int k = 0; k < 4; ++k) h[k] = lane(h[k], w[k]);
  }
  uint64_t tail = 0;
  size_t shift = 0;
  for (; i < size; ++i, shift += 8) {
    tail ^= static_cast<uint64_t>(p[i]) << (shift % 64);
    if (shift % 64 == 56) {
      h[0] = lane(h[0], tail);
      tail = 0;
    }
  }
  h[1] = lane(h[1], tail);
  uint64_t r = static_cast<uint64_t>(size);
  for (uint64_t v : h) r = hash_combine(r, v);
  return r;
}

}  // namespace metafew::data
