#include "data/data_support.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>

#include "data/hash.h"

#define STB_IMAGE_WRITE_IMPLEMENTATION
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wpedantic"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wsign-compare"
#endif
#include <stb/stb_image_write.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace metafew::testing {
namespace fs = std::filesystem;

TempDir::TempDir(const std::string& tag) {
  static std::atomic<int> counter{0};
  path_ = fs::temp_directory_path() /
          ("metafew-test-" + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  fs::remove_all(path_);
  fs::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

void write_test_image(const fs::path& file, int w, int h, int pattern, int variant) {
  std::vector<unsigned char> px(static_cast<size_t>(w * h));
  const double cx = (0.3 + 0.4 * ((pattern * 37) % 11) / 10.0) * w + (variant % 3) - 1;
  const double cy = (0.3 + 0.4 * ((pattern * 53) % 7) / 6.0) * h + (variant % 2);
  const double r = (0.15 + 0.1 * (pattern % 3)) * std::min(w, h);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const double d = std::hypot(x - cx, y - cy);
      px[static_cast<size_t>(y * w + x)] = d < r ? 0 : 255;  // dark blob on white, like Omniglot
    }
  fs::create_directories(file.parent_path());
  if (file.extension() == ".png") {
    stbi_write_png(file.c_str(), w, h, 1, px.data(), w);
  } else {
    std::ofstream out(file, std::ios::binary);
    out << "P5\n" << w << " " << h << "\n255\n";
    out.write(reinterpret_cast<const char*>(px.data()), static_cast<std::streamsize>(px.size()));
  }
}

void write_text(const fs::path& file, const std::string& text) {
  fs::create_directories(file.parent_path());
  std::ofstream(file, std::ios::binary) << text;
}

void make_class_folders(const fs::path& dir, int classes, int images, int size, const std::string& prefix) {
  for (int k = 0; k < classes; ++k) {
    char name[32];
    std::snprintf(name, sizeof(name), "%s%02d", prefix.c_str(), k);
    for (int i = 0; i < images; ++i)
      write_test_image(dir / name / ("img" + std::to_string(i) + ".png"), size, size, k, i);
  }
}

uint64_t episode_hash(const data::Episode& ep) {
  data::ChunkHasher h;
  for (const tensor::Tensor* t : {&ep.support_x, &ep.support_y, &ep.query_x, &ep.query_y}) {
    for (int64_t d : t->shape()) h.add_u64(static_cast<uint64_t>(d));
    h.add(t->raw_data(), static_cast<size_t>(t->numel()) * tensor::dtype_size(t->dtype()));
  }
  for (const std::string& n : ep.class_names) h.add_string(n);
  return h.value();
}

uint64_t batch_hash(const data::Batch& b) {
  data::ChunkHasher h;
  for (const tensor::Tensor* t : {&b.x, &b.y}) {
    for (int64_t d : t->shape()) h.add_u64(static_cast<uint64_t>(d));
    h.add(t->raw_data(), static_cast<size_t>(t->numel()) * tensor::dtype_size(t->dtype()));
  }
  return h.value();
}

}  // namespace metafew::testing
