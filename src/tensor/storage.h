#pragma once
// 64-byte aligned, reference-counted buffers drawn from a process-wide cache.
//
// Note [Buffer cache]: a meta-iteration allocates and frees the same buffer sizes over and over. Handing
// those back to glibc costs page faults on every large free (ARCHITECTURE.md, "Where the time goes"), so
// freed buffers are kept in per-size free lists and reused. The cache is bounded (release_cached_buffers()
// empties it); sizes are rounded up to 64 bytes so near-equal requests share a list.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace metafew::tensor {

class Storage {
 public:
  explicit Storage(size_t bytes);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }

  // Note [Storage generation]: a number unique to this storage's current contents across the process: drawn
  // from a global counter when the storage is created and again by touch(), which every in-place writer of
  // an existing tensor calls (Tensor::fill_ / copy_, Variable::mutable_data). Kernels that write a fresh
  // output before anyone reads it need not. Caches of data derived from a tensor (the oneDNN backend's
  // reordered convolution weights) key on it: same generation, same contents.
  uint64_t generation() const { return generation_.load(std::memory_order_relaxed); }
  void touch();

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  std::atomic<uint64_t> generation_;
};

struct BufferCacheStats {
  size_t cached_bytes = 0;   // held in free lists
  size_t live_bytes = 0;     // handed out and not yet returned
  size_t os_allocations = 0; // times the cache had to ask the system
};

BufferCacheStats buffer_cache_stats();
void release_cached_buffers();
// Upper bound on bytes kept in the free lists (default 4 GiB); beyond it freed buffers go back to the system.
void set_buffer_cache_limit(size_t bytes);

}  // namespace metafew::tensor
