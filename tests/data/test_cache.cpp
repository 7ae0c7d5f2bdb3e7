// The decoded-image cache: built, hit, stale after a change, damaged files rebuilt (never trusted).
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "data/data_support.h"
#include "data/dataset.h"

namespace metafew::testing {
namespace {

namespace fs = std::filesystem;

bool same_pixels(const data::Dataset& a, const data::Dataset& b) {
  return a.base_image_count() == b.base_image_count() &&
         std::memcmp(a.image_u8(0), b.image_u8(0),
                     static_cast<size_t>(a.base_image_count() * a.image_spec().pixels())) == 0;
}

void flip_byte(const std::string& path, std::streamoff at) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(at);
  char c = 0;
  f.get(c);
  f.seekp(at);
  f.put(static_cast<char>(c ^ 0x5a));
}

TEST_CASE("data: cache is built, hit, refreshed when stale and rebuilt when damaged") {
  TempDir src("cache-src"), cache("cache-dir");
  make_class_folders(src.path(), 5, 4, 32);
  data::OpenOptions o;
  o.cache_dir = cache.str();
  auto cold = data::open_dataset(src.str(), o);
  CHECK(cold->cache_report().state == "built");
  const std::string file = cold->cache_report().path;
  REQUIRE(fs::exists(file));
  CHECK(file.rfind(cache.str(), 0) == 0);
  CHECK(cold->cache_report().bytes == static_cast<int64_t>(fs::file_size(file)));

  auto warm = data::open_dataset(src.str(), o);
  CHECK(warm->cache_report().state == "hit");
  CHECK(same_pixels(*cold, *warm));
  data::OpenOptions off = o;
  off.use_cache = false;
  CHECK(same_pixels(*data::open_dataset(src.str(), off), *warm));  // cold and warm serve the same bytes

  // A flipped pixel byte: the checksum catches it.
  flip_byte(file, static_cast<std::streamoff>(fs::file_size(file)) - 10);
  auto fixed = data::open_dataset(src.str(), o);
  CHECK(fixed->cache_report().state == "rebuilt (damaged: checksum mismatch)");
  CHECK(same_pixels(*cold, *fixed));
  CHECK(data::open_dataset(src.str(), o)->cache_report().state == "hit");

  // Truncated, and garbage.
  fs::resize_file(file, fs::file_size(file) - 100);
  CHECK(data::open_dataset(src.str(), o)->cache_report().state.find("rebuilt (damaged: size") == 0);
  write_text(file, "garbage, not a cache");
  CHECK(data::open_dataset(src.str(), o)->cache_report().state ==
        "rebuilt (damaged: not a metafew cache file (bad magic))");
  // A flipped key byte reads as stale; a flipped class-table byte as damaged.
  flip_byte(file, 16);
  CHECK(data::open_dataset(src.str(), o)->cache_report().state.find("rebuilt (stale") == 0);
  flip_byte(file, 64 + 12);
  CHECK(data::open_dataset(src.str(), o)->cache_report().state == "rebuilt (damaged: checksum mismatch)");

  // The source changes: a new image, then a rewritten one (new size and time) -> stale, rebuilt, new content.
  write_test_image(src / "class02" / "img9.png", 32, 32, 7, 0);
  auto grown = data::open_dataset(src.str(), o);
  CHECK(grown->cache_report().state == "rebuilt (stale: the source listing or preprocessing changed)");
  CHECK(grown->base_image_count() == 21);
  write_test_image(src / "class00" / "img0.png", 40, 40, 3, 2);
  fs::last_write_time(src / "class00" / "img0.png",
                      fs::file_time_type::clock::now() + std::chrono::seconds(5));
  auto changed = data::open_dataset(src.str(), o);
  CHECK(changed->cache_report().state.find("rebuilt (stale") == 0);
  CHECK(std::memcmp(changed->image_u8(0), grown->image_u8(0), 784) != 0);
  // Another image size is another cache file, and does not disturb this one.
  data::OpenOptions big = o;
  big.image = {1, 16, 16};
  CHECK(data::open_dataset(src.str(), big)->cache_report().state == "built");
  CHECK(data::open_dataset(src.str(), o)->cache_report().state == "hit");
  // No leftover temporary files.
  for (const auto& e : fs::directory_iterator(cache.path()))
    CHECK(e.path().filename().string().find(".tmp.") == std::string::npos);
}

TEST_CASE("data: an unwritable cache folder is reported, not fatal") {
  TempDir src("cache-ro");
  make_class_folders(src.path(), 2, 2);
  write_text(src / ".." / (src.path().filename().string() + "-file"), "a file, not a folder");
  data::OpenOptions o;
  o.cache_dir = (src.path().parent_path() / (src.path().filename().string() + "-file") / "sub").string();
  auto ds = data::open_dataset(src.str(), o);
  CHECK(ds->cache_report().state.find("write failed") == 0);
  CHECK(ds->base_image_count() == 4);
  fs::remove(src.path().parent_path() / (src.path().filename().string() + "-file"));
}

}  // namespace
}  // namespace metafew::testing
