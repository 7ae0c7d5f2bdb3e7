#include "io/checkpoint.h"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <limits>
#include <memory>
#include <optional>
#include <string_view>
#include <system_error>
#include <unordered_set>

#include "core/error.h"
#include "core/rng.h"
#include "io/run_dir.h"

// Note [Checkpoint format]
// Little-endian throughout; positions are bytes from the start of the file.
//
//   0      8 bytes   magic "METAFEW\0"
//   8      u32       format version (1)
//   12     u64       H, the length of the JSON header
//   20     H bytes   JSON header, UTF-8, one object:
//                      {"header": <the caller's header, any JSON>,
//                       "tensors": [{"name": "w0", "dtype": "f32" | "f64" | "i32", "shape": [64, 1, 3, 3],
//                                    "offset": 0, "bytes": 2304}, ...],
//                       "data_bytes": D}
//          padding   zeros up to S, the first multiple of 64 at or after 20 + H
//   S      D bytes   data section: the tensors' elements, row-major, in table order; tensor i occupies
//                    [S + offset_i, S + offset_i + bytes_i) with offset_i a multiple of 64 (zeros between)
//                    and bytes_i = numel * dtype size
//   S + D  u64       checksum of bytes [0, S + D) (Note [Checkpoint checksum])
//
// The file is S + D + 8 bytes. Offsets count from the data section rather than the file because the header
// cannot hold offsets that depend on its own length; S being a multiple of 64 keeps every tensor 64-byte
// aligned in the file, so a later reader can map the file and use the tensors in place.
//
// The reader checks, in this order, so that each kind of bad file gets its own message: empty; the magic
// (anything else is "not a metafew checkpoint", naming the format when it is a common one); the fixed header
// and the JSON header fit ("truncated"); the version (before the checksum: a later version may checksum
// differently, and must read as "newer", not "damaged"); the checksum ("damaged", or "truncated" when the
// JSON header still parses and declares a longer file); then the JSON header and every table entry.
//
// Note [Checkpoint checksum]
// The input bytes are read as little-endian 64-bit words, the last partial word padded with zeros; word j
// updates lane j mod 4 of four 64-bit lanes:
//     v = rotl64((v ^ w) * K, 31)                 K = 0x9e3779b97f4a7c15 (odd)
// The lanes start at the first 256 bits of pi's fraction (see Checksum in checkpoint.h). The digest is
//     h = mix64(n ^ K), then h = mix64(h ^ v_i) for i = 0, 1, 2, 3      n = the number of input bytes,
// with mix64 the SplitMix64 finaliser (core/rng.h). For a fixed lane value the update is a bijection of the
// word (xor, multiplication by an odd number and rotation are all invertible), for a fixed word a bijection
// of the lane, and the digest a bijection of each lane given the others; so any change confined to one
// 8-byte word, and in particular any flipped bit or byte, changes the digest with certainty. Wider damage
// passes with probability about 2^-64; n in the digest tells a truncated tail from zero padding. Four
// independent lanes keep four multiply chains in flight, several GB/s, far faster than the disk. It detects
// accidents, not tampering: it is not a cryptographic hash.

namespace metafew::io {
namespace fs = std::filesystem;
using nlohmann::json;
using tensor::DType;
using tensor::Tensor;

static_assert(std::endian::native == std::endian::little,
              "checkpoint tensors are written in host byte order, which the format fixes as little-endian");

namespace {

constexpr unsigned char kMagic[8] = {'M', 'E', 'T', 'A', 'F', 'E', 'W', '\0'};
constexpr uint32_t kVersion = 1;
constexpr size_t kFixedBytes = 20;   // magic, version, header length
constexpr size_t kTrailerBytes = 8;  // checksum
constexpr uint64_t kAlign = 64;
constexpr uint64_t kChecksumK = 0x9e3779b97f4a7c15ULL;

uint64_t align_up(uint64_t x) {
  return (x + kAlign - 1) / kAlign * kAlign;
}

uint64_t load_le64(const unsigned char* p) {
  uint64_t w = 0;
  for (int i = 7; i >= 0; --i) w = (w << 8) | p[i];
  return w;
}

uint32_t load_le32(const unsigned char* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

void store_le(unsigned char* p, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}

uint64_t checksum_round(uint64_t v, uint64_t w) {
  return std::rotl((v ^ w) * kChecksumK, 31);
}

std::string hex64(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "0x%016llx", static_cast<unsigned long long>(v));
  return buf;
}

std::optional<DType> parse_dtype(const std::string& s) {
  for (DType d : {DType::f32, DType::f64, DType::i32})
    if (s == tensor::dtype_name(d)) return d;
  return std::nullopt;
}

// What a file that lacks the checkpoint magic probably is, for the error message.
std::string describe_foreign(const unsigned char* p, size_t n) {
  auto starts = [&](std::initializer_list<unsigned> sig) {
    if (n < sig.size()) return false;
    size_t i = 0;
    for (unsigned c : sig)
      if (p[i++] != c) return false;
    return true;
  };
  auto starts_text = [&](std::string_view s) {
    return n >= s.size() && std::memcmp(p, s.data(), s.size()) == 0;
  };

  if (starts({0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a})) return "it looks like a PNG image";
  if (starts({0xff, 0xd8, 0xff})) return "it looks like a JPEG image";
  if (starts_text("GIF87a") || starts_text("GIF89a")) return "it looks like a GIF image";
  if (n >= 10 && starts_text("BM") && p[6] == 0 && p[7] == 0 && p[8] == 0 && p[9] == 0)
    return "it looks like a BMP image";
  if (n >= 3 && p[0] == 'P' && p[1] >= '1' && p[1] <= '6' && (p[2] == ' ' || p[2] == '\n' || p[2] == '\r'))
    return "it looks like a PGM/PPM image";
  if (starts({0x1f, 0x8b})) return "it looks like a gzip-compressed file";
  if (starts({'P', 'K', 3, 4}) || starts({'P', 'K', 5, 6}) || starts({'P', 'K', 7, 8}))
    return "it looks like a ZIP archive, the container of PyTorch .pt and NumPy .npz files";
  if (starts({0x93, 'N', 'U', 'M', 'P', 'Y'})) return "it looks like a NumPy .npy array";
  if (starts({0x89, 'H', 'D', 'F', 0x0d, 0x0a, 0x1a, 0x0a})) return "it looks like an HDF5 file";
  if (n >= 2 && p[0] == 0x80 && p[1] >= 2 && p[1] <= 5) return "it looks like a Python pickle";
  if (starts_text("MFDCACHE")) return "it is a metafew image cache file";
  if (starts({0x7f, 'E', 'L', 'F'})) return "it looks like an executable program";
  if (starts_text("%PDF")) return "it looks like a PDF document";
  if (n >= 10 && p[8] == '{' && p[9] == '"') return "it looks like a safetensors file";

  // Text: skip a UTF-8 byte order mark and leading white space.
  size_t i = starts({0xef, 0xbb, 0xbf}) ? 3 : 0;
  while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r')) ++i;
  if (i < n && (p[i] == '{' || p[i] == '[')) return "it looks like JSON text";
  const size_t probe = std::min<size_t>(n, 256);
  bool text = true;
  for (size_t k = 0; k < probe && text; ++k)
    text = (p[k] >= 0x20 && p[k] != 0x7f) || p[k] == '\t' || p[k] == '\n' || p[k] == '\r';
  if (text) return "it looks like a text file";

  std::string bytes;
  for (size_t k = 0; k < std::min<size_t>(n, 8); ++k) {
    char buf[4];
    std::snprintf(buf, sizeof(buf), " %02x", p[k]);
    bytes += buf;
  }
  return "unknown format; it starts with bytes" + bytes;
}

constexpr size_t kForeignProbeBytes = 256;  // what describe_foreign looks at

void check_magic(const unsigned char* p, size_t n, const std::string& ctx) {
  const size_t seen = std::min(n, sizeof(kMagic));
  size_t same = 0;
  for (size_t i = 0; i < seen; ++i) same += p[i] == kMagic[i];
  if (same == seen) return;
  if (n >= sizeof(kMagic) && same + 2 >= sizeof(kMagic))
    throw Error(metafew::detail::concat(
        ctx,
        "is not a metafew checkpoint (its first 8 bytes differ from the "
        "checkpoint magic in only ",
        sizeof(kMagic) - same, sizeof(kMagic) - same == 1 ? " byte" : " bytes", ": a damaged checkpoint?)"));
  throw Error(ctx + "is not a metafew checkpoint (" + describe_foreign(p, n) + ")");
}

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

FilePtr open_checkpoint_file(const std::string& path, const std::string& ctx) {
  std::error_code ec;
  if (require_existing_path(path, ctx)) {
    std::string hint;
    if (fs::is_regular_file(fs::path(path) / "last", ec))
      hint = " (a run folder? its latest checkpoint is " + (fs::path(path) / "last").string() + ")";
    throw Error(ctx + "is a folder, expected a checkpoint file" + hint);
  }
  MF_CHECK(fs::is_regular_file(path, ec), ctx, "is not a regular file");
  FilePtr f(std::fopen(path.c_str(), "rb"));
  if (!f) {
    const int err = errno;
    throw Error(ctx + "cannot open it: " + std::generic_category().message(err));
  }
  return f;
}

// Appends to `out` until it holds `limit` bytes or the file ends. Reads in chunks of at most 4 MiB, and of
// the reserved room where the caller reserved the file's size (a zero-filled 4 MiB resize per call cost a
// small checkpoint's load 30 times its reading).
void read_into(std::FILE* f, std::vector<unsigned char>& out, size_t limit, const std::string& ctx) {
  constexpr size_t kChunk = size_t(1) << 22;
  while (out.size() < limit) {
    const size_t room = std::max<size_t>(out.capacity() - out.size(), 4096);
    const size_t want = std::min({kChunk, limit - out.size(), room});
    const size_t have = out.size();
    out.resize(have + want);
    const size_t got = std::fread(out.data() + have, 1, want, f);
    out.resize(have + got);
    if (got < want) break;
  }
  if (std::ferror(f)) {
    const int err = errno;
    throw Error(ctx + "cannot read it: " + std::generic_category().message(err));
  }
}

// The part of an nlohmann exception message after its "[json.exception...] " tag.
std::string json_reason(const std::exception& e) {
  const std::string s = e.what();
  const size_t tag = s.find("] ");
  return tag == std::string::npos ? s : s.substr(tag + 2);
}

const json& require_field(const json& obj, const char* key, const std::string& where) {
  auto it = obj.find(key);
  MF_CHECK(it != obj.end(), where, " has no \"", key, "\"");
  return *it;
}

uint64_t require_unsigned(const json& obj, const char* key, const std::string& where) {
  const json& v = require_field(obj, key, where);
  MF_CHECK(v.is_number_unsigned(), where, ": \"", key, "\" is ", v.dump(),
           ", expected a non-negative integer");
  return v.get<uint64_t>();
}

NamedTensor read_entry(const json& e, size_t index, const unsigned char* data, uint64_t data_bytes,
                       uint64_t& prev_end, std::unordered_set<std::string>& names, const std::string& ctx) {
  std::string where = metafew::detail::concat(ctx, "tensor table entry ", index);
  MF_CHECK(e.is_object(), where, " is a JSON ", e.type_name(),
           ", expected an object with name, dtype, shape, offset and bytes");
  const json& jname = require_field(e, "name", where);
  MF_CHECK(jname.is_string() && !jname.get_ref<const std::string&>().empty(), where, ": \"name\" is ",
           jname.dump(), ", expected a non-empty string");
  const std::string name = jname.get<std::string>();
  where = metafew::detail::concat(ctx, "tensor \"", name, "\" (table entry ", index, ")");
  MF_CHECK(names.insert(name).second, where, ": the name appears twice in the tensor table");

  const json& jdtype = require_field(e, "dtype", where);
  const std::optional<DType> dtype =
      jdtype.is_string() ? parse_dtype(jdtype.get<std::string>()) : std::nullopt;
  MF_CHECK(dtype.has_value(), where, ": dtype ", jdtype.dump(), " is not one of \"f32\", \"f64\", \"i32\"");
  const uint64_t elem = tensor::dtype_size(*dtype);

  const json& jshape = require_field(e, "shape", where);
  MF_CHECK(jshape.is_array(), where, ": shape is ", jshape.dump(), ", expected an array of extents");
  tensor::Shape shape;
  constexpr uint64_t kMaxExtent = uint64_t(std::numeric_limits<int64_t>::max()) / 8;
  for (const json& d : jshape) {
    MF_CHECK(d.is_number_unsigned() && d.get<uint64_t>() <= kMaxExtent, where, ": shape ", jshape.dump(),
             " has the extent ", d.dump(), ", expected integers in [0, ", kMaxExtent, "]");
    shape.push_back(d.get<int64_t>());
  }
  // numel * elem must fit in an int64 (Tensor's numel) for every dtype; a zero extent makes any shape empty.
  uint64_t numel = 1;
  if (std::find(shape.begin(), shape.end(), 0) != shape.end()) {
    numel = 0;
  } else {
    for (int64_t d : shape) {
      const uint64_t extent = static_cast<uint64_t>(d);
      MF_CHECK(numel <= kMaxExtent / extent, where, ": shape ", jshape.dump(), " has more than ", kMaxExtent,
               " elements");
      numel *= extent;
    }
  }

  const uint64_t offset = require_unsigned(e, "offset", where);
  const uint64_t bytes = require_unsigned(e, "bytes", where);
  MF_CHECK(bytes == numel * elem, where, ": declares ", bytes, " bytes, but a ", tensor::dtype_name(*dtype),
           " tensor of shape ", jshape.dump(), " has ", numel * elem);
  MF_CHECK(offset % kAlign == 0, where, ": offset ", offset, " is not a multiple of ", kAlign);
  MF_CHECK(offset >= prev_end, where, ": starts at offset ", offset,
           ", inside the previous tensor (which ends at ", prev_end,
           "); tensors must follow each other in order without overlapping");
  MF_CHECK(offset <= data_bytes && bytes <= data_bytes - offset, where, ": its ", bytes, " bytes at offset ",
           offset, " lie outside the ", data_bytes, "-byte data section");
  prev_end = offset + bytes;

  Tensor t = Tensor::empty(shape, *dtype);
  if (bytes > 0) std::memcpy(t.raw_data(), data + offset, bytes);
  return {name, std::move(t)};
}

}  // namespace

namespace detail {

void Checksum::add_word(uint64_t w) {
  uint64_t& v = lanes_[words_ & 3];
  v = checksum_round(v, w);
  ++words_;
}

void Checksum::update(const void* data, size_t n) {
  if (n == 0) return;
  const auto* p = static_cast<const unsigned char*>(data);
  bytes_ += n;
  if (pending_bytes_ > 0) {
    const size_t take = std::min(n, pending_.size() - pending_bytes_);
    std::memcpy(pending_.data() + pending_bytes_, p, take);
    pending_bytes_ += take;
    p += take;
    n -= take;
    if (pending_bytes_ < pending_.size()) return;
    add_word(load_le64(pending_.data()));
    pending_bytes_ = 0;
  }
  while (n >= 8 && (words_ & 3) != 0) {
    add_word(load_le64(p));
    p += 8;
    n -= 8;
  }
  if (n >= 32) {
    // Whole blocks of four words: lane i takes word i of each block; the four chains are independent.
    uint64_t a = lanes_[0], b = lanes_[1], c = lanes_[2], d = lanes_[3];
    const size_t blocks = n / 32;
    for (size_t k = 0; k < blocks; ++k, p += 32) {
      a = checksum_round(a, load_le64(p));
      b = checksum_round(b, load_le64(p + 8));
      c = checksum_round(c, load_le64(p + 16));
      d = checksum_round(d, load_le64(p + 24));
    }
    lanes_ = {a, b, c, d};
    words_ += 4 * blocks;
    n -= 32 * blocks;
  }
  while (n >= 8) {
    add_word(load_le64(p));
    p += 8;
    n -= 8;
  }
  if (n > 0) std::memcpy(pending_.data(), p, n);
  pending_bytes_ = n;
}

uint64_t Checksum::digest() const {
  Checksum c = *this;
  if (c.pending_bytes_ > 0) {
    std::fill(c.pending_.begin() + static_cast<std::ptrdiff_t>(c.pending_bytes_), c.pending_.end(), 0);
    c.add_word(load_le64(c.pending_.data()));
  }
  uint64_t h = core::mix64(c.bytes_ ^ kChecksumK);
  for (uint64_t v : c.lanes_) h = core::mix64(h ^ v);
  return h;
}

}  // namespace detail

void save_checkpoint(const std::string& path, const Checkpoint& ckpt) {
  const std::string ctx = "checkpoint " + path;

  // Everything is checked and the header laid out before the temporary file exists.
  json table = json::array();
  std::vector<uint64_t> offsets, sizes;
  std::unordered_set<std::string> names;
  uint64_t offset = 0;
  for (size_t i = 0; i < ckpt.tensors.size(); ++i) {
    const NamedTensor& nt = ckpt.tensors[i];
    MF_CHECK(!nt.name.empty(), ctx, ": tensor ", i, " has an empty name; nothing was written");
    MF_CHECK(names.insert(nt.name).second, ctx, ": two tensors are named \"", nt.name,
             "\"; nothing was written");
    MF_CHECK(nt.tensor.defined(), ctx, ": tensor \"", nt.name,
             "\" is undefined (it has no storage); nothing was written");
    const uint64_t bytes = static_cast<uint64_t>(nt.tensor.numel()) * tensor::dtype_size(nt.tensor.dtype());
    MF_CHECK(nt.tensor.storage()->bytes() >= bytes, ctx, ": tensor \"", nt.name, "\" has ",
             nt.tensor.storage()->bytes(), " bytes of storage for ", bytes, " bytes of elements");
    offset = align_up(offset);
    table.push_back({{"name", nt.name},
                     {"dtype", tensor::dtype_name(nt.tensor.dtype())},
                     {"shape", nt.tensor.shape()},
                     {"offset", offset},
                     {"bytes", bytes}});
    offsets.push_back(offset);
    sizes.push_back(bytes);
    offset += bytes;
  }
  const uint64_t data_bytes = offset;
  const json doc = {{"header", ckpt.header}, {"tensors", std::move(table)}, {"data_bytes", data_bytes}};
  std::string text;
  try {
    text = doc.dump();
  } catch (const json::exception& e) {
    throw Error(ctx + ": the header cannot be written as JSON: " + json_reason(e));
  }

  AtomicFile out(path, ctx);
  detail::Checksum sum;
  auto put = [&](const void* p, size_t n) {
    sum.update(p, n);
    out.write(p, n);
  };
  static constexpr unsigned char kZeros[kAlign] = {};
  auto pad_to = [&](uint64_t& pos, uint64_t target) {
    put(kZeros, static_cast<size_t>(target - pos));
    pos = target;
  };

  unsigned char fixed[kFixedBytes];
  std::memcpy(fixed, kMagic, sizeof(kMagic));
  store_le(fixed + 8, kVersion, 4);
  store_le(fixed + 12, text.size(), 8);
  put(fixed, sizeof(fixed));
  put(text.data(), text.size());
  uint64_t pos = kFixedBytes + text.size();
  const uint64_t data_start = align_up(pos);
  pad_to(pos, data_start);
  for (size_t i = 0; i < ckpt.tensors.size(); ++i) {
    pad_to(pos, data_start + offsets[i]);
    if (sizes[i] > 0) put(ckpt.tensors[i].tensor.raw_data(), static_cast<size_t>(sizes[i]));
    pos += sizes[i];
  }
  unsigned char trailer[kTrailerBytes];
  store_le(trailer, sum.digest(), 8);
  out.write(trailer, sizeof(trailer));
  out.commit();
}

Checkpoint load_checkpoint(const std::string& path) {
  const std::string ctx = "checkpoint " + path + ": ";
  // Note [Checkpoint format] gives the order of these checks. The magic is checked on the first bytes
  // alone, so that a large foreign file handed over by mistake is not read whole.
  FilePtr f = open_checkpoint_file(path, ctx);
  std::error_code ec;
  const uintmax_t size_hint = fs::file_size(path, ec);
  std::vector<unsigned char> file;
  file.reserve(ec ? 0 : static_cast<size_t>(size_hint));
  read_into(f.get(), file, kForeignProbeBytes, ctx);
  MF_CHECK(!file.empty(), ctx, "is empty (0 bytes)");
  check_magic(file.data(), file.size(), ctx);
  read_into(f.get(), file, std::numeric_limits<size_t>::max(), ctx);
  f.reset();
  const unsigned char* p = file.data();
  const size_t n = file.size();

  MF_CHECK(n >= kFixedBytes, ctx, "is truncated: ", n, " bytes, shorter than the ", kFixedBytes,
           "-byte fixed header");
  const uint32_t version = load_le32(p + 8);
  MF_CHECK(version == kVersion, ctx, "has format version ", version,
           ", but this build of metafew reads version ", kVersion,
           version > kVersion ? " (it was written by a newer metafew)" : "");
  const uint64_t header_bytes = load_le64(p + 12);
  MF_CHECK(n >= kFixedBytes + kTrailerBytes && header_bytes <= n - kFixedBytes - kTrailerBytes, ctx,
           "is truncated: the file has ", n, " bytes, too few for the ", header_bytes,
           "-byte JSON header its fixed header declares, the fixed header and the checksum");
  const char* header_begin = reinterpret_cast<const char*>(p + kFixedBytes);
  const char* header_end = header_begin + header_bytes;
  const uint64_t data_start = align_up(kFixedBytes + header_bytes);

  json doc = json::parse(header_begin, header_end, nullptr, /*allow_exceptions=*/false);
  std::optional<uint64_t> declared_size;
  if (doc.is_object()) {
    auto it = doc.find("data_bytes");
    if (it != doc.end() && it->is_number_unsigned()) {
      const uint64_t d = it->get<uint64_t>();
      const uint64_t limit = std::numeric_limits<uint64_t>::max() - data_start - kTrailerBytes;
      declared_size = d <= limit ? data_start + d + kTrailerBytes : std::numeric_limits<uint64_t>::max();
    }
  }

  const uint64_t stored = load_le64(p + n - kTrailerBytes);
  const uint64_t computed = detail::checksum64(p, n - kTrailerBytes);
  if (stored != computed) {
    if (declared_size && *declared_size > n)
      throw Error(metafew::detail::concat(ctx, "is truncated: the file has ", n,
                                          " bytes, its header declares ", *declared_size,
                                          " (and the checksum does not match)"));
    throw Error(metafew::detail::concat(ctx, "is damaged: checksum mismatch (stored ", hex64(stored),
                                        ", computed ", hex64(computed),
                                        "); it was corrupted or modified after it was written"));
  }

  if (doc.is_discarded()) {
    std::string reason = "unknown parse error";
    try {
      const json strict = json::parse(header_begin, header_end);
    } catch (const json::exception& e) {
      reason = json_reason(e);
    }
    throw Error(ctx + "its JSON header is not valid JSON: " + reason);
  }
  MF_CHECK(doc.is_object(), ctx, "its JSON header is a JSON ", doc.type_name(), ", expected an object");
  const std::string where = ctx + "its JSON header";
  const uint64_t data_bytes = require_unsigned(doc, "data_bytes", where);
  MF_CHECK(declared_size && *declared_size == n, ctx, "is inconsistent: the file has ", n,
           " bytes, its header declares ", declared_size.value_or(0));
  const json& table = require_field(doc, "tensors", where);
  MF_CHECK(table.is_array(), where, ": \"tensors\" is a JSON ", table.type_name(), ", expected an array");
  require_field(doc, "header", where);

  Checkpoint ckpt;
  ckpt.source = path;
  ckpt.tensors.reserve(table.size());
  std::unordered_set<std::string> names;
  uint64_t prev_end = 0;
  for (size_t i = 0; i < table.size(); ++i)
    ckpt.tensors.push_back(read_entry(table[i], i, p + data_start, data_bytes, prev_end, names, ctx));
  ckpt.header = std::move(doc["header"]);
  return ckpt;
}

const tensor::Tensor& find_tensor(const Checkpoint& ckpt, const std::string& name) {
  for (const NamedTensor& nt : ckpt.tensors)
    if (nt.name == name) return nt.tensor;
  std::string held;
  constexpr size_t kListed = 16;
  for (size_t i = 0; i < ckpt.tensors.size() && i < kListed; ++i)
    held += (i ? ", " : "") + ckpt.tensors[i].name;
  if (ckpt.tensors.size() > kListed) held += ", ...";
  const std::string file = ckpt.source.empty() ? "checkpoint" : "checkpoint " + ckpt.source;
  throw Error(metafew::detail::concat(file, ": has no tensor named \"", name, "\"; it holds ",
                                      ckpt.tensors.size(), " tensor", ckpt.tensors.size() == 1 ? "" : "s",
                                      ckpt.tensors.empty() ? "" : ": ", held));
}

}  // namespace metafew::io
