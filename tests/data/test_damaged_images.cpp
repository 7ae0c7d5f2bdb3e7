// Damaged images are refused with a message, never decoded into wrong pixels or past a buffer:
// Note [PNG chunk checksums] in src/data/image.cpp and Note [JPEG through libjpeg-turbo] in src/data/jpeg.cpp.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "core/error.h"
#include "data/data_support.h"
#include "data/image.h"

namespace metafew::testing {
namespace {

std::vector<uint8_t> read_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST_CASE("data: every single-bit flip inside a PNG's chunks is refused, naming the chunk") {
  TempDir tmp("png-crc");
  write_test_image(tmp / "a.png", 20, 20, 3, 1);
  const std::vector<uint8_t> good = read_bytes(tmp / "a.png");
  const data::DecodedImage ref = data::decode_image(good.data(), good.size(), 1, "a.png");
  REQUIRE(ref.hwc.size() == 400);
  // Every bit after the 8-byte signature (chunk lengths, types, data, CRCs): either refused with a message
  // naming the file, or (never, with the CRCs checked) decoded into other pixels.
  int refused = 0, decoded_wrong = 0;
  for (size_t byte = 8; byte < good.size(); ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      std::vector<uint8_t> bad = good;
      bad[byte] ^= static_cast<uint8_t>(1u << bit);
      try {
        const data::DecodedImage img = data::decode_image(bad.data(), bad.size(), 1, "a.png");
        decoded_wrong += img.hwc != ref.hwc;
      } catch (const Error& e) {
        ++refused;
        CHECK(std::string(e.what()).find("'a.png'") != std::string::npos);
      }
    }
  }
  CHECK(decoded_wrong == 0);
  CHECK(refused > 0);
  // A flip inside the IDAT data is named as a CRC failure of that chunk.
  std::vector<uint8_t> bad = good;
  size_t idat = 8;
  while (std::string(reinterpret_cast<const char*>(&bad[idat + 4]), 4) != "IDAT")
    idat += 12 + ((size_t{bad[idat]} << 24) | (size_t{bad[idat + 1]} << 16) | (size_t{bad[idat + 2]} << 8) | bad[idat + 3]);
  bad[idat + 8 + 3] ^= 0x04;
  CHECK_THROWS_WITH_AS(data::decode_image(bad.data(), bad.size(), 1, "a.png"),
                       doctest::Contains("PNG chunk IDAT at byte"), Error);
  // A chunk length past the end of the file.
  bad = good;
  bad[idat] = 0x7F;
  CHECK_THROWS_WITH_AS(data::decode_image(bad.data(), bad.size(), 1, "a.png"), doctest::Contains("past the end"),
                       Error);
}

TEST_CASE("data: a JPEG Huffman table of more than 256 symbols is refused") {
  // The input tests/fuzz/fuzz_image found when stb_image decoded JPEGs (it wrote such a table's symbols past
  // its 256 slots); libjpeg-turbo refuses it (Note [JPEG through libjpeg-turbo]).
  const std::vector<uint8_t> good = read_bytes(std::filesystem::path(METAFEW_SOURCE_DIR) / "tests/fuzz/corpus/image/jpg_rgb");
  REQUIRE(good.size() > 100);
  const std::vector<uint8_t> jpeg(good.begin() + 1, good.end());  // the corpus's first byte picks the channels
  CHECK(data::decode_image(jpeg.data(), jpeg.size(), 3, "ok.jpg").hwc.size() == 6 * 5 * 3);
  size_t dht = 2;
  while (!(jpeg[dht] == 0xFF && jpeg[dht + 1] == 0xC4)) dht += 2 + ((size_t{jpeg[dht + 2]} << 8) | jpeg[dht + 3]);
  std::vector<uint8_t> bad = jpeg;
  for (size_t i = 0; i < 16; ++i) bad[dht + 5 + i] = 0xFF;  // 16 x 255 symbols declared
  CHECK_THROWS_WITH_AS(data::decode_image(bad.data(), bad.size(), 3, "bad.jpg"),
                       doctest::Contains("'bad.jpg' is not a readable JPEG: Bogus Huffman table definition"), Error);
  // The fuzzer's own input: the table's counts start inside the segment and run past its end.
  const std::vector<uint8_t> found = read_bytes(std::filesystem::path(METAFEW_SOURCE_DIR) /
                                                "tests/fuzz/corpus/image/regression_jpeg_dht_across_segment");
  CHECK_THROWS_WITH_AS(data::decode_image(found.data() + 1, found.size() - 1, 3, "found.jpg"),
                       doctest::Contains("'found.jpg' is not a readable JPEG"), Error);
}

TEST_CASE("data: JPEGs decode through libjpeg-turbo; truncated, CMYK-free damage and the fuzzer's inputs are refused") {
  const std::filesystem::path corpus = std::filesystem::path(METAFEW_SOURCE_DIR) / "tests/fuzz/corpus/image";
  for (const char* file : {"jpg_rgb", "jpg_gray"}) {
    CAPTURE(file);
    const std::vector<uint8_t> f = read_bytes(corpus / file);
    const std::vector<uint8_t> jpeg(f.begin() + 1, f.end());  // the corpus's first byte picks the channels
    for (int64_t channels : {1, 3}) {
      const data::DecodedImage img = data::decode_image(jpeg.data(), jpeg.size(), channels, file);
      CHECK(img.channels == channels);
      CHECK(img.hwc.size() == static_cast<size_t>(img.width * img.height * channels));
    }
    // Cut anywhere inside the scan: libjpeg's "premature end" warning is damage, not a grey image.
    for (size_t keep : {jpeg.size() - 3, jpeg.size() * 3 / 4, size_t{200}}) {
      CAPTURE(keep);
      if (keep >= jpeg.size()) continue;
      CHECK_THROWS_WITH_AS(data::decode_image(jpeg.data(), keep, 3, "cut.jpg"),
                           doctest::Contains("'cut.jpg' is not a readable JPEG"), Error);
    }
  }
  // A header claiming far more pixels than the file's bytes can encode is refused before anything that size is
  // allocated (SOF0: FF C0, length, precision, height, width).
  {
    const std::vector<uint8_t> f = read_bytes(corpus / "jpg_rgb");
    std::vector<uint8_t> big(f.begin() + 1, f.end());
    size_t sof = 2;
    while (!(big[sof] == 0xFF && big[sof + 1] == 0xC0)) sof += 2 + ((size_t{big[sof + 2]} << 8) | big[sof + 3]);
    for (size_t at : {sof + 5, sof + 7}) big[at] = 0x3E, big[at + 1] = 0x80;  // 16000 x 16000
    CHECK_THROWS_WITH_AS(data::decode_image(big.data(), big.size(), 3, "big.jpg"),
                         doctest::Contains("'big.jpg' is not a readable JPEG: its header claims 16000x16000 pixels, "
                                           "more than its"),
                         Error);
  }
  // The input that stopped `make fuzz` while stb decoded JPEGs (a shift past an int's width in stb 2.27).
  const std::vector<uint8_t> shift = read_bytes(corpus / "regression_jpeg_grow_buffer_shift");
  CHECK_THROWS_WITH_AS(data::decode_image(shift.data() + 1, shift.size() - 1, 3, "shift.jpg"),
                       doctest::Contains("'shift.jpg' is not a readable JPEG"), Error);
}

TEST_CASE("data: a PGM header number too long for an int is refused before stb reads it") {
  const std::string ok = "P5\n2 2\n255\n" + std::string("\x01\x02\x03\x04", 4);
  CHECK(data::decode_image(reinterpret_cast<const uint8_t*>(ok.data()), ok.size(), 1, "ok.pgm").hwc.size() == 4);
  // Found by tests/fuzz/fuzz_image: stb 2.27 multiplies the digits into an int until it overflows.
  const std::string bad = "P5\n6 # comment\n55666666666666 255\n" + std::string(8, '\x10');
  CHECK_THROWS_WITH_AS(data::decode_image(reinterpret_cast<const uint8_t*>(bad.data()), bad.size(), 1, "bad.pgm"),
                       doctest::Contains("'bad.pgm' is damaged: its PGM/PPM height has 14 digits"), Error);
}

TEST_CASE("data: a header claiming more pixels than its file can encode is refused before decoding") {
  // Note [Claimed image size]. fuzz_image's timeout: a 64-byte BMP claiming 8198 x 13055 pixels (its first
  // byte is the harness's channel choice).
  const std::vector<uint8_t> bomb = read_bytes(std::filesystem::path(METAFEW_SOURCE_DIR) /
                                               "tests/fuzz/corpus/image/regression_bmp_claimed_size");
  REQUIRE(bomb.size() == 65);
  CHECK_THROWS_WITH_AS(data::decode_image(bomb.data() + 1, bomb.size() - 1, 3, "bomb.bmp"),
                       doctest::Contains("'bomb.bmp' is damaged: its header claims 8198x13055 pixels, more than its "
                                         "64 bytes can encode"),
                       Error);
  // A PGM's binary samples take a byte each: 2x2 pixels in 3 bytes of data cannot be.
  const std::string short_pgm = "P5\n40 40\n255\n" + std::string(3, '\x07');
  CHECK_THROWS_WITH_AS(
      data::decode_image(reinterpret_cast<const uint8_t*>(short_pgm.data()), short_pgm.size(), 1, "short.pgm"),
      doctest::Contains("claims 40x40 pixels, more than its 16 bytes can encode"), Error);
  // The committed corpus images, whole, still decode.
  for (const char* ok : {"bmp_rgb", "png_gray", "png_rgb", "pgm_gray", "ppm_rgb"}) {
    CAPTURE(ok);
    const std::vector<uint8_t> b =
        read_bytes(std::filesystem::path(METAFEW_SOURCE_DIR) / "tests/fuzz/corpus/image" / ok);
    REQUIRE(b.size() > 1);
    CHECK_NOTHROW(data::decode_image(b.data() + 1, b.size() - 1, 3, ok));
  }
}

}  // namespace
}  // namespace metafew::testing
