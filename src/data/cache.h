#pragma once
// The decoded-image cache (Note [Cache format] in cache.cpp). Internal to data/; open_dataset drives it.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace metafew::data::detail {

struct CachedImages {
  std::vector<ClassEntry> classes;
  std::vector<uint8_t> pixels;
};

// The cache file for one source folder and preprocessing inside `cache_dir`. Its *name* depends on the
// folder and the preprocessing only; the listing is checked through the key inside, so a changed folder
// overwrites its own stale entry instead of piling up new ones.
std::string cache_file_path(const std::string& cache_dir, const std::string& root, Layout layout,
                            const ImageSpec& image, bool invert);

// Reads a cache file. Returns nullopt with `why` set ("absent", "stale: ...", "damaged: ...") unless the file
// exists, has the magic, version, key and image spec expected, the sizes its header states and a matching
// checksum, and its class table is consistent with its pixel count. Never throws for a bad file.
std::optional<CachedImages> read_cache(const std::string& path, uint64_t key, const ImageSpec& image,
                                       std::string& why);

// Writes atomically (temporary file in the same folder, flushed, renamed over `path`); creates the folder.
// Returns the file size. Throws naming the path when any step fails (the temporary file is removed).
int64_t write_cache(const std::string& path, uint64_t key, const ImageSpec& image,
                    const std::vector<ClassEntry>& classes, const std::vector<uint8_t>& pixels);

}  // namespace metafew::data::detail
