#pragma once
// safetensors files (the Hugging Face format PyTorch users load with safetensors.torch.load_file, or with a
// few lines of json and torch.frombuffer): metafew's export for other tools, and one of the files
// meta-train --init-from reads. The layout and what the reader checks are in Note [safetensors]
// (safetensors.cpp).
#include <map>
#include <string>
#include <vector>

#include "io/checkpoint.h"

namespace metafew::io {

struct SafetensorsFile {
  std::vector<NamedTensor> tensors;             // in the order of their data in the file
  std::map<std::string, std::string> metadata;  // the "__metadata__" entry (strings only, by the format)
};

// Writes `tensors` (f32, f64 or i32, any shape; names non-empty, unique and not "__metadata__") and
// `metadata` to `path`, replacing a file there only once the new one is complete (AtomicFile). The data
// follow the header in the order given. Throws metafew::Error "safetensors <path>: ..." on a bad name or an
// I/O error, leaving a previous file at `path` as it was.
void save_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                      const std::map<std::string, std::string>& metadata);

// Reads and validates a safetensors file (Note [safetensors]). Tensors of dtypes metafew has no type for
// (F16, BF16, I64, ...) are refused naming the tensor and its dtype. Throws metafew::Error starting with
// "safetensors <path>: " that says what is wrong.
SafetensorsFile load_safetensors(const std::string& path);

// Whether the first bytes of a file (at least 9 of them) look like a safetensors header: a little-endian
// length followed by '{'. Used to tell the format from a metafew checkpoint without trusting the name.
bool looks_like_safetensors(const unsigned char* first, size_t n);

}  // namespace metafew::io
