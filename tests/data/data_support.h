#pragma once
// Helpers for the data tests: a self-removing temporary folder and small image writers.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "data/batch.h"
#include "data/episode.h"

namespace metafew::testing {

// A fresh folder under the system temp dir, removed (recursively) when the object dies.
class TempDir {
 public:
  explicit TempDir(const std::string& tag);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::string str() const { return path_.string(); }
  std::filesystem::path operator/(const std::string& rel) const { return path_ / rel; }

 private:
  std::filesystem::path path_;
};

// Writes a w x h grayscale image whose content depends on (pattern, variant): a class-specific blob with a
// variant-specific offset, so classes differ. Format by extension: .png (stb_image_write) or .pgm.
void write_test_image(const std::filesystem::path& file, int w, int h, int pattern, int variant);
void write_text(const std::filesystem::path& file, const std::string& text);

// Class folders dir/<prefix><k>/img<i>.png, k in [0, classes), i in [0, images).
void make_class_folders(const std::filesystem::path& dir, int classes, int images, int size = 20,
                        const std::string& prefix = "class");

// A stable hash of an episode's tensors and class names (bitwise).
uint64_t episode_hash(const data::Episode& ep);
// The same for a pretraining batch.
uint64_t batch_hash(const data::Batch& b);

}  // namespace metafew::testing
