// safetensors: bit-exact round trips with the documented layout, and a refusal naming what is wrong for each
// kind of bad file (Note [safetensors] in src/io/safetensors.cpp).
#include <doctest/doctest.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/safetensors.h"
#include "support/temp_dir.h"

namespace metafew::testing {
namespace {

using nlohmann::json;
using tensor::DType;
using tensor::Tensor;

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_all(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// A file of the given header text (unpadded) and buffer.
std::string file_of(const std::string& header, const std::string& buffer) {
  std::string s(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(s.data(), &n, 8);
  return s + header + buffer;
}

std::string load_error(const std::string& path) {
  try {
    io::load_safetensors(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST_CASE("io: safetensors round trip is bit-exact, laid out as the format documents") {
  TempDir dir;
  const std::string path = dir.file("m.safetensors");
  std::vector<io::NamedTensor> tensors = {
      {"block1.conv.weight", Tensor::from_vector({1.5, -2.25, 3e-8, 7, 0.1, -0.0}, {2, 1, 3, 1})},
      {"a.f64", Tensor::from_vector({1.0 / 3.0, -1e300}, {2}, DType::f64)},
      {"labels", Tensor::from_indices({3, -1, 2147483647}, {3})},
      {"empty", Tensor::zeros({0, 4})},
      {"scalar", Tensor::scalar(0.25)}};
  const std::map<std::string, std::string> meta{{"format", "pt"}, {"metafew_config", "{\"a\": 1}"}};
  io::save_safetensors(path, tensors, meta);

  const io::SafetensorsFile back = io::load_safetensors(path);
  CHECK(back.metadata == meta);
  REQUIRE(back.tensors.size() == tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {  // the file order is the order given
    CHECK(back.tensors[i].name == tensors[i].name);
    CHECK(back.tensors[i].tensor.shape() == tensors[i].tensor.shape());
    CHECK(back.tensors[i].tensor.dtype() == tensors[i].tensor.dtype());
    const size_t bytes = static_cast<size_t>(tensors[i].tensor.numel()) * tensor::dtype_size(tensors[i].tensor.dtype());
    if (bytes > 0)  // an empty tensor may have no storage (memcmp must not see a null pointer)
      CHECK(std::memcmp(back.tensors[i].tensor.raw_data(), tensors[i].tensor.raw_data(), bytes) == 0);
  }

  // The layout, read here by hand: length, JSON header padded to 8 bytes, then the data in order.
  const std::string bytes = read_all(path);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  CHECK((8 + n) % 8 == 0);
  const json header = json::parse(bytes.substr(8, n));
  CHECK(header["block1.conv.weight"]["dtype"] == "F32");
  CHECK(header["block1.conv.weight"]["shape"] == json::array({2, 1, 3, 1}));
  CHECK(header["block1.conv.weight"]["data_offsets"] == json::array({0, 24}));
  CHECK(header["a.f64"]["dtype"] == "F64");
  CHECK(header["a.f64"]["data_offsets"] == json::array({24, 40}));
  CHECK(header["labels"]["dtype"] == "I32");
  CHECK(header["empty"]["data_offsets"] == json::array({52, 52}));
  CHECK(header["scalar"]["shape"] == json::array());
  CHECK(header["__metadata__"]["format"] == "pt");
  CHECK(bytes.size() == 8 + n + 56);
  float first = 0;
  std::memcpy(&first, bytes.data() + 8 + n, 4);
  CHECK(first == 1.5f);
  CHECK(io::looks_like_safetensors(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size()));
}

TEST_CASE("io: a bad safetensors file is refused saying what is wrong") {
  TempDir dir;
  const std::string path = dir.file("bad.safetensors");
  const std::string one = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  const std::string eight(8, '\1');
  write_all(path, file_of(one, eight));
  CHECK(load_error(path).empty());  // the well-formed file the cases below damage

  struct Case {
    std::string bytes, expected;
  };
  const std::vector<Case> cases = {
      {"abc", "is truncated: 3 bytes"},
      {file_of(one, eight).substr(0, 30), "is truncated: its header is"},
      {std::string(8, '\xff') + "{}", "header length of"},
      {file_of("[1, 2]", ""), "does not start with '{'"},
      {file_of("{\"w\": ", ""), "not valid JSON"},
      {file_of(one, eight + "xx"), "cover 8 bytes of a 10-byte data buffer"},
      {file_of(R"({"w":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]}})", eight),
       "has dtype BF16, which metafew does not read"},
      {file_of(R"({"w":{"dtype":"Q9","shape":[2],"data_offsets":[0,8]}})", eight), "not a safetensors dtype"},
      {file_of(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", eight), "span 8 bytes, but"},
      {file_of(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", eight), "do not lie inside"},
      {file_of(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", eight), "has the extent -2"},
      {file_of(R"({"w":{"dtype":"F32","shape":[2]}})", eight), "has no \"data_offsets\""},
      {file_of(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
               R"("b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}})",
               std::string(6, '\0')),
       "inside the tensor before it"},
      {file_of(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", eight), "leaving a gap"},
      {file_of(R"({"w":{"dtype":"F32","shape":[1152921504606846975,16],"data_offsets":[0,8]}})", eight),
       "elements"},
      {file_of(R"({"__metadata__":{"k":1},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", eight),
       "strings only"},
  };
  for (const Case& c : cases) {
    write_all(path, c.bytes);
    const std::string err = load_error(path);
    INFO(c.expected, " -> ", err);
    CHECK(err.rfind("safetensors " + path + ": ", 0) == 0);
    CHECK(err.find(c.expected) != std::string::npos);
  }
  CHECK(load_error(dir.file("missing.safetensors")).find("no such file") != std::string::npos);
}

TEST_CASE("io: save_safetensors refuses names the format cannot hold and leaves the old file") {
  TempDir dir;
  const std::string path = dir.file("m.safetensors");
  io::save_safetensors(path, {{"w", Tensor::scalar(1)}}, {});
  const std::string before = read_all(path);
  CHECK_THROWS_WITH_AS(io::save_safetensors(path, {{"w", Tensor::scalar(1)}, {"w", Tensor::scalar(2)}}, {}),
                       doctest::Contains("appears twice"), Error);
  CHECK_THROWS_WITH_AS(io::save_safetensors(path, {{"__metadata__", Tensor::scalar(1)}}, {}),
                       doctest::Contains("cannot be called"), Error);
  CHECK(read_all(path) == before);
}

}  // namespace
}  // namespace metafew::testing
