// libFuzzer target: the image decoders (PNG with its chunk CRCs, JPEG, BMP, PGM/PPM through stb_image) and
// the resize that follows, at 1 or 3 channels (the first input byte chooses).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "data/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const int64_t channels = (data[0] & 1) ? 3 : 1;
  try {
    const metafew::data::DecodedImage img = metafew::data::decode_image(data + 1, size - 1, channels, "fuzz");
    const metafew::data::ImageSpec spec{channels, 28, 28};
    std::vector<uint8_t> out(static_cast<size_t>(spec.pixels()));
    metafew::data::preprocess_image(img, spec, (data[0] & 2) != 0, out.data());
  } catch (const metafew::Error&) {
  }
  return 0;
}
