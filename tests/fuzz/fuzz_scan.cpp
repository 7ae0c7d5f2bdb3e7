// libFuzzer target: the folder scanner and layout detection (Omniglot, class folders, split folders), with
// the cache, over a tree the input describes. Records, until the input ends:
//   kind (1 byte: 0 folder, 1 file, 2 symlink) | path length (1 byte) | path | content length (1 byte) | content
// Paths are made relative and '..' is removed, so the tree stays inside the scratch folder; a file's
// content is the bytes given (often not an image: the scanner must count and skip, or refuse, never crash).
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/error.h"
#include "data/dataset.h"
#include "fuzz_support.h"

namespace fs = std::filesystem;

namespace {

std::string safe_path(const uint8_t* p, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    const char c = static_cast<char>(p[i]);
    if (c == '\0') continue;  // a NUL cannot be in a path
    out += c;
  }
  fs::path clean;
  for (const auto& part : fs::path(out).relative_path()) {
    const std::string s = part.string();
    if (s.empty() || s == "." || s == ".." || s == "/") continue;
    clean /= s;
  }
  return clean.string();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const fs::path root = metafew::fuzz::scratch() / "tree";
  std::error_code ec;
  fs::remove_all(root, ec);
  fs::create_directories(root / "data");
  size_t at = 0;
  for (int records = 0; records < 64 && at + 3 <= size; ++records) {
    const uint8_t kind = data[at] % 3;
    const size_t plen = data[at + 1];
    if (at + 2 + plen + 1 > size) break;
    const std::string rel = safe_path(data + at + 2, plen);
    const size_t clen = data[at + 2 + plen];
    const size_t cstart = at + 3 + plen;
    const size_t cend = std::min(size, cstart + clen);
    at = cend;
    if (rel.empty()) continue;
    const fs::path p = root / "data" / rel;
    fs::create_directories(p.parent_path(), ec);
    if (kind == 0) {
      fs::create_directories(p, ec);
    } else if (kind == 1) {
      std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(data + cstart),
                                               static_cast<std::streamsize>(cend - cstart));
    } else {
      fs::create_symlink(safe_path(data + cstart, cend - cstart), p, ec);
    }
  }
  metafew::data::OpenOptions o;
  o.cache_dir = (root / "cache").string();
  o.image = {1, 8, 8};
  try {
    auto ds = metafew::data::open_dataset((root / "data").string(), o);
    // Reopen: the cache it wrote is read back.
    metafew::data::open_dataset((root / "data").string(), o);
  } catch (const metafew::Error&) {
  }
  return 0;
}
