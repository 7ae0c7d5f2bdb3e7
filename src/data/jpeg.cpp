#include "data/jpeg.h"

#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <cstring>

// jpeglib.h needs FILE and size_t declared first.
#include <jpeglib.h>

#include "core/error.h"

// Note [JPEG through libjpeg-turbo]: JPEGs were decoded by stb_image 2.27, whose JPEG reader the fuzzer kept
// finding faults in (a Huffman table overrun, then a shift past the width of an int while growing its bit
// buffer: tests/fuzz/README.md); libjpeg-turbo is the reference decoder, fuzzed continuously upstream. Its
// fatal errors leave through error_exit, which must not return: it jumps back to decode_with_libjpeg, a
// frame with no C++ object alive (a longjmp over a destructor is undefined), which then throws. Its warnings
// (a truncated scan, corrupt entropy data) would otherwise yield an image with grey or repeated blocks: they
// count as damage here, as a bad PNG CRC does. Width and height are bounded as STBI_MAX_DIMENSIONS bounds the
// other formats (16384 a side), and libjpeg's memory and the decoded pixels to 512 MB each, before anything
// that size is allocated. CMYK and YCCK files are refused by
// name; libjpeg converts YCbCr and grayscale to the channel count asked for.

namespace metafew::data::detail {

namespace {

constexpr unsigned kMaxSide = 16384;
// libjpeg's own working memory (a progressive file keeps every coefficient of the image) and the decoded
// pixels are each bounded: a 16384 x 16384 header on a few hundred bytes would otherwise ask for gigabytes
// before the data run out. 512 MB holds a 100-megapixel colour photograph.
constexpr size_t kMaxBytes = size_t{512} << 20;

struct JpegOutcome {
  jpeg_error_mgr mgr;        // first: libjpeg hands back a pointer to it
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX + 64];
  unsigned char* pixels;     // malloc'ed; freed by the caller on failure
  unsigned width, height;
  int components;
};

extern "C" void on_jpeg_error(j_common_ptr c) {
  auto* o = reinterpret_cast<JpegOutcome*>(c->err);
  (*c->err->format_message)(c, o->message);
  std::longjmp(o->jump, 1);
}

extern "C" void on_jpeg_message(j_common_ptr c, int level) {
  if (level >= 0) return;  // trace messages
  auto* o = reinterpret_cast<JpegOutcome*>(c->err);
  (*c->err->format_message)(c, o->message);  // a warning: the data are damaged
  std::longjmp(o->jump, 1);
}

// All libjpeg calls, in one frame with no C++ objects. Returns true with o->pixels, width and height set, or
// false with o->message set.
bool decode_with_libjpeg(const uint8_t* bytes, size_t size, int channels, JpegOutcome* o) {
  jpeg_decompress_struct d;
  d.err = jpeg_std_error(&o->mgr);
  o->mgr.error_exit = on_jpeg_error;
  o->mgr.emit_message = on_jpeg_message;
  o->pixels = nullptr;
  jpeg_create_decompress(&d);
  d.mem->max_memory_to_use = static_cast<long>(kMaxBytes);
  if (setjmp(o->jump)) {
    jpeg_destroy_decompress(&d);
    return false;
  }
  jpeg_mem_src(&d, bytes, static_cast<unsigned long>(size));
  jpeg_read_header(&d, TRUE);
  if (d.jpeg_color_space == JCS_CMYK || d.jpeg_color_space == JCS_YCCK) {
    std::snprintf(o->message, sizeof o->message, "CMYK JPEG is not supported; convert it to RGB");
    jpeg_destroy_decompress(&d);
    return false;
  }
  if (d.image_width == 0 || d.image_height == 0 || d.image_width > kMaxSide || d.image_height > kMaxSide) {
    std::snprintf(o->message, sizeof o->message, "its size %ux%u is outside 1 to %u a side", d.image_width,
                  d.image_height, kMaxSide);
    jpeg_destroy_decompress(&d);
    return false;
  }
  o->components = d.num_components;
  // Every 8x8 block of the first component costs at least one bit (its DC difference has no run length, in
  // any scan order), so a file of `size` bytes holds at most 8 size blocks, 512 size pixels; twice that is
  // allowed. A header claiming more is damaged, and is refused before megabytes are allocated for it.
  if (static_cast<double>(d.image_width) * d.image_height > 1024.0 * static_cast<double>(size)) {
    std::snprintf(o->message, sizeof o->message, "its header claims %ux%u pixels, more than its %zu bytes can encode",
                  d.image_width, d.image_height, size);
    jpeg_destroy_decompress(&d);
    return false;
  }
  d.out_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(&d);
  o->width = d.output_width;
  o->height = d.output_height;
  const size_t row = static_cast<size_t>(d.output_width) * static_cast<size_t>(channels);
  if (row * d.output_height > kMaxBytes) {
    std::snprintf(o->message, sizeof o->message, "its %ux%u pixels need more than %zu MB", d.output_width,
                  d.output_height, kMaxBytes >> 20);
    jpeg_destroy_decompress(&d);
    return false;
  }
  // The buffer grows with the rows decoded (doubling from 64 rows), so a damaged file that fails in its first
  // rows never costs its header's full size.
  size_t rows_held = 0;
  while (d.output_scanline < d.output_height) {
    if (d.output_scanline == rows_held) {
      const size_t want = rows_held == 0 ? 64 : 2 * rows_held;
      rows_held = want < d.output_height ? want : d.output_height;
      auto* grown = static_cast<unsigned char*>(std::realloc(o->pixels, row * rows_held));
      if (grown == nullptr) {
        std::snprintf(o->message, sizeof o->message, "out of memory for %ux%u pixels", d.output_width,
                      d.output_height);
        jpeg_destroy_decompress(&d);
        return false;
      }
      o->pixels = grown;
    }
    JSAMPROW line = o->pixels + row * d.output_scanline;
    jpeg_read_scanlines(&d, &line, 1);
  }
  jpeg_finish_decompress(&d);
  jpeg_destroy_decompress(&d);
  return true;
}

}  // namespace

bool is_jpeg(const uint8_t* bytes, size_t size) { return size >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8; }

DecodedImage decode_jpeg(const uint8_t* bytes, size_t size, int64_t channels, const std::string& name) {
  MF_CHECK(channels == 1 || channels == 3, "decode_image: channels must be 1 or 3, got ", channels);
  JpegOutcome o{};
  if (!decode_with_libjpeg(bytes, size, static_cast<int>(channels), &o)) {
    std::free(o.pixels);
    // libjpeg-turbo has no backing store: a coefficient buffer over max_memory_to_use fails by that name.
    if (std::strncmp(o.message, "Backing store", 13) == 0)
      std::snprintf(o.message, sizeof o.message, "decoding it needs more than %zu MB", kMaxBytes >> 20);
    throw Error(::metafew::detail::concat("decode_image: '", name, "' is not a readable JPEG: ", o.message));
  }
  DecodedImage img;
  img.width = o.width;
  img.height = o.height;
  img.channels = channels;
  img.source_channels = o.components == 1 ? 1 : 3;
  img.hwc.assign(o.pixels, o.pixels + static_cast<size_t>(o.width) * o.height * static_cast<size_t>(channels));
  std::free(o.pixels);
  return img;
}

}  // namespace metafew::data::detail
