// Checkpoint format: bit-exact round trips, the documented layout, and a refusal with its own message for
// every kind of bad file (empty, truncated at every length, any flipped byte, foreign, another version,
// inconsistent tables), plus the atomic replacement of an existing file.
#include <doctest/doctest.h>

#include "support/temp_dir.h"
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "io/checkpoint.h"

namespace metafew::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using tensor::DType;
using tensor::Tensor;
using Bytes = std::vector<unsigned char>;


Bytes read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Removes the old file first: truncating one in place makes ext4 flush it to disk (auto_da_alloc), which
// costs milliseconds per call in the loops below.
void write_bytes(const std::string& path, const Bytes& bytes) {
  std::error_code ec;
  fs::remove(path, ec);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

// The message load_checkpoint throws for `path`, or "" when it loads.
std::string load_error(const std::string& path) {
  try {
    (void)io::load_checkpoint(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// doctest's Contains matcher for a std::string.
doctest::Contains has(const std::string& part) {
  return doctest::Contains(part.c_str());
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}
bool starts_with(const std::string& s, const std::string& prefix) {
  return s.rfind(prefix, 0) == 0;
}

template <class T>
Tensor from_bits(const std::vector<T>& values, const tensor::Shape& shape) {
  Tensor t = Tensor::empty(shape, tensor::dtype_of<T>());
  if (!values.empty()) std::memcpy(t.raw_data(), values.data(), values.size() * sizeof(T));
  return t;
}

io::Checkpoint sample_checkpoint() {
  io::Checkpoint c;
  c.header = {{"algorithm", "maml"},
              {"iteration", 1234},
              {"model", {{"arch", "conv4"}, {"filters", 64}, {"input", {1, 28, 28}}}},
              {"classes", {"alpha", "βeta", "\u6f22\u5b57"}},
              {"rng", {{"key", std::numeric_limits<uint64_t>::max()}, {"counter", 7}}},
              {"lr", 0.1},
              {"min", std::numeric_limits<int64_t>::min()},
              {"second_order", true},
              {"note", nullptr}};
  const float f_nan = std::bit_cast<float>(0x7fc01234u);  // a NaN with a payload
  c.tensors.push_back(
      {"w0", from_bits<float>({1.5f, -0.0f, f_nan, std::numeric_limits<float>::infinity(),
                               std::numeric_limits<float>::denorm_min(), std::numeric_limits<float>::max()},
                              {2, 3})});
  c.tensors.push_back({"moments.m", from_bits<double>({0.1, -std::numeric_limits<double>::infinity(),
                                                       std::numeric_limits<double>::denorm_min()},
                                                      {3})});
  c.tensors.push_back({"labels", from_bits<int32_t>({std::numeric_limits<int32_t>::min(),
                                                     std::numeric_limits<int32_t>::max(), -1, 0},
                                                    {2, 2})});
  c.tensors.push_back({"scale", from_bits<float>({42.5f}, {})});
  c.tensors.push_back({"empty", Tensor::empty({0, 5}, DType::f32)});
  c.tensors.push_back({"odd", from_bits<double>({1, 2, 3, 4, 5, 6, 7}, {7, 1})});
  return c;
}

void check_same_tensors(const io::Checkpoint& a, const io::Checkpoint& b) {
  REQUIRE(a.tensors.size() == b.tensors.size());
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    const Tensor& x = a.tensors[i].tensor;
    const Tensor& y = b.tensors[i].tensor;
    INFO("tensor ", a.tensors[i].name);
    CHECK(a.tensors[i].name == b.tensors[i].name);
    CHECK(x.dtype() == y.dtype());
    CHECK(x.shape() == y.shape());
    REQUIRE(x.numel() == y.numel());
    const size_t bytes = static_cast<size_t>(x.numel()) * tensor::dtype_size(x.dtype());
    if (bytes > 0) CHECK(std::memcmp(x.raw_data(), y.raw_data(), bytes) == 0);
  }
}

uint64_t le64(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

void put_le(Bytes& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<unsigned char>(v >> (8 * i)));
}

uint64_t align64(uint64_t x) {
  return (x + 63) / 64 * 64;
}

// A file laid out by hand from Note [Checkpoint format], around any header text and data section.
Bytes craft(const std::string& header_text, const Bytes& data, uint32_t version = 1) {
  Bytes out = {'M', 'E', 'T', 'A', 'F', 'E', 'W', '\0'};
  put_le(out, version, 4);
  put_le(out, header_text.size(), 8);
  out.insert(out.end(), header_text.begin(), header_text.end());
  out.resize(align64(out.size()), 0);
  out.insert(out.end(), data.begin(), data.end());
  put_le(out, io::detail::checksum64(out.data(), out.size()), 8);
  return out;
}

Bytes craft(const json& doc, const Bytes& data) {
  return craft(doc.dump(), data);
}

// One f32 tensor "w" of shape [2, 3] in a 24-byte data section; tests edit the entry.
json one_tensor_doc() {
  return {{"header", {{"algorithm", "protonet"}}},
          {"tensors", {{{"name", "w"}, {"dtype", "f32"}, {"shape", {2, 3}}, {"offset", 0}, {"bytes", 24}}}},
          {"data_bytes", 24}};
}

}  // namespace

TEST_CASE("io: checkpoint round trip is bit-exact for f32, f64, i32, 0-d and empty tensors") {
  TempDir dir("metafew-io-ckpt");
  const std::string path = dir.file("model.ckpt");
  const io::Checkpoint saved = sample_checkpoint();
  io::save_checkpoint(path, saved);
  const io::Checkpoint loaded = io::load_checkpoint(path);
  check_same_tensors(saved, loaded);
  CHECK(loaded.source == path);
  CHECK(loaded.tensors[3].tensor.dim() == 0);
  CHECK(loaded.tensors[3].tensor.item() == 42.5);
  CHECK(loaded.tensors[4].tensor.numel() == 0);
  CHECK(loaded.tensors[4].tensor.shape() == tensor::Shape{0, 5});
  for (const auto& nt : loaded.tensors)
    if (nt.tensor.numel() > 0) CHECK(reinterpret_cast<uintptr_t>(nt.tensor.raw_data()) % 64 == 0);

  // A checkpoint with no tensors at all, and one with a null header.
  io::Checkpoint bare;
  io::save_checkpoint(path, bare);
  const io::Checkpoint bare_loaded = io::load_checkpoint(path);
  CHECK(bare_loaded.tensors.empty());
  CHECK(bare_loaded.header.is_null());
}

TEST_CASE("io: checkpoint header JSON round trip") {
  TempDir dir("metafew-io-ckpt");
  const std::string path = dir.file("h.ckpt");
  const io::Checkpoint saved = sample_checkpoint();
  io::save_checkpoint(path, saved);
  const json header = io::load_checkpoint(path).header;
  CHECK(header == saved.header);
  CHECK(header["rng"]["key"].get<uint64_t>() == std::numeric_limits<uint64_t>::max());
  CHECK(header["min"].get<int64_t>() == std::numeric_limits<int64_t>::min());
  CHECK(header["lr"].get<double>() == 0.1);
  CHECK(header["classes"][2].get<std::string>() == "\u6f22\u5b57");

  io::Checkpoint bad_utf8;
  bad_utf8.header = {{"name", std::string("\xff\xfe")}};
  CHECK_THROWS_WITH_AS(io::save_checkpoint(path, bad_utf8),
                       has("checkpoint " + path + ": the header cannot be written as JSON"), Error);
  CHECK(io::load_checkpoint(path).header == saved.header);  // the previous file is intact
}

TEST_CASE("io: checkpoint file layout follows the checkpoint format note") {
  TempDir dir("metafew-io-ckpt");
  const std::string path = dir.file("layout.ckpt");
  io::save_checkpoint(path, sample_checkpoint());
  const Bytes b = read_bytes(path);
  REQUIRE(b.size() > 28);
  CHECK(std::memcmp(b.data(), "METAFEW\0", 8) == 0);
  CHECK(le64(b.data() + 8) % (uint64_t(1) << 32) == 1);  // u32 version 1
  const uint64_t h = le64(b.data() + 12);
  const json doc = json::parse(b.begin() + 20, b.begin() + 20 + static_cast<std::ptrdiff_t>(h));
  const uint64_t data_start = align64(20 + h);
  const uint64_t data_bytes = doc["data_bytes"].get<uint64_t>();
  CHECK(b.size() == data_start + data_bytes + 8);
  CHECK(doc["tensors"].size() == 6);
  for (const json& e : doc["tensors"]) CHECK((data_start + e["offset"].get<uint64_t>()) % 64 == 0);
  CHECK(doc["tensors"][0]["dtype"] == "f32");
  CHECK(doc["tensors"][1]["dtype"] == "f64");
  CHECK(doc["tensors"][2]["dtype"] == "i32");
  CHECK(doc["tensors"][3]["shape"] == json::array());
  CHECK(le64(b.data() + b.size() - 8) == io::detail::checksum64(b.data(), b.size() - 8));

  // A file built by hand from the note loads.
  Bytes data(24);
  for (size_t i = 0; i < 6; ++i) {
    const float v = static_cast<float>(i) + 0.25f;
    std::memcpy(data.data() + 4 * i, &v, 4);
  }
  write_bytes(path, craft(one_tensor_doc(), data));
  const io::Checkpoint c = io::load_checkpoint(path);
  CHECK(c.header["algorithm"] == "protonet");
  CHECK(io::find_tensor(c, "w").to_vector() == std::vector<double>{0.25, 1.25, 2.25, 3.25, 4.25, 5.25});
}

TEST_CASE("io: checkpoint truncated at every length is refused") {
  TempDir dir("metafew-io-ckpt");
  const std::string good = dir.file("good.ckpt");
  const std::string cut = dir.file("cut.ckpt");
  io::save_checkpoint(good, sample_checkpoint());
  const Bytes b = read_bytes(good);
  for (size_t len = 0; len < b.size(); ++len) {
    write_bytes(cut, Bytes(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(len)));
    const std::string msg = load_error(cut);
    INFO("length ", len, " of ", b.size(), ": ", msg);
    REQUIRE(starts_with(msg, "checkpoint " + cut + ": "));
    CHECK(contains(msg, len == 0 ? "is empty" : "is truncated"));
  }
}

TEST_CASE("io: checkpoint with one flipped byte anywhere is refused") {
  TempDir dir("metafew-io-ckpt");
  const std::string good = dir.file("good.ckpt");
  const std::string bad = dir.file("bad.ckpt");
  io::save_checkpoint(good, sample_checkpoint());
  const Bytes b = read_bytes(good);
  const size_t data_start = align64(20 + le64(b.data() + 12));
  for (unsigned char mask : {0x01, 0x80, 0xff}) {
    for (size_t pos = 0; pos < b.size(); ++pos) {
      Bytes f = b;
      f[pos] ^= mask;
      write_bytes(bad, f);
      const std::string msg = load_error(bad);
      INFO("byte ", pos, " of ", b.size(), " xor ", int(mask), ": ", msg);
      REQUIRE(starts_with(msg, "checkpoint " + bad + ": "));
      if (pos < 8) {
        CHECK(contains(msg,
                       "is not a metafew checkpoint (its first 8 bytes differ from the checkpoint magic in "
                       "only 1 byte: a damaged checkpoint?)"));
      } else if (pos < 12) {
        CHECK(contains(msg, "format version"));
      } else if (pos < data_start) {
        CHECK((contains(msg, "is damaged: checksum mismatch") || contains(msg, "is truncated")));
      } else {
        CHECK(contains(msg, "is damaged: checksum mismatch"));
      }
    }
  }
}

TEST_CASE("io: checkpoint: empty, missing, folder and foreign files are refused by name") {
  TempDir dir("metafew-io-ckpt");
  const std::string empty = dir.file("empty.ckpt");
  write_bytes(empty, {});
  CHECK(load_error(empty) == "checkpoint " + empty + ": is empty (0 bytes)");

  const std::string missing = dir.file("missing.ckpt");
  CHECK(load_error(missing) == "checkpoint " + missing + ": no such file");

  const std::string folder = dir.file("run");
  fs::create_directory(folder);
  CHECK(starts_with(load_error(folder), "checkpoint " + folder + ": is a folder"));
  io::save_checkpoint(dir.file("run/last"), sample_checkpoint());
  CHECK(contains(load_error(folder), "its latest checkpoint is " + dir.file("run/last")));

  struct Foreign {
    const char* name;
    Bytes bytes;
    const char* says;
  };
  // The first 41 bytes of an Omniglot PNG (signature and IHDR chunk) stand for "a real PNG renamed".
  const Bytes png = {0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48,
                     0x44, 0x52, 0x00, 0x00, 0x00, 0x69, 0x00, 0x00, 0x00, 0x69, 0x01, 0x00, 0x00, 0x00,
                     0x00, 0x11, 0xf9, 0x30, 0x97, 0x00, 0x00, 0x00, 0x07, 0x74, 0x49, 0x4d, 0x45};
  const std::string json_text = "  {\"iterations\": 1000, \"ways\": 5}\n";
  const std::vector<Foreign> cases = {
      {"image.png", png, "PNG image"},
      {"photo.jpg", {0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0x00}, "JPEG image"},
      {"model.pt", {'P', 'K', 3, 4, 20, 0, 0, 0, 8, 0}, "ZIP archive"},
      {"data.gz", {0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00}, "gzip"},
      {"config.json", Bytes(json_text.begin(), json_text.end()), "JSON text"},
      {"notes.txt", {'h', 'e', 'l', 'l', 'o', '\n'}, "text file"},
      {"short.bin", {0x00, 0x01, 0x02}, "unknown format; it starts with bytes 00 01 02"},
  };
  for (const Foreign& f : cases) {
    const std::string path = dir.file(f.name);
    write_bytes(path, f.bytes);
    const std::string msg = load_error(path);
    INFO(msg);
    CHECK(starts_with(msg, "checkpoint " + path + ": is not a metafew checkpoint ("));
    CHECK(contains(msg, f.says));
  }
}

TEST_CASE("io: checkpoint of another format version, or whose header overruns the file, is refused") {
  TempDir dir("metafew-io-ckpt");
  const std::string path = dir.file("v.ckpt");
  io::save_checkpoint(path, sample_checkpoint());
  const Bytes b = read_bytes(path);

  Bytes newer = b;
  newer[8] = 2;
  write_bytes(path, newer);
  CHECK(load_error(path) == "checkpoint " + path +
                                ": has format version 2, but this build of metafew reads version 1 (it was "
                                "written by a newer metafew)");
  Bytes older = b;
  older[8] = 0;
  write_bytes(path, older);
  CHECK(contains(load_error(path), "has format version 0, but this build of metafew reads version 1"));

  Bytes overrun = b;
  overrun[12 + 5] = 1;  // header length += 2^40
  write_bytes(path, overrun);
  CHECK(contains(load_error(path), ": is truncated: the file has " + std::to_string(b.size()) +
                                       " bytes, too few for the 1099511"));
}

TEST_CASE("io: checkpoint with a valid checksum but a bad header or tensor table is refused") {
  TempDir dir("metafew-io-ckpt");
  const std::string path = dir.file("t.ckpt");
  const Bytes data(24, 0);
  auto error_for = [&](const Bytes& bytes) {
    write_bytes(path, bytes);
    return load_error(path);
  };
  auto with_entry = [](const char* key, const json& value) {
    json d = one_tensor_doc();
    d["tensors"][0][key] = value;
    return d;
  };

  CHECK(
      contains(error_for(craft(std::string("{\"header\": tru"), data)), "its JSON header is not valid JSON"));
  CHECK(contains(error_for(craft(json::array({1, 2}), data)),
                 "its JSON header is a JSON array, expected an object"));
  json no_table = one_tensor_doc();
  no_table.erase("tensors");
  CHECK(contains(error_for(craft(no_table, data)), "its JSON header has no \"tensors\""));
  json longer = one_tensor_doc();
  longer["data_bytes"] = 16;
  CHECK(contains(error_for(craft(longer, data)), "is inconsistent: the file has"));

  CHECK(contains(error_for(craft(with_entry("dtype", "f16"), data)),
                 "tensor \"w\" (table entry 0): dtype \"f16\" is not one of"));
  CHECK(contains(error_for(craft(with_entry("shape", {2, -3}), data)), "has the extent -3"));
  CHECK(contains(error_for(craft(with_entry("shape", "2x3"), data)), "expected an array of extents"));
  CHECK(contains(error_for(craft(with_entry("bytes", 20), data)),
                 "declares 20 bytes, but a f32 tensor of shape [2,3] has 24"));
  CHECK(contains(error_for(craft(with_entry("offset", 8), data)), "offset 8 is not a multiple of 64"));
  CHECK(contains(error_for(craft(with_entry("offset", 64), data)),
                 "its 24 bytes at offset 64 lie outside the 24-byte data section"));
  CHECK(contains(error_for(craft(with_entry("name", ""), data)),
                 "\"name\" is \"\", expected a non-empty string"));
  CHECK(contains(error_for(craft(with_entry("shape", {uint64_t(1) << 40, uint64_t(1) << 40}), data)),
                 "elements"));

  json two = one_tensor_doc();
  two["tensors"].push_back(two["tensors"][0]);
  CHECK(contains(error_for(craft(two, data)), "the name appears twice"));
  two["tensors"][1]["name"] = "v";
  CHECK(contains(error_for(craft(two, data)), "inside the previous tensor"));
}

TEST_CASE("io: checkpoint save is atomic: no temporary file left, a failed save keeps the old file") {
  TempDir dir("metafew-io-ckpt");
  const std::string path = dir.file("last");
  const io::Checkpoint first = sample_checkpoint();
  io::save_checkpoint(path, first);
  CHECK(dir.listing() == std::vector<std::string>{"last"});

  // A save that throws before the rename leaves the previous checkpoint complete.
  io::Checkpoint broken = sample_checkpoint();
  broken.header["iteration"] = 9999;
  broken.tensors.push_back({"undefined", Tensor()});
  CHECK_THROWS_WITH_AS(io::save_checkpoint(path, broken),
                       has("checkpoint " + path + ": tensor \"undefined\" is undefined"), Error);
  io::Checkpoint twice = sample_checkpoint();
  twice.tensors.push_back(twice.tensors[0]);
  CHECK_THROWS_WITH_AS(io::save_checkpoint(path, twice), has("two tensors are named \"w0\""), Error);
  CHECK(dir.listing() == std::vector<std::string>{"last"});
  io::Checkpoint still = io::load_checkpoint(path);
  CHECK(still.header["iteration"] == 1234);
  check_same_tensors(first, still);

  // A save that fails after the whole temporary file is written (the rename onto a non-empty folder
  // fails) removes its temporary file.
  const std::string blocker = dir.file("blocker");
  fs::create_directory(blocker);
  write_bytes(dir.file("blocker/keep"), {1});
  CHECK_THROWS_WITH_AS(io::save_checkpoint(blocker, first), has("cannot rename"), Error);
  CHECK(dir.listing() == std::vector<std::string>{"blocker", "last"});

  // A save into a folder that does not exist says so.
  CHECK_THROWS_WITH_AS(io::save_checkpoint(dir.file("nope/last"), first),
                       has("the folder " + dir.file("nope") + " does not exist"), Error);

  // A successful save replaces the file.
  io::Checkpoint second = sample_checkpoint();
  second.header["iteration"] = 2000;
  second.tensors.resize(2);
  io::save_checkpoint(path, second);
  CHECK(dir.listing() == std::vector<std::string>{"blocker", "last"});
  const io::Checkpoint now = io::load_checkpoint(path);
  CHECK(now.header["iteration"] == 2000);
  check_same_tensors(second, now);
}

TEST_CASE("io: find_tensor returns the named tensor or names what is missing and where") {
  TempDir dir("metafew-io-ckpt");
  const std::string path = dir.file("f.ckpt");
  io::save_checkpoint(path, sample_checkpoint());
  const io::Checkpoint c = io::load_checkpoint(path);
  CHECK(io::find_tensor(c, "labels").dtype() == DType::i32);
  CHECK(io::find_tensor(c, "scale").item() == 42.5);
  const std::string expected =
      "checkpoint " + path +
      ": has no tensor named \"w9\"; it holds 6 tensors: w0, moments.m, labels, scale, empty, odd";
  CHECK_THROWS_WITH_AS(io::find_tensor(c, "w9"), expected.c_str(), Error);
  io::Checkpoint in_memory;
  CHECK_THROWS_WITH_AS(io::find_tensor(in_memory, "w0"),
                       "checkpoint: has no tensor named \"w0\"; it holds 0 tensors", Error);
}

TEST_CASE("io: checkpoint checksum is split-invariant and sees every flipped bit and every length") {
  std::mt19937 rng(5);
  Bytes b(150);
  for (auto& x : b) x = static_cast<unsigned char>(rng());
  const uint64_t whole = io::detail::checksum64(b.data(), b.size());
  for (size_t i = 0; i <= b.size(); ++i)
    for (size_t j = i; j <= b.size(); ++j) {
      io::detail::Checksum c;
      c.update(b.data(), i);
      c.update(b.data() + i, j - i);
      c.update(b.data() + j, b.size() - j);
      REQUIRE(c.digest() == whole);
    }
  for (size_t bit = 0; bit < 8 * b.size(); ++bit) {
    Bytes f = b;
    f[bit / 8] ^= static_cast<unsigned char>(1u << (bit % 8));
    REQUIRE(io::detail::checksum64(f.data(), f.size()) != whole);
  }
  const Bytes zeros(100, 0);
  std::vector<uint64_t> digests;
  for (size_t n = 0; n <= zeros.size(); ++n) digests.push_back(io::detail::checksum64(zeros.data(), n));
  std::sort(digests.begin(), digests.end());
  CHECK(std::adjacent_find(digests.begin(), digests.end()) == digests.end());
}

}  // namespace metafew::testing
