#include "tensor/storage.h"

#include <cstdlib>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#include "core/error.h"

namespace metafew::tensor {
namespace {

constexpr size_t kAlign = 64;

struct BufferCache {
  std::mutex mu;
  std::unordered_map<size_t, std::vector<void*>> free_lists;
  size_t cached = 0, live = 0, os_allocs = 0;
  size_t limit = size_t(4) << 30;

  void* take(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mu);
      live += bytes;
      auto it = free_lists.find(bytes);
      if (it != free_lists.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached -= bytes;
        return p;
      }
      ++os_allocs;
    }
    void* p = std::aligned_alloc(kAlign, bytes);
    MF_CHECK(p != nullptr, "out of memory: a tensor of ", bytes, " bytes (", static_cast<double>(bytes) / 1e9,
             " GB) could not be allocated");
    return p;
  }

  void give(void* p, size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mu);
      live -= bytes;
      if (cached + bytes <= limit) {
        free_lists[bytes].push_back(p);
        cached += bytes;
        return;
      }
    }
    std::free(p);
  }

  void release() {
    std::lock_guard<std::mutex> lock(mu);
    for (auto& [bytes, list] : free_lists)
      for (void* p : list) std::free(p);
    free_lists.clear();
    cached = 0;
  }
};

uint64_t next_generation() {
  static std::atomic<uint64_t> counter{1};  // 0 means "unknown" to users of generations
  return counter.fetch_add(1, std::memory_order_relaxed);
}

BufferCache& cache() {
  // Never destroyed: tensors held in static objects may be freed after main returns.
  static BufferCache* c = new BufferCache();
  return *c;
}

}  // namespace

Storage::Storage(size_t bytes) : bytes_((bytes + kAlign - 1) / kAlign * kAlign), generation_(next_generation()) {
  if (bytes_ > 0) data_ = cache().take(bytes_);
}

void Storage::touch() { generation_.store(next_generation(), std::memory_order_relaxed); }

Storage::~Storage() {
  if (data_) cache().give(data_, bytes_);
}

BufferCacheStats buffer_cache_stats() {
  auto& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return {c.cached, c.live, c.os_allocs};
}

void release_cached_buffers() { cache().release(); }

void set_buffer_cache_limit(size_t bytes) {
  auto& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  c.limit = bytes;
}

}  // namespace metafew::tensor
