#include "data/cache.h"

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "data/hash.h"

// Note [Cache format]
// One file per (source folder, preprocessing), written in the machine's byte order (a cache is a local
// artefact, never shared; a foreign file simply fails its checks and is rebuilt):
//
//   header, 64 bytes: magic "MFDCACHE" | u32 version | u32 zero | u64 key | u64 meta_bytes | u64 pixel_bytes
//   |
//                     u64 checksum | u32 channels | u32 height | u32 width | u32 zero
//   meta:   u64 class_count, then per class: u32 name_bytes, name, u64 first_image, u64 image_count
//   pixels: uint8, image after image, CHW (what Dataset stores)
//
// The key hashes the source listing (relative paths, sizes, modification times) and the preprocessing
// (layout, image spec, inversion, pipeline version), so touching, adding or removing a file, or asking for
// another size, makes the cache stale. The checksum covers key, spec, meta and pixels, so a truncated or
// bit-flipped file is detected. Pixels are stored as uint8 (a quarter of f32; full Omniglot at 28x28 is 25
// MB): the pipeline quantises to 8 bits before caching, so a cold and a warm load serve the very same floats.
// A warm load is one read of the file into the pixel vector; mmap would save that copy but not measurably at
// this size (bench/results/data_load.md).

namespace metafew::data::detail {
namespace fs = std::filesystem;

namespace {

constexpr char kMagic[8] = {'M', 'F', 'D', 'C', 'A', 'C', 'H', 'E'};
constexpr uint32_t kVersion = 1;

struct Header {
  char magic[8];
  uint32_t version;
  uint32_t zero0;
  uint64_t key;
  uint64_t meta_bytes;
  uint64_t pixel_bytes;
  uint64_t checksum;
  uint32_t channels, height, width;
  uint32_t zero1;
};
static_assert(sizeof(Header) == 64, "cache header must be 64 bytes");

uint64_t checksum(const Header& h, const std::vector<uint8_t>& meta, const uint8_t* pixels,
                  size_t pixel_bytes) {
  ChunkHasher c(0x6d66636163686531ULL);
  c.add_u64(h.key);
  c.add_u64(h.channels);
  c.add_u64(h.height);
  c.add_u64(h.width);
  c.add(meta.data(), meta.size());
  c.add(pixels, pixel_bytes);
  return c.value();
}

template <class T>
void put(std::vector<uint8_t>& out, T v) {
  const size_t at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &v, sizeof(T));
}

template <class T>
bool get(const std::vector<uint8_t>& in, size_t& pos, T& v) {
  if (in.size() - pos < sizeof(T)) return false;
  std::memcpy(&v, in.data() + pos, sizeof(T));
  pos += sizeof(T);
  return true;
}

}  // namespace

std::string cache_file_path(const std::string& cache_dir, const std::string& root, Layout layout,
                            const ImageSpec& image, bool invert) {
  std::error_code ec;
  const fs::path canon = fs::weakly_canonical(root, ec);
  ChunkHasher h;
  h.add_string(ec ? root : canon.string());
  h.add_u64(static_cast<uint64_t>(image.channels));
  h.add_u64(static_cast<uint64_t>(image.height));
  h.add_u64(static_cast<uint64_t>(image.width));
  h.add_u64(invert ? 1 : 0);
  char name[96];
  std::snprintf(name, sizeof(name), "%s-%lldx%lldx%lld-%016llx.mfcache", layout_name(layout),
                static_cast<long long>(image.channels), static_cast<long long>(image.height),
                static_cast<long long>(image.width), static_cast<unsigned long long>(h.value()));
  return (fs::path(cache_dir) / name).string();
}

std::optional<CachedImages> read_cache(const std::string& path, uint64_t key, const ImageSpec& image,
                                       std::string& why) {
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    why = "absent";
    return std::nullopt;
  }
  const auto file_size = fs::file_size(path, ec);
  std::ifstream in(path, std::ios::binary);
  if (ec || !in) {
    why = "damaged: cannot open";
    return std::nullopt;
  }
  Header h{};
  if (!in.read(reinterpret_cast<char*>(&h), sizeof(h)) || std::memcmp(h.magic, kMagic, 8) != 0) {
    why = "damaged: not a metafew cache file (bad magic)";
    return std::nullopt;
  }
  if (h.version != kVersion) {
    why = "stale: format version " + std::to_string(h.version) + ", expected " + std::to_string(kVersion);
    return std::nullopt;
  }
  if (h.key != key) {
    why = "stale: the source listing or preprocessing changed";
    return std::nullopt;
  }
  if (h.channels != image.channels || h.height != image.height || h.width != image.width) {
    why = "stale: image spec differs";
    return std::nullopt;
  }
  if (h.meta_bytes > file_size || h.pixel_bytes > file_size ||
      sizeof(Header) + h.meta_bytes + h.pixel_bytes != file_size) {
    why = "damaged: size " + std::to_string(file_size) + " bytes does not match the header";
    return std::nullopt;
  }
  std::vector<uint8_t> meta(h.meta_bytes);
  CachedImages out;
  out.pixels.resize(h.pixel_bytes);
  if (!in.read(reinterpret_cast<char*>(meta.data()), static_cast<std::streamsize>(meta.size())) ||
      !in.read(reinterpret_cast<char*>(out.pixels.data()), static_cast<std::streamsize>(out.pixels.size()))) {
    why = "damaged: short read";
    return std::nullopt;
  }
  if (checksum(h, meta, out.pixels.data(), out.pixels.size()) != h.checksum) {
    why = "damaged: checksum mismatch";
    return std::nullopt;
  }
  // The checksum matched, but a file written by a buggy build could still be inconsistent: check the table.
  size_t pos = 0;
  uint64_t n = 0;
  const uint64_t per_image = static_cast<uint64_t>(image.pixels());
  const uint64_t images = h.pixel_bytes / per_image;
  bool ok = get(meta, pos, n) && n <= meta.size() && h.pixel_bytes % per_image == 0;
  uint64_t next = 0;
  for (uint64_t i = 0; ok && i < n; ++i) {
    uint32_t len = 0;
    uint64_t first = 0, count = 0;
    ok = get(meta, pos, len) && meta.size() - pos >= len;
    if (!ok) break;
    ClassEntry c;
    c.name.assign(reinterpret_cast<const char*>(meta.data() + pos), len);
    pos += len;
    ok = get(meta, pos, first) && get(meta, pos, count) && first == next && count > 0 &&
         count <= images - first;
    c.first_image = static_cast<int64_t>(first);
    c.image_count = static_cast<int64_t>(count);
    next = first + count;
    out.classes.push_back(std::move(c));
  }
  if (!ok || pos != meta.size() || next != images) {
    why = "damaged: inconsistent class table";
    return std::nullopt;
  }
  why = "hit";
  return out;
}

int64_t write_cache(const std::string& path, uint64_t key, const ImageSpec& image,
                    const std::vector<ClassEntry>& classes, const std::vector<uint8_t>& pixels) {
  const fs::path target(path);
  std::error_code ec;
  if (target.has_parent_path()) fs::create_directories(target.parent_path(), ec);
  MF_CHECK(!ec, "data cache: cannot create folder '", target.parent_path().string(), "': ", ec.message());
  std::vector<uint8_t> meta;
  put<uint64_t>(meta, classes.size());
  for (const ClassEntry& c : classes) {
    put<uint32_t>(meta, static_cast<uint32_t>(c.name.size()));
    meta.insert(meta.end(), c.name.begin(), c.name.end());
    put<uint64_t>(meta, static_cast<uint64_t>(c.first_image));
    put<uint64_t>(meta, static_cast<uint64_t>(c.image_count));
  }
  Header h{};
  std::memcpy(h.magic, kMagic, 8);
  h.version = kVersion;
  h.key = key;
  h.meta_bytes = meta.size();
  h.pixel_bytes = pixels.size();
  h.channels = static_cast<uint32_t>(image.channels);
  h.height = static_cast<uint32_t>(image.height);
  h.width = static_cast<uint32_t>(image.width);
  h.checksum = checksum(h, meta, pixels.data(), pixels.size());

  const std::string tmp = path + ".tmp." + std::to_string(static_cast<long long>(::getpid()));
  bool ok = false;
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (out) {
      out.write(reinterpret_cast<const char*>(&h), sizeof(h));
      out.write(reinterpret_cast<const char*>(meta.data()), static_cast<std::streamsize>(meta.size()));
      out.write(reinterpret_cast<const char*>(pixels.data()), static_cast<std::streamsize>(pixels.size()));
      out.flush();
      ok = out.good();
    }
  }
  if (ok) {
    fs::rename(tmp, target, ec);
    ok = !ec;
  }
  if (!ok) {
    fs::remove(tmp, ec);
    MF_CHECK(false, "data cache: cannot write '", path, "' (disk full or folder not writable?)");
  }
  return static_cast<int64_t>(sizeof(Header) + meta.size() + pixels.size());
}

}  // namespace metafew::data::detail
