#pragma once
// Folder scanning for the Omniglot and class-per-folder layouts (Note [Scanning] in scan.cpp).
// Internal to data/: open_dataset is the public entry point.
#include <cstdint>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace metafew::data::detail {

struct SourceFile {
  std::string path;  // as opened (root-joined)
  uint64_t size = 0;
  int64_t mtime_ns = 0;
};

struct SourceClass {
  std::string name;   // Omniglot "Alphabet/characterNN"; folders "cls" or "train/cls"
  std::string group;  // Omniglot "background" | "evaluation"; folders "train" | "val" | "test" | ""
  std::string folder;
  std::vector<SourceFile> files;  // images only, sorted by name
};

struct SourceListing {
  std::string root;
  Layout layout = Layout::folder;
  std::vector<SourceClass> classes;  // deterministic order: group, then name (byte order)
  ScanReport report;
  int64_t images() const;
};

// Scans `root` with `requested` layout (auto_detect picks one). ensures: every class has at least one image.
// Throws naming the folder for: missing, not a folder, empty, no class folders, a class folder without
// images, Layout::omniglot forced on a folder without images_background/images_evaluation.
SourceListing scan_source(const std::string& root, Layout requested);

// The cache key: the listing (names, sizes, modification times) and the preprocessing.
uint64_t listing_key(const SourceListing& listing, const ImageSpec& image, bool invert);

}  // namespace metafew::data::detail
