#pragma once
// JPEG decoding through libjpeg-turbo (Note [JPEG through libjpeg-turbo] in jpeg.cpp). Internal to data/;
// decode_image calls it for files that start with a JPEG SOI marker.
#include <cstddef>
#include <cstdint>
#include <string>

#include "data/image.h"

namespace metafew::data::detail {

bool is_jpeg(const uint8_t* bytes, size_t size);
// Decodes to `channels` (1: grayscale, 3: RGB) 8-bit samples, rows top to bottom. Throws naming `name` and
// libjpeg's reason for a damaged or unsupported file (a warning such as a truncated scan counts as damage).
DecodedImage decode_jpeg(const uint8_t* bytes, size_t size, int64_t channels, const std::string& name);

}  // namespace metafew::data::detail
