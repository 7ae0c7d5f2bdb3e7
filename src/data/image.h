#pragma once
// Image decoding and resizing for data/: files are decoded through stb_image (PNG, BMP, PGM/PPM) and
// libjpeg-turbo (JPEG), converted to the channel count the model needs, centre-cropped to the model's aspect
// ratio, resized with an area-averaging filter and quantised to 8 bits. Everything above this file sees images as C*H*W planes of uint8 (stored) or f32 in [0, 1] (served).
#include <cstdint>
#include <string>
#include <vector>

namespace metafew::data {

// The shape every image of a dataset is brought to (NCHW without the N).
struct ImageSpec {
  int64_t channels = 1, height = 28, width = 28;
  int64_t pixels() const { return channels * height * width; }
  bool operator==(const ImageSpec&) const = default;
};

// Throws (usage) unless channels is 1 or 3 and both sides are in [1, 4096]; `who` names the caller.
void check_image_spec(const ImageSpec& spec, const char* who);

// The lower-case extension with its dot (".webp"), "" when the name has none or only a leading dot.
std::string file_extension(const std::string& filename);
// True when the file name ends in an extension this reader decodes (case-insensitive): .png .jpg .jpeg .bmp
// .pgm .ppm. Hidden files (leading '.') are never images.
bool has_image_extension(const std::string& filename);

// An image as decoded: interleaved (HWC) 8-bit samples.
struct DecodedImage {
  int64_t width = 0, height = 0, channels = 0;
  int64_t source_channels = 0;  // what the file holds: 1 (grayscale, with or without alpha) or 3 (colour)
  std::vector<uint8_t> hwc;
};

// Decodes an encoded file held in memory into `channels` (1: luminance, 3: RGB) channels.
// requires: channels is 1 or 3.  ensures: width, height > 0. Throws naming `name` and the decoder's reason on
// failure.
DecodedImage decode_image(const uint8_t* bytes, size_t size, int64_t channels, const std::string& name);
// Reads and decodes a file; throws naming the path when it cannot be read or decoded.
DecodedImage decode_image_file(const std::string& path, int64_t channels);

// Area-averaging resize of one plane (Note [Area resize]). src is sh*sw floats, dst is dh*dw floats.
void resize_area(const float* src, int64_t sw, int64_t sh, float* dst, int64_t dw, int64_t dh);

// The largest centred rectangle of a width x height image with the target's aspect ratio (the whole image when
// the aspects already match): the shorter side relative to the target is kept, the longer one cropped evenly
// on both sides (rounding to whole pixels; an odd remainder leaves the extra pixel on the right or bottom).
struct CropRect {
  int64_t x = 0, y = 0, width = 0, height = 0;
};
CropRect centre_crop(int64_t width, int64_t height, int64_t target_width, int64_t target_height);

// Decoded HWC image -> spec.channels planes of spec.height x spec.width: centre-cropped to the spec's aspect
// ratio (centre_crop; nothing is cut from an image of the same shape, such as Omniglot's 105x105 to 28x28),
// resized by area averaging, optionally inverted (v -> 1 - v, for dark-on-white drawings such as Omniglot),
// quantised to uint8 (round-to-nearest of v * 255). `out` receives spec.pixels() bytes, CHW.
void preprocess_image(const DecodedImage& img, const ImageSpec& spec, bool invert, uint8_t* out);

}  // namespace metafew::data
