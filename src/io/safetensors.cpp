#include "io/safetensors.h"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <system_error>

#include "core/error.h"
#include "io/run_dir.h"

// Note [safetensors]
// The format (github.com/huggingface/safetensors, its README's "Format" section), little-endian:
//
//   0      u64       N, the length of the header
//   8      N bytes   JSON header, UTF-8, one object: for each tensor
//                      "name": {"dtype": "F32", "shape": [64, 1, 3, 3], "data_offsets": [begin, end]}
//                    and optionally "__metadata__": {"key": "value", ...} (string values only); the writer
//                    may pad the header with spaces
//   8 + N  the byte buffer: tensor i's elements, row-major, at [begin_i, end_i) of the buffer
//
// The writer pads the header so the buffer starts at a multiple of 8 (as the reference writer does) and lays
// the tensors out one after the other in the order given. The reader checks, each with its own message: the
// header length (at most 100,000,000 bytes, the reference reader's limit) and that the file holds it; JSON;
// each entry's dtype, shape and offsets (end - begin = elements x dtype size, inside the buffer); and, as the
// reference reader does, that the tensors cover the buffer exactly, without gaps or overlaps, so that every
// byte of the file belongs to something.

namespace metafew::io {
namespace fs = std::filesystem;
using nlohmann::json;
using tensor::DType;
using tensor::Tensor;

static_assert(std::endian::native == std::endian::little,
              "safetensors data are written in host byte order, which the format fixes as little-endian");

namespace {

constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr const char* kMetadataKey = "__metadata__";

const char* safetensors_dtype(DType d) {
  switch (d) {
    case DType::f32: return "F32";
    case DType::f64: return "F64";
    case DType::i32: return "I32";
  }
  return "?";
}

std::optional<DType> parse_dtype(const std::string& s) {
  if (s == "F32") return DType::f32;
  if (s == "F64") return DType::f64;
  if (s == "I32") return DType::i32;
  return std::nullopt;
}

// The dtypes of the format that metafew has no tensor type for: refused by name rather than as unknown.
bool foreign_dtype(const std::string& s) {
  static const std::set<std::string> known = {"BOOL", "U8",  "I8",  "F8_E5M2", "F8_E4M3", "I16",
                                              "U16",  "F16", "BF16", "U32",    "I64",     "U64"};
  return known.count(s) > 0;
}

struct Entry {
  std::string name;
  DType dtype;
  tensor::Shape shape;
  uint64_t begin = 0, end = 0;
};

Entry read_entry(const std::string& name, const json& e, uint64_t buffer_bytes, const std::string& ctx) {
  const std::string where = ctx + "tensor \"" + name + "\"";
  MF_CHECK(e.is_object(), where, " is a JSON ", e.type_name(), ", expected an object with dtype, shape and data_offsets");
  for (const char* key : {"dtype", "shape", "data_offsets"})
    MF_CHECK(e.contains(key), where, " has no \"", key, "\"");
  const json& jdtype = e["dtype"];
  MF_CHECK(jdtype.is_string(), where, ": dtype is ", jdtype.dump(), ", expected a string such as \"F32\"");
  const std::string dtype_text = jdtype.get<std::string>();
  const std::optional<DType> dtype = parse_dtype(dtype_text);
  MF_CHECK(dtype.has_value(), where, " has dtype ", dtype_text,
           foreign_dtype(dtype_text) ? ", which metafew does not read: convert it to F32 (or F64, I32)"
                                     : ", which is not a safetensors dtype");
  const uint64_t elem = tensor::dtype_size(*dtype);

  const json& jshape = e["shape"];
  MF_CHECK(jshape.is_array(), where, ": shape is ", jshape.dump(), ", expected an array of extents");
  constexpr uint64_t kMaxExtent = uint64_t(std::numeric_limits<int64_t>::max()) / 8;
  tensor::Shape shape;
  uint64_t numel = 1;
  bool empty = false;
  for (const json& d : jshape) {
    MF_CHECK(d.is_number_unsigned() && d.get<uint64_t>() <= kMaxExtent, where, ": shape ", jshape.dump(),
             " has the extent ", d.dump(), ", expected integers in [0, ", kMaxExtent, "]");
    const uint64_t extent = d.get<uint64_t>();
    shape.push_back(static_cast<int64_t>(extent));
    if (extent == 0) empty = true;
  }
  if (empty) {
    numel = 0;
  } else {
    for (int64_t d : shape) {
      MF_CHECK(numel <= kMaxExtent / static_cast<uint64_t>(d), where, ": shape ", jshape.dump(), " has more than ",
               kMaxExtent, " elements");
      numel *= static_cast<uint64_t>(d);
    }
  }

  const json& joff = e["data_offsets"];
  MF_CHECK(joff.is_array() && joff.size() == 2 && joff[0].is_number_unsigned() && joff[1].is_number_unsigned(), where,
           ": data_offsets is ", joff.dump(), ", expected [begin, end] (non-negative integers)");
  const uint64_t begin = joff[0].get<uint64_t>(), end = joff[1].get<uint64_t>();
  MF_CHECK(begin <= end && end <= buffer_bytes, where, ": data_offsets [", begin, ", ", end,
           "] do not lie inside the ", buffer_bytes, "-byte data buffer");
  MF_CHECK(end - begin == numel * elem, where, ": data_offsets [", begin, ", ", end, "] span ", end - begin,
           " bytes, but a ", dtype_text, " tensor of shape ", jshape.dump(), " has ", numel * elem);
  return {name, *dtype, shape, begin, end};
}

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

}  // namespace

bool looks_like_safetensors(const unsigned char* first, size_t n) {
  if (n < 9) return false;
  uint64_t len = 0;
  std::memcpy(&len, first, 8);
  return len >= 2 && len <= kMaxHeaderBytes && first[8] == '{';
}

void save_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  const std::string ctx = "safetensors " + path;
  json header = json::object();
  uint64_t offset = 0;
  for (const NamedTensor& t : tensors) {
    MF_CHECK(!t.name.empty() && t.name != kMetadataKey, ctx, ": a tensor cannot be called '", t.name, "'");
    MF_CHECK(!header.contains(t.name), ctx, ": the tensor name ", t.name, " appears twice");
    MF_CHECK(t.tensor.defined(), ctx, ": tensor ", t.name, " is undefined");
    const uint64_t bytes = static_cast<uint64_t>(t.tensor.numel()) * tensor::dtype_size(t.tensor.dtype());
    header[t.name] = json{{"dtype", safetensors_dtype(t.tensor.dtype())},
                          {"shape", t.tensor.shape()},
                          {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  if (!metadata.empty()) header[kMetadataKey] = metadata;
  std::string text;
  try {
    text = header.dump();
  } catch (const json::exception& e) {
    throw Error(ctx + ": a tensor name or metadata value is not valid UTF-8 (" + e.what() + ")");
  }
  text.append((8 - text.size() % 8) % 8, ' ');  // the buffer starts 8-byte aligned

  AtomicFile out(path, ctx);
  const uint64_t n = text.size();
  out.write(&n, sizeof(n));
  out.write(text.data(), text.size());
  for (const NamedTensor& t : tensors) {
    const size_t bytes = static_cast<size_t>(t.tensor.numel()) * tensor::dtype_size(t.tensor.dtype());
    if (bytes > 0) out.write(t.tensor.raw_data(), bytes);
  }
  out.commit();
}

SafetensorsFile load_safetensors(const std::string& path) {
  const std::string ctx = "safetensors " + path + ": ";
  std::error_code ec;
  MF_CHECK(!require_existing_path(path, ctx), ctx, "is a folder, expected a .safetensors file");
  MF_CHECK(fs::is_regular_file(path, ec), ctx, "is not a regular file");
  std::unique_ptr<std::FILE, FileCloser> f(std::fopen(path.c_str(), "rb"));
  if (!f) {
    const int err = errno;
    throw Error(ctx + "cannot open it: " + std::generic_category().message(err));
  }
  const uintmax_t size = fs::file_size(path, ec);
  MF_CHECK(!ec, ctx, "cannot read its size: ", ec.message());
  MF_CHECK(size >= 8, ctx, "is truncated: ", size, " bytes, and a safetensors file starts with an 8-byte header length");
  std::vector<unsigned char> bytes(static_cast<size_t>(size));
  const size_t got = std::fread(bytes.data(), 1, bytes.size(), f.get());
  MF_CHECK(got == bytes.size(), ctx, "cannot read it (", got, " of ", size, " bytes read)");

  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  MF_CHECK(n >= 2 && n <= kMaxHeaderBytes, ctx, "is not a safetensors file: its first 8 bytes give a header length of ",
           n, " (expected 2 to ", kMaxHeaderBytes, ")");
  MF_CHECK(n <= size - 8, ctx, "is truncated: its header is ", n, " bytes long, the file has ", size - 8,
           " bytes after the length");
  MF_CHECK(bytes[8] == '{', ctx, "is not a safetensors file: its header does not start with '{'");
  json header;
  try {
    header = json::parse(bytes.begin() + 8, bytes.begin() + 8 + static_cast<std::ptrdiff_t>(n));
  } catch (const json::exception& e) {
    throw Error(ctx + "its header is not valid JSON (" + e.what() + ")");
  }
  MF_CHECK(header.is_object(), ctx, "its header is a JSON ", header.type_name(), ", expected an object");
  const uint64_t buffer_bytes = size - 8 - n;
  const unsigned char* buffer = bytes.data() + 8 + n;

  SafetensorsFile file;
  std::vector<Entry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == kMetadataKey) {
      MF_CHECK(it.value().is_object(), ctx, "\"__metadata__\" is a JSON ", it.value().type_name(),
               ", expected an object of strings");
      for (auto m = it.value().begin(); m != it.value().end(); ++m) {
        MF_CHECK(m.value().is_string(), ctx, "\"__metadata__\" key \"", m.key(), "\" is a JSON ",
                 m.value().type_name(), ", the format allows strings only");
        file.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    MF_CHECK(!it.key().empty(), ctx, "its header has a tensor with an empty name");
    entries.push_back(read_entry(it.key(), it.value(), buffer_bytes, ctx));
  }
  // Every byte of the buffer belongs to exactly one tensor (empty tensors take none).
  std::stable_sort(entries.begin(), entries.end(),
                   [](const Entry& a, const Entry& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
  uint64_t covered = 0;
  for (const Entry& e : entries) {
    MF_CHECK(e.begin == covered, ctx, "tensor \"", e.name, "\" starts at byte ", e.begin, " of the data buffer, ",
             e.begin < covered ? "inside the tensor before it" : "leaving a gap after the tensor before it", " (which ends at ",
             covered, "); tensors must cover the buffer exactly");
    covered = e.end;
  }
  MF_CHECK(covered == buffer_bytes, ctx, "its tensors cover ", covered, " bytes of a ", buffer_bytes,
           "-byte data buffer; the file is damaged or has trailing bytes");
  for (const Entry& e : entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    if (e.end > e.begin) std::memcpy(t.raw_data(), buffer + e.begin, e.end - e.begin);
    file.tensors.push_back({e.name, std::move(t)});
  }
  return file;
}

}  // namespace metafew::io
