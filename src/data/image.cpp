#include "data/image.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <fstream>
#include <iterator>

#include "core/error.h"
#include "data/jpeg.h"

// The one translation unit that compiles stb_image. Only the decoders the reader accepts are built; JPEG is
// libjpeg-turbo's (Note [JPEG through libjpeg-turbo] in jpeg.cpp).
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#define STBI_ONLY_BMP
#define STBI_ONLY_PNM
#define STBI_NO_HDR
#define STBI_NO_LINEAR
// A header may claim any size; stb would allocate width x height x channels before finding the data short.
// 16384 a side bounds one decoded image at 768 MB (RGB), far above any dataset's images.
#define STBI_MAX_DIMENSIONS 16384
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wpedantic"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#endif
#include <stb/stb_image.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace metafew::data {

void check_image_spec(const ImageSpec& spec, const char* who) {
  MF_USAGE_CHECK(spec.channels == 1 || spec.channels == 3, who, ": image channels must be 1 or 3, got ",
                 spec.channels);
  MF_USAGE_CHECK(spec.height >= 1 && spec.height <= 4096 && spec.width >= 1 && spec.width <= 4096, who,
                 ": image size must be in [1, 4096] on each side, got ", spec.height, "x", spec.width);
}

std::string file_extension(const std::string& filename) {
  const size_t dot = filename.rfind('.');
  if (dot == std::string::npos || dot == 0) return "";
  std::string ext = filename.substr(dot);
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext;
}

bool has_image_extension(const std::string& filename) {
  if (filename.empty() || filename[0] == '.') return false;
  const std::string ext = file_extension(filename);
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp" || ext == ".pgm" || ext == ".ppm";
}

// Note [PNG chunk checksums]: stb_image skips the CRC-32 that ends every PNG chunk, so a flipped bit inside
// the compressed pixels can decode without error into a wrong image (4 of 30 single-bit flips did, in the
// hostile-input probe). Every chunk's CRC (over its type and data, polynomial 0xEDB88320 as in the PNG
// specification, section 5.5) is checked before decoding; the cost is one table lookup per byte of the file.
namespace {

uint32_t crc32_update(uint32_t crc, const uint8_t* p, size_t n) {
  static const auto table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
  return crc;
}

uint32_t read_be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

bool is_png(const uint8_t* bytes, size_t size) {
  static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  return size >= 8 && std::equal(sig, sig + 8, bytes);
}

// Walks the chunks after the signature up to IEND; throws naming the chunk whose CRC does not match its
// bytes, or a chunk that runs past the end of the file.
void check_png_chunks(const uint8_t* bytes, size_t size, const std::string& name) {
  size_t at = 8;
  while (at + 12 <= size) {
    const uint32_t length = read_be32(bytes + at);
    const std::string type(reinterpret_cast<const char*>(bytes + at + 4), 4);
    MF_CHECK(length <= size - at - 12, "decode_image: '", name, "' is damaged: PNG chunk ", type, " at byte ", at,
             " claims ", length, " bytes, past the end of the file (", size, " bytes)");
    const uint32_t stored = read_be32(bytes + at + 8 + length);
    const uint32_t computed = crc32_update(0xFFFFFFFFu, bytes + at + 4, size_t{length} + 4) ^ 0xFFFFFFFFu;
    MF_CHECK(stored == computed, "decode_image: '", name, "' is damaged: PNG chunk ", type, " at byte ", at,
             " fails its CRC-32 check (stored ", stored, ", computed ", computed, ")");
    if (type == "IEND") return;
    at += size_t{length} + 12;
  }
  // No IEND: stb decides whether the image data are complete (it reports a truncated file itself).
}

// stb_image 2.27 reads a PGM/PPM header's numbers into an int without an overflow check (signed overflow,
// found by tests/fuzz/fuzz_image under UBSan; stb 2.28 added the check). The header (width, height, maxval,
// with whitespace and # comments between) is read here first; a number of more than 9 digits is refused.
bool is_pnm(const uint8_t* bytes, size_t size) {
  return size >= 2 && bytes[0] == 'P' && (bytes[1] == '5' || bytes[1] == '6');
}

void check_pnm_header(const uint8_t* bytes, size_t size, const std::string& name) {
  size_t at = 2;
  for (const char* field : {"width", "height", "maximum value"}) {
    for (;;) {  // whitespace and comments, as stb skips them
      while (at < size && std::isspace(bytes[at])) ++at;
      if (at < size && bytes[at] == '#') {
        while (at < size && bytes[at] != '\n' && bytes[at] != '\r') ++at;
        continue;
      }
      break;
    }
    size_t digits = 0;
    int64_t value = 0;
    while (at < size && std::isdigit(bytes[at])) {
      if (digits < 18) value = value * 10 + (bytes[at] - '0');
      ++at, ++digits;
    }
    MF_CHECK(digits <= 9, "decode_image: '", name, "' is damaged: its PGM/PPM ", field, " has ", digits,
             " digits");
    // 16-bit samples: stb 2.27 converts them to 8 bits past the end of its buffer (an ASan report of
    // fuzz_image), so they are refused until Debian's stb has the fix.
    if (std::string(field) == "maximum value")
      MF_CHECK(value <= 255, "decode_image: '", name, "': 16-bit PGM/PPM (maximum value ", value,
               ") is not supported; convert it to 8 bits or PNG");
  }
}

// Note [Claimed image size]: stb allocates and fills width x height pixels from the header before it finds
// the data short, so a 64-byte BMP claiming 8198 x 13055 pixels cost 321 MB and 35 s under the sanitizers (a
// timeout of fuzz_image). As for JPEG (Note [JPEG through libjpeg-turbo]), a header claiming more pixels than
// its file can encode is damaged and refused before decoding: stb's BMP reader takes uncompressed data only,
// at least 1 bit a pixel (8 pixels a byte); binary PGM/PPM at least a byte a pixel; PNG's deflate expands a
// byte to at most 1032 (its longest match, 258 bytes, in 2 bits) and a raw byte holds at most 8 pixels (1-bit
// grey). And the decoded pixels are bounded at 512 MB, as libjpeg's.
void check_claimed_size(const uint8_t* bytes, size_t size, int w, int h, int64_t channels, const std::string& name) {
  const double pixels = static_cast<double>(w) * static_cast<double>(h);
  const double per_byte = is_png(bytes, size) ? 8.0 * 1032.0 : is_pnm(bytes, size) ? 1.0 : 8.0;
  MF_CHECK(pixels <= per_byte * static_cast<double>(size), "decode_image: '", name, "' is damaged: its header claims ",
           w, "x", h, " pixels, more than its ", size, " bytes can encode");
  MF_CHECK(pixels * static_cast<double>(channels) <= static_cast<double>(size_t{512} << 20), "decode_image: '", name,
           "' is too large: ", w, "x", h, " pixels at ", channels, " channels exceed 512 MB");
}

}  // namespace

DecodedImage decode_image(const uint8_t* bytes, size_t size, int64_t channels, const std::string& name) {
  MF_CHECK(channels == 1 || channels == 3, "decode_image: channels must be 1 or 3, got ", channels);
  MF_CHECK(size > 0, "decode_image: '", name, "' is empty (0 bytes); expected an encoded image");
  MF_CHECK(size <= static_cast<size_t>(INT32_MAX), "decode_image: '", name, "' is too large (", size,
           " bytes)");
  if (is_png(bytes, size)) check_png_chunks(bytes, size, name);
  if (detail::is_jpeg(bytes, size)) return detail::decode_jpeg(bytes, size, channels, name);
  if (is_pnm(bytes, size)) check_pnm_header(bytes, size, name);
  int w = 0, h = 0, n = 0;
  if (stbi_info_from_memory(bytes, static_cast<int>(size), &w, &h, &n)) check_claimed_size(bytes, size, w, h, channels, name);
  stbi_uc* px = stbi_load_from_memory(bytes, static_cast<int>(size), &w, &h, &n, static_cast<int>(channels));
  MF_CHECK(px != nullptr, "decode_image: cannot decode '", name, "' (", stbi_failure_reason(),
           "); expected a PNG, JPEG, BMP or PGM/PPM image");
  DecodedImage img;
  img.width = w;
  img.height = h;
  img.channels = channels;
  img.source_channels = n <= 2 ? 1 : 3;
  img.hwc.assign(px, px + static_cast<size_t>(w) * static_cast<size_t>(h) * static_cast<size_t>(channels));
  stbi_image_free(px);
  return img;
}

DecodedImage decode_image_file(const std::string& path, int64_t channels) {
  std::ifstream in(path, std::ios::binary);
  MF_CHECK(in.good(), "decode_image: cannot open '", path, "' for reading");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  MF_CHECK(!in.bad(), "decode_image: read error on '", path, "'");
  return decode_image(bytes.data(), bytes.size(), channels, path);
}

// Note [Area resize]
// Each output pixel is the mean of the source area it covers: output column i covers source columns
// [i * s, (i + 1) * s) with s = sw / dw, and a source column contributes the length of its overlap with that
// interval. The filter is separable, so rows then columns are weighted by one-dimensional tables. For 105 ->
// 28 (s = 3.75) every output pixel averages a 3.75 x 3.75 patch, the same as PIL's BOX / OpenCV's INTER_AREA
// downscale; for upscaling the same rule reduces to nearest-neighbour with blended seams.
namespace {

struct Tap {
  int64_t src;
  float w;
};

std::vector<std::vector<Tap>> area_taps(int64_t src, int64_t dst) {
  std::vector<std::vector<Tap>> taps(static_cast<size_t>(dst));
  const double s = static_cast<double>(src) / static_cast<double>(dst);
  for (int64_t i = 0; i < dst; ++i) {
    const double lo = static_cast<double>(i) * s, hi = static_cast<double>(i + 1) * s;
    const auto first = static_cast<int64_t>(std::floor(lo));
    const int64_t last = std::min<int64_t>(src - 1, static_cast<int64_t>(std::ceil(hi)) - 1);
    for (int64_t j = first; j <= last; ++j) {
      const double ov =
          std::min<double>(static_cast<double>(j + 1), hi) - std::max<double>(static_cast<double>(j), lo);
      if (ov > 1e-12) taps[static_cast<size_t>(i)].push_back({j, static_cast<float>(ov / s)});
    }
  }
  return taps;
}

}  // namespace

void resize_area(const float* src, int64_t sw, int64_t sh, float* dst, int64_t dw, int64_t dh) {
  MF_CHECK(sw > 0 && sh > 0 && dw > 0 && dh > 0, "resize_area: sizes must be positive, got ", sw, "x", sh,
           " -> ", dw, "x", dh);
  if (sw == dw && sh == dh) {
    std::copy(src, src + sw * sh, dst);
    return;
  }
  const auto tx = area_taps(sw, dw), ty = area_taps(sh, dh);
  std::vector<float> rows(static_cast<size_t>(sh * dw));
  for (int64_t y = 0; y < sh; ++y)
    for (int64_t x = 0; x < dw; ++x) {
      float acc = 0;
      for (const Tap& t : tx[static_cast<size_t>(x)]) acc += t.w * src[y * sw + t.src];
      rows[static_cast<size_t>(y * dw + x)] = acc;
    }
  for (int64_t y = 0; y < dh; ++y) {
    float* out = dst + y * dw;
    std::fill(out, out + dw, 0.0f);
    for (const Tap& t : ty[static_cast<size_t>(y)]) {
      const float* r = rows.data() + t.src * dw;
      for (int64_t x = 0; x < dw; ++x) out[x] += t.w * r[x];
    }
  }
}

CropRect centre_crop(int64_t width, int64_t height, int64_t target_width, int64_t target_height) {
  MF_CHECK(width > 0 && height > 0 && target_width > 0 && target_height > 0, "centre_crop: sizes must be positive, got ",
           width, "x", height, " to ", target_width, "x", target_height);
  CropRect r{0, 0, width, height};
  // Compare width / height with target_width / target_height without rounding.
  if (width * target_height > height * target_width) {
    r.width = std::max<int64_t>(1, std::llround(static_cast<double>(height) * static_cast<double>(target_width) /
                                                static_cast<double>(target_height)));
    r.x = (width - r.width) / 2;
  } else if (width * target_height < height * target_width) {
    r.height = std::max<int64_t>(1, std::llround(static_cast<double>(width) * static_cast<double>(target_height) /
                                                 static_cast<double>(target_width)));
    r.y = (height - r.height) / 2;
  }
  return r;
}

void preprocess_image(const DecodedImage& img, const ImageSpec& spec, bool invert, uint8_t* out) {
  MF_CHECK(img.channels == spec.channels, "preprocess_image: image has ", img.channels,
           " channels, the spec asks for ", spec.channels);
  const int64_t c = img.channels;
  const CropRect crop = centre_crop(img.width, img.height, spec.width, spec.height);
  const int64_t sw = crop.width, sh = crop.height;
  std::vector<float> plane(static_cast<size_t>(sw * sh)),
      resized(static_cast<size_t>(spec.height * spec.width));
  for (int64_t ch = 0; ch < c; ++ch) {
    for (int64_t y = 0; y < sh; ++y)
      for (int64_t x = 0; x < sw; ++x) {
        const size_t at = static_cast<size_t>(((crop.y + y) * img.width + crop.x + x) * c + ch);
        const float v = static_cast<float>(img.hwc[at]) * (1.0f / 255.0f);
        plane[static_cast<size_t>(y * sw + x)] = invert ? 1.0f - v : v;
      }
    resize_area(plane.data(), sw, sh, resized.data(), spec.width, spec.height);
    uint8_t* o = out + ch * spec.height * spec.width;
    for (size_t i = 0; i < resized.size(); ++i) {
      const float v = std::clamp(resized[i], 0.0f, 1.0f);
      o[i] = static_cast<uint8_t>(std::lround(v * 255.0f));
    }
  }
}

}  // namespace metafew::data
