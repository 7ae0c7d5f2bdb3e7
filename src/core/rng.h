#pragma once
// Counter-based random numbers (ARCHITECTURE.md, decision 4).
//
// An Rng is a pure function of (key, counter): the i-th draw is a hash of the key and i, so any stream can
// be rebuilt from a seed and a few integers (the split, the episode index, the task...) with no shared
// state, at any thread count, after a resume. The hash is SplitMix64's finaliser, which passes BigCrush
// when driven by a counter; keys are derived by hashing the parts together.
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <utility>

namespace metafew::core {

inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// A key from parts: derive_key(seed, {split_id, episode}).
inline uint64_t derive_key(uint64_t seed, std::initializer_list<uint64_t> parts) {
  uint64_t k = mix64(seed + 0x9e3779b97f4a7c15ULL);
  for (uint64_t p : parts) k = mix64(k ^ (p + 0x9e3779b97f4a7c15ULL + (k << 6) + (k >> 2)));
  return k;
}

class Rng {
 public:
  explicit Rng(uint64_t key = 0, uint64_t counter = 0) : key_(key), counter_(counter) {}
  static Rng from(uint64_t seed, std::initializer_list<uint64_t> parts) { return Rng(derive_key(seed, parts)); }

  uint64_t next_u64() { return mix64(key_ + 0x9e3779b97f4a7c15ULL * ++counter_); }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // Uniform integer in [0, n), unbiased (rejection on the top of the range).
  uint64_t below(uint64_t n) {
    if (n <= 1) return 0;
    const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = next_u64();
    while (x >= limit);
    return x % n;
  }
  // Standard normal (Box-Muller; uses two draws).
  double normal() {
    double u1 = uniform(), u2 = uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  // Fisher-Yates over [first, last).
  template <class It>
  void shuffle(It first, It last) {
    const auto n = last - first;
    for (auto i = n - 1; i > 0; --i) std::swap(first[i], first[static_cast<decltype(n)>(below(static_cast<uint64_t>(i) + 1))]);
  }

  uint64_t key() const { return key_; }
  uint64_t counter() const { return counter_; }

 private:
  uint64_t key_;
  uint64_t counter_;
};

}  // namespace metafew::core
