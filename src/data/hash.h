#pragma once
// Stable 64-bit hashes for data/: cache keys, checksums, split-name tags. These values are written to disk
// and feed episode seeds, so they must never change with the platform or the standard library (std::hash
// would): FNV-1a for short strings, a four-lane multiply-rotate hash for bulk bytes, both finished by
// core::mix64.
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace metafew::data {

// FNV-1a 64 of a string, finished with mix64 (the raw FNV of short strings has weak low bits).
uint64_t hash_string(std::string_view s, uint64_t seed = 0);

// Fast hash of a byte range (several GB/s); equal bytes give equal hashes on every platform.
uint64_t hash_bytes(const void* data, size_t size, uint64_t seed = 0);

// Order-dependent combination of two hashes.
uint64_t hash_combine(uint64_t h, uint64_t v);

// Incremental form of hash_bytes over a sequence of chunks: feeding chunks a, b gives the same result as
// hashing them one after the other (not as hash_bytes of their concatenation).
class ChunkHasher {
 public:
  explicit ChunkHasher(uint64_t seed = 0) : h_(seed) {}
  void add(const void* data, size_t size) { h_ = hash_combine(h_, hash_bytes(data, size, size)); }
  void add_u64(uint64_t v) { h_ = hash_combine(h_, v); }
  void add_string(std::string_view s) { h_ = hash_combine(h_, hash_string(s)); }
  uint64_t value() const { return h_; }

 private:
  uint64_t h_;
};

}  // namespace metafew::data
