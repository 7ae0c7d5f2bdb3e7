#pragma once
// Checkpoints: a JSON header and named tensors in one versioned, checksummed file that is replaced
// atomically (ARCHITECTURE.md, decision 5). The layout is in Note [Checkpoint format] (checkpoint.cpp), the
// checksum in Note [Checkpoint checksum].
#include <array>
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace metafew::io {

struct NamedTensor {
  std::string name;
  tensor::Tensor tensor;
};

struct Checkpoint {
  // Free-form metadata: algorithm, model config, preprocessing, resolved config, iteration, class names,
  // RNG state, optimizer step count... Any JSON value; stored and returned as is.
  nlohmann::json header;
  // Parameters, optimizer moments, ... (f32, f64 or i32, any shape including 0-d and empty), in order.
  std::vector<NamedTensor> tensors;
  // The file it was read from (set by load_checkpoint, never saved); names the file in find_tensor's errors.
  std::string source;
};

// Writes `ckpt` to `path`, replacing any file there only once the new one is complete on disk (AtomicFile).
// requires: tensor names are non-empty and unique; every tensor is defined; the folder of `path` exists;
//           strings in the header are valid UTF-8.
// ensures:  on success, load_checkpoint(path) returns the same header and bit-identical tensors in the same
//           order. On any error (throws metafew::Error "checkpoint <path>: ..."), a previous file at `path`
//           is left as it was and no temporary file remains.
void save_checkpoint(const std::string& path, const Checkpoint& ckpt);

// Reads and validates a checkpoint: magic, format version, sizes, checksum, JSON header and the tensor table
// (dtype, shape, byte counts, alignment, bounds, overlaps, duplicate names). Throws metafew::Error whose
// message starts with "checkpoint <path>: " and says what is wrong: missing, a folder, empty, truncated, not
// a metafew checkpoint (naming common foreign formats: PNG, JPEG, gzip, ZIP, JSON, ...), another format
// version, damaged (checksum mismatch), or an inconsistent table.
Checkpoint load_checkpoint(const std::string& path);

// The tensor called `name`. Throws metafew::Error naming the tensor, the file (ckpt.source, when set) and
// the tensors the checkpoint does hold.
const tensor::Tensor& find_tensor(const Checkpoint& ckpt, const std::string& name);

namespace detail {

// The checkpoint checksum (Note [Checkpoint checksum]); incremental: any split of the input into update()
// calls gives the same digest as one call over all of it.
class Checksum {
 public:
  void update(const void* data, size_t bytes);
  uint64_t digest() const;

 private:
  void add_word(uint64_t w);

  std::array<uint64_t, 4> lanes_ = {0x243f6a8885a308d3ULL, 0x13198a2e03707345ULL, 0xa4093822299f31d1ULL,
                                    0x082efa98ec4e6c89ULL};
  uint64_t words_ = 0;
  uint64_t bytes_ = 0;
  std::array<unsigned char, 8> pending_{};
  size_t pending_bytes_ = 0;
};

inline uint64_t checksum64(const void* data, size_t bytes) {
  Checksum c;
  c.update(data, bytes);
  return c.digest();
}

}  // namespace detail

}  // namespace metafew::io
