#include "data/dataset.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <set>
#include <unordered_map>

#include "core/error.h"
#include "core/rng.h"
#include "data/cache.h"
#include "data/glyphs.h"
#include "data/hash.h"
#include "data/scan.h"

// Note [Omniglot splits]
// Two splits are offered side by side; an episode sampler picks one by name.
//  * Lake's: "background" (30 alphabets, 964 characters) and "evaluation" (20 alphabets, 659), as published,
//    unrotated by default.
//  * Vinyals-style, as in MAML's data code: the 1623 characters (background then evaluation, each sorted by
//    "alphabet/character") are shuffled by core::Rng::from(split_seed, {hash("vinyals")}) with split_seed = 1
//    by default, and cut into 1100 "train", 100 "val" and 423 "test" characters (MAML's numbers: 1200
//    training characters of which 100 are held out for validation). Each split is then sorted by class index.
//    Every split gets the 90/180/270-degree rotations as new classes by default (4400 / 400 / 1692 classes),
//    as MAML's code does; OpenOptions::rotated_splits turns them off per split. Python's random.seed(1)
//    shuffle cannot be reproduced (it also depended on os.listdir order), so the membership differs from
//    MAML's while the sizes and the procedure match. write_split_file records the exact membership; a run
//    that must be compared with another should pass the same file (OpenOptions::split_file).
//  With fewer than 1623 characters (a partial copy, a test folder) the three parts keep the same proportions:
//  train = round(n * 1100 / 1623), val = round(n * 100 / 1623), test = the rest.
//  * For Lake's protocol (20-way one-shot within an alphabet; data/episode.h, Within::alphabet) choices are
//    made on alphabets of images_background held out from training: "background-val" holds 5 of its 30
//    alphabets, "background-train" the other 25 (unrotated by default, like "background"). The 5 are drawn by
//    core::Rng::from(split_seed, {hash("background-val")}) from the background alphabets with at least 20
//    characters (so that every one of them can hold a 20-way trial). With split_seed = 1 they are Bengali,
//    Japanese_(katakana), Latin, Malay_(Jawi_-_Arabic) and Tifinagh: 214 characters, leaving 750 to train on
//    (`metafew data` lists each split's alphabets). With fewer alphabets (a partial copy), round(n * 5 / 30)
//    of them, at least 1 and at most n - 1; no such splits with a single background alphabet.
//
// Note [Ratio split]
// A class-per-folder dataset without train/val/test folders is split by class: the classes (sorted by name)
// are shuffled by Rng::from(split_seed, {hash("folder-ratio")}), then cut into round(n * r_train), round(n *
// r_val) and the rest (default 64 / 16 / 20 %, miniImageNet's proportions). Empty parts are dropped. With
// split folders the folders are the splits and the ratios are ignored.

namespace metafew::data {
namespace fs = std::filesystem;

const char* layout_name(Layout layout) {
  switch (layout) {
    case Layout::auto_detect:
      return "auto";
    case Layout::omniglot:
      return "omniglot";
    case Layout::folder:
      return "folder";
    case Layout::glyphs:
      return "glyphs";
  }
  return "?";
}

Layout parse_layout(const std::string& name) {
  for (Layout l : {Layout::auto_detect, Layout::omniglot, Layout::folder, Layout::glyphs})
    if (name == layout_name(l)) return l;
  throw Error(::metafew::detail::concat("--layout must be auto, omniglot, folder or glyphs, got '", name, "'"),
              ErrorKind::usage);
}

std::string default_cache_dir() {
  if (const char* d = std::getenv("METAFEW_CACHE_DIR"); d && *d) return d;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return (fs::path(x) / "metafew").string();
  if (const char* h = std::getenv("HOME"); h && *h) return (fs::path(h) / ".cache" / "metafew").string();
  return "";
}

// ---------------------------------------------------------------------------------------------------------
// Dataset

Dataset::Dataset(Contents contents) : c_(std::move(contents)) {
  check_image_spec(c_.image, "Dataset");
  int64_t next = 0;
  for (const ClassEntry& c : c_.classes) {
    MF_CHECK(c.first_image == next && c.image_count > 0, "Dataset: class '", c.name, "' covers images [",
             c.first_image, ", +", c.image_count, "), expected a non-empty range starting at ", next);
    next += c.image_count;
  }
  image_count_ = next;
  MF_CHECK(c_.drawers.empty() || static_cast<int64_t>(c_.drawers.size()) == image_count_, "Dataset: ",
           c_.drawers.size(), " drawer numbers for ", image_count_, " images");
  MF_CHECK(static_cast<int64_t>(c_.pixels.size()) == image_count_ * c_.image.pixels(),
           "Dataset: ", c_.pixels.size(), " pixel bytes for ", image_count_, " images of ", c_.image.pixels(),
           " bytes");
  for (Split& s : c_.splits) {
    s.images = 0;
    for (const SplitClass& sc : s.classes) {
      MF_CHECK(sc.base_class >= 0 && sc.base_class < base_class_count() && sc.quarter_turns >= 0 &&
                   sc.quarter_turns < 4,
               "Dataset: split '", s.name, "' refers to class ", sc.base_class, " turned ", sc.quarter_turns,
               " times; there are ", base_class_count(), " classes and 4 rotations");
      MF_CHECK(sc.quarter_turns == 0 || c_.image.height == c_.image.width, "Dataset: split '", s.name,
               "' rotates classes but images are ", c_.image.height, "x", c_.image.width,
               "; rotations need square images");
      s.images += class_size(sc);
    }
  }
  // Note [The split "all"]: every class of the dataset, unrotated, whatever its splits: what a user means by
  // "evaluate on this new dataset" (eval --split all), without building a test/ folder by hand. A real split
  // named "all" (a folder or a split file's) takes precedence. It is not listed among the splits.
  all_.name = "all";
  for (int64_t i = 0; i < base_class_count(); ++i) all_.classes.push_back({static_cast<int32_t>(i), 0});
  all_.images = image_count_;
}

const ClassEntry& Dataset::base_class(int64_t i) const {
  MF_CHECK(i >= 0 && i < base_class_count(), "Dataset::base_class: index ", i, " out of [0, ",
           base_class_count(), ")");
  return c_.classes[static_cast<size_t>(i)];
}

std::vector<std::string> Dataset::split_names() const {
  std::vector<std::string> out;
  for (const Split& s : c_.splits) out.push_back(s.name);
  return out;
}

bool Dataset::has_split(const std::string& name) const {
  return name == "all" ||
         std::any_of(c_.splits.begin(), c_.splits.end(), [&](const Split& s) { return s.name == name; });
}

const Split& Dataset::split(const std::string& name) const {
  for (const Split& s : c_.splits)
    if (s.name == name) return s;
  if (name == "all") return all_;
  std::string names;
  for (const Split& s : c_.splits) names += (names.empty() ? "" : ", ") + s.name;
  throw Error(::metafew::detail::concat("data: dataset ", c_.source, " has no split '", name,
                                        "'; its splits are: ", names, " (and 'all': every class)"),
              ErrorKind::usage);
}

std::string Dataset::class_name(const SplitClass& c, bool rotated) const {
  std::string n = base_class(c.base_class).name;
  if (rotated) n += "/rot" + std::to_string(90 * c.quarter_turns);
  return n;
}

std::string omniglot_alphabet(const std::string& class_name) { return class_name.substr(0, class_name.find('/')); }

std::string Dataset::alphabet(int64_t cls) const {
  return c_.layout == Layout::omniglot ? omniglot_alphabet(base_class(cls).name) : "";
}

int32_t Dataset::drawer(int64_t base_image) const {
  MF_CHECK(base_image >= 0 && base_image < image_count_, "Dataset::drawer: image ", base_image, " out of [0, ",
           image_count_, ")");
  return c_.drawers.empty() ? 0 : c_.drawers[static_cast<size_t>(base_image)];
}

const uint8_t* Dataset::image_u8(int64_t base_image) const {
  MF_CHECK(base_image >= 0 && base_image < image_count_, "Dataset::image_u8: image ", base_image,
           " out of [0, ", image_count_, ")");
  return c_.pixels.data() + base_image * c_.image.pixels();
}

void Dataset::read_image(int64_t base_image, int32_t quarter_turns, float* dst) const {
  static const auto lut = [] {
    std::array<float, 256> t{};
    for (int i = 0; i < 256; ++i) t[static_cast<size_t>(i)] = static_cast<float>(i) / 255.0f;
    return t;
  }();
  const uint8_t* src = image_u8(base_image);
  const int64_t h = c_.image.height, w = c_.image.width, plane = h * w;
  const int32_t k = ((quarter_turns % 4) + 4) % 4;
  MF_CHECK(k == 0 || h == w, "Dataset::read_image: rotation needs square images, got ", h, "x", w);
  for (int64_t ch = 0; ch < c_.image.channels; ++ch) {
    const uint8_t* s = src + ch * plane;
    float* d = dst + ch * plane;
    // Counter-clockwise quarter turns, numpy.rot90's convention.
    for (int64_t i = 0; i < h; ++i)
      for (int64_t j = 0; j < w; ++j) {
        int64_t si = i, sj = j;
        if (k == 1)
          si = j, sj = w - 1 - i;
        else if (k == 2)
          si = h - 1 - i, sj = w - 1 - j;
        else if (k == 3)
          si = h - 1 - j, sj = i;
        d[i * w + j] = lut[s[si * w + sj]];
      }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Splits

std::array<std::vector<int32_t>, 3> vinyals_split(int64_t class_count, uint64_t seed) {
  std::vector<int32_t> order(static_cast<size_t>(class_count));
  std::iota(order.begin(), order.end(), 0);
  core::Rng rng = core::Rng::from(seed, {hash_string("vinyals")});
  rng.shuffle(order.begin(), order.end());
  int64_t n_train = 1100, n_val = 100;
  if (class_count != 1623) {
    n_train = std::llround(static_cast<double>(class_count) * 1100.0 / 1623.0);
    n_val = std::min<int64_t>(class_count - n_train,
                              std::llround(static_cast<double>(class_count) * 100.0 / 1623.0));
  }
  std::array<std::vector<int32_t>, 3> out;
  out[0].assign(order.begin(), order.begin() + n_train);
  out[1].assign(order.begin() + n_train, order.begin() + n_train + n_val);
  out[2].assign(order.begin() + n_train + n_val, order.end());
  for (auto& part : out) std::sort(part.begin(), part.end());
  return out;
}

std::vector<std::string> background_val_alphabets(const std::vector<std::pair<std::string, int64_t>>& alphabets,
                                                  uint64_t seed) {
  const auto n = static_cast<int64_t>(alphabets.size());
  if (n < 2) return {};
  const int64_t k = std::clamp<int64_t>(std::llround(static_cast<double>(n) * 5.0 / 30.0), 1, n - 1);
  std::vector<std::string> candidates, all;
  for (const auto& [name, characters] : alphabets) {
    all.push_back(name);
    if (characters >= 20) candidates.push_back(name);
  }
  if (static_cast<int64_t>(candidates.size()) < k) candidates = all;
  std::sort(candidates.begin(), candidates.end());
  core::Rng rng = core::Rng::from(seed, {hash_string("background-val")});
  rng.shuffle(candidates.begin(), candidates.end());
  candidates.resize(static_cast<size_t>(k));
  std::sort(candidates.begin(), candidates.end());
  return candidates;
}

namespace {

Split make_split(const std::string& name, const std::vector<int32_t>& classes, bool rotated) {
  Split s;
  s.name = name;
  s.rotated = rotated;
  for (int32_t c : classes)
    for (int32_t k = 0; k < (rotated ? 4 : 1); ++k) s.classes.push_back({c, k});
  return s;
}

bool is_rotated(const std::string& split, const std::optional<std::vector<std::string>>& chosen,
                std::initializer_list<const char*> defaults) {
  if (chosen) return std::find(chosen->begin(), chosen->end(), split) != chosen->end();
  for (const char* d : defaults)
    if (split == d) return true;
  return false;
}

std::vector<Split> derive_splits(const detail::SourceListing& listing, const OpenOptions& opt) {
  std::vector<Split> out;
  const auto n = static_cast<int64_t>(listing.classes.size());
  std::map<std::string, std::vector<int32_t>> groups;
  for (int64_t i = 0; i < n; ++i)
    groups[listing.classes[static_cast<size_t>(i)].group].push_back(static_cast<int32_t>(i));
  if (listing.layout == Layout::omniglot) {
    const auto parts = vinyals_split(n, opt.split_seed);
    const char* names[3] = {"train", "val", "test"};
    for (int p = 0; p < 3; ++p)
      if (!parts[static_cast<size_t>(p)].empty())
        out.push_back(make_split(names[p], parts[static_cast<size_t>(p)],
                                 is_rotated(names[p], opt.rotated_splits, {"train", "val", "test"})));
    for (const char* g : {"background", "evaluation"}) {
      if (!groups.count(g)) continue;
      out.push_back(make_split(g, groups[g], is_rotated(g, opt.rotated_splits, {})));
      if (std::string(g) != "background") continue;
      // Lake's protocol's own validation alphabets (Note [Omniglot splits]).
      std::map<std::string, int64_t> characters;
      auto alphabet_of = [&](int32_t c) { return omniglot_alphabet(listing.classes[static_cast<size_t>(c)].name); };
      for (int32_t c : groups[g]) ++characters[alphabet_of(c)];
      const std::vector<std::string> held = background_val_alphabets({characters.begin(), characters.end()},
                                                                      opt.split_seed);
      if (held.empty()) continue;
      std::vector<int32_t> part[2];
      for (int32_t c : groups[g])
        part[std::binary_search(held.begin(), held.end(), alphabet_of(c)) ? 1 : 0].push_back(c);
      for (int p = 0; p < 2; ++p) {
        const std::string name = p == 0 ? "background-train" : "background-val";
        out.push_back(make_split(name, part[p], is_rotated(name, opt.rotated_splits, {})));
      }
    }
    return out;
  }
  if (!groups.count("")) {  // ROOT/{train,val,test}/<class>
    for (const char* g : {"train", "val", "test"})
      if (groups.count(g)) out.push_back(make_split(g, groups[g], is_rotated(g, opt.rotated_splits, {})));
    return out;
  }
  const auto& r = opt.folder_ratios;
  MF_USAGE_CHECK(r[0] >= 0 && r[1] >= 0 && r[2] >= 0 && std::abs(r[0] + r[1] + r[2] - 1.0) < 1e-6,
                 "data: folder split ratios must be non-negative and sum to 1, got ", r[0], " / ", r[1],
                 " / ", r[2]);
  std::vector<int32_t> order = groups[""];
  core::Rng rng = core::Rng::from(opt.split_seed, {hash_string("folder-ratio")});
  rng.shuffle(order.begin(), order.end());
  const int64_t n_train = std::min<int64_t>(n, std::llround(static_cast<double>(n) * r[0]));
  const int64_t n_val = std::min<int64_t>(n - n_train, std::llround(static_cast<double>(n) * r[1]));
  const std::vector<int32_t> parts[3] = {{order.begin(), order.begin() + n_train},
                                         {order.begin() + n_train, order.begin() + n_train + n_val},
                                         {order.begin() + n_train + n_val, order.end()}};
  const char* names[3] = {"train", "val", "test"};
  for (int p = 0; p < 3; ++p) {
    std::vector<int32_t> part = parts[p];
    std::sort(part.begin(), part.end());
    if (!part.empty())
      out.push_back(make_split(names[p], part, is_rotated(names[p], opt.rotated_splits, {})));
  }
  return out;
}

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t\r\n");
  if (a == std::string::npos) return "";
  const size_t b = s.find_last_not_of(" \t\r\n");
  return s.substr(a, b - a + 1);
}

// Decodes every listed image in parallel into one pixel block, in listing order. The first failure in listing
// order is rethrown after the parallel region, so the error does not depend on the thread count.
std::vector<uint8_t> decode_all(const detail::SourceListing& listing, const ImageSpec& spec, bool invert) {
  std::vector<const detail::SourceFile*> files;
  for (const auto& c : listing.classes)
    for (const auto& f : c.files) files.push_back(&f);
  const auto n = static_cast<int64_t>(files.size());
  const int64_t px = spec.pixels();
  std::vector<uint8_t> pixels(static_cast<size_t>(n * px));
  std::vector<std::string> errors(static_cast<size_t>(n));
#pragma omp parallel for schedule(dynamic, 32)
  for (int64_t i = 0; i < n; ++i) {
    try {
      const DecodedImage img = decode_image_file(files[static_cast<size_t>(i)]->path, spec.channels);
      preprocess_image(img, spec, invert, pixels.data() + i * px);
    } catch (const std::exception& e) {
      errors[static_cast<size_t>(i)] = e.what();
    }
  }
  for (const std::string& e : errors)
    if (!e.empty()) throw Error(e);
  return pixels;
}

std::string preprocessing_line(const ImageSpec& im, bool invert, const char* extra = nullptr) {
  std::string s =
      "decoded to " + std::string(im.channels == 1 ? "grayscale" : "RGB") + ", resized to " +
      std::to_string(im.height) + "x" + std::to_string(im.width) +
      " by area averaging after a centre crop to that aspect ratio (the shorter side kept, any source size), "
      "quantised to 8 bits, served as f32 in "
      "[0, 1]";
  if (invert) s += ", inverted (strokes 1.0, background 0.0)";
  if (extra) s += extra;
  return s;
}

// Omniglot's file names are <character id>_<drawer>.png ("0965_07.png": drawer 7); 0 for any other name.
int32_t omniglot_drawer(const std::string& path) {
  std::string stem = fs::path(path).stem().string();
  const size_t underscore = stem.rfind('_');
  if (underscore == std::string::npos) return 0;
  const std::string digits = stem.substr(underscore + 1);
  if (digits.empty() || digits.size() > 4 ||
      !std::all_of(digits.begin(), digits.end(), [](char ch) { return ch >= '0' && ch <= '9'; }))
    return 0;
  return static_cast<int32_t>(std::stoi(digits));
}

std::shared_ptr<const Dataset> open_folder(const std::string& root, const OpenOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  detail::SourceListing listing = detail::scan_source(root, opt.layout);
  const bool invert = opt.invert.value_or(listing.layout == Layout::omniglot);
  const uint64_t key = detail::listing_key(listing, opt.image, invert);

  Dataset::Contents c;
  c.source = root;
  c.layout = listing.layout;
  c.image = opt.image;
  c.preprocessing = preprocessing_line(opt.image, invert);
  c.scan = listing.report;
  // Note [Colour read as grayscale]: with channels 1 a colour image is reduced to its luminance, which is
  // what a grayscale model needs but loses what a user may have meant to keep. A few files (the first of up
  // to 8 classes spread over the listing) are decoded to see whether the folder holds colour, so the
  // commands can warn; the same files whether or not the cache is used.
  if (opt.image.channels == 1 && !listing.classes.empty()) {
    const size_t n = listing.classes.size(), samples = std::min<size_t>(n, 8);
    for (size_t i = 0; i < samples; ++i) {
      const detail::SourceClass& sc = listing.classes[i * n / samples];
      try {
        const DecodedImage img = decode_image_file(sc.files.front().path, 1);
        ++c.scan.colour_sampled;
        c.scan.colour_found += img.source_channels == 3;
      } catch (const Error&) {
        // decode_all names the file if it is really unreadable
      }
    }
  }
  c.cache.key = key;
  for (const auto& sc : listing.classes) {
    const int64_t first = c.classes.empty() ? 0 : c.classes.back().first_image + c.classes.back().image_count;
    c.classes.push_back({sc.name, first, static_cast<int64_t>(sc.files.size())});
    if (listing.layout == Layout::omniglot)
      for (const auto& f : sc.files) c.drawers.push_back(omniglot_drawer(f.path));
  }

  const std::string cache_dir = opt.cache_dir.empty() ? default_cache_dir() : opt.cache_dir;
  bool loaded = false;
  std::string why = "off";
  if (opt.use_cache && !cache_dir.empty()) {
    c.cache.path = detail::cache_file_path(cache_dir, root, listing.layout, opt.image, invert);
    if (auto hit = detail::read_cache(c.cache.path, key, opt.image, why)) {
      bool same = hit->classes.size() == c.classes.size();
      for (size_t i = 0; same && i < c.classes.size(); ++i)
        same = hit->classes[i].name == c.classes[i].name &&
               hit->classes[i].image_count == c.classes[i].image_count;
      if (same) {
        c.pixels = std::move(hit->pixels);
        c.cache.state = "hit";
        c.cache.bytes = static_cast<int64_t>(fs::file_size(c.cache.path));
        loaded = true;
      } else {
        why = "stale: class table differs from the folder";
      }
    }
  }
  if (!loaded) {
    c.pixels = decode_all(listing, opt.image, invert);
    if (opt.use_cache && !cache_dir.empty()) {
      try {
        c.cache.bytes = detail::write_cache(c.cache.path, key, opt.image, c.classes, c.pixels);
        c.cache.state = why == "absent" ? "built" : "rebuilt (" + why + ")";
      } catch (const Error& e) {
        c.cache.state = std::string("write failed (") + e.what() + ")";
      }
    }
  }
  if (!opt.split_file.empty())
    c.splits = read_split_file(opt.split_file, c.classes, opt.image);
  else
    c.splits = derive_splits(listing, opt);
  c.load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return std::make_shared<const Dataset>(std::move(c));
}

}  // namespace

std::vector<Split> read_split_file(const std::string& path, const std::vector<ClassEntry>& classes,
                                   const ImageSpec& image) {
  std::ifstream in(path);
  MF_USAGE_CHECK(in.good(), "data: cannot open split file '", path, "'");
  std::unordered_map<std::string, int32_t> index;
  for (size_t i = 0; i < classes.size(); ++i) index.emplace(classes[i].name, static_cast<int32_t>(i));
  std::vector<Split> out;
  std::string line;
  for (int64_t lineno = 1; std::getline(in, line); ++lineno) {
    if (const size_t hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    line = trim(line);
    if (line.empty()) continue;
    if (line.front() == '[') {
      MF_USAGE_CHECK(line.back() == ']' && line.size() > 2, "data: split file '", path, "' line ", lineno,
                     ": expected a header like [train], got '", line, "'");
      const std::string name = line.substr(1, line.size() - 2);
      for (const Split& s : out)
        MF_USAGE_CHECK(s.name != name, "data: split file '", path, "' line ", lineno, ": split '", name,
                       "' appears twice");
      out.push_back(Split{name, {}, false, 0});
      continue;
    }
    MF_USAGE_CHECK(!out.empty(), "data: split file '", path, "' line ", lineno, ": class '", line,
                   "' before any [split] header");
    int32_t turns = 0;
    std::string name = line;
    if (auto it = index.find(line); it == index.end()) {
      const size_t slash = line.rfind('/');
      const std::string suffix = slash == std::string::npos ? "" : line.substr(slash + 1);
      const std::map<std::string, int32_t> rots = {{"rot0", 0}, {"rot90", 1}, {"rot180", 2}, {"rot270", 3}};
      MF_USAGE_CHECK(
          rots.count(suffix) && index.count(line.substr(0, slash)), "data: split file '", path, "' line ",
          lineno, ": unknown class '", line,
          "'; expected a class of the dataset, optionally followed by /rot0, /rot90, /rot180 or /rot270");
      turns = rots.at(suffix);
      name = line.substr(0, slash);
      out.back().rotated = true;
    }
    MF_USAGE_CHECK(turns == 0 || image.height == image.width, "data: split file '", path, "' line ", lineno,
                   ": rotation of non-square ", image.height, "x", image.width, " images");
    out.back().classes.push_back({index.at(name), turns});
  }
  MF_USAGE_CHECK(!out.empty(), "data: split file '", path, "' defines no split; expected [name] headers");
  return out;
}

void write_split_file(const Dataset& ds, const std::string& path) {
  std::ofstream out(path, std::ios::trunc);
  MF_USAGE_CHECK(out.good(), "data: cannot write split file '", path, "'");
  out << "# metafew class split of " << ds.source() << " (" << layout_name(ds.layout()) << ")\n";
  for (const Split& s : ds.splits()) {
    out << "[" << s.name << "]\n";
    // Rotated classes always carry their suffix (rot0 included), so a reader knows the split is rotated.
    for (const SplitClass& c : s.classes) out << ds.class_name(c, s.rotated) << "\n";
  }
  out.flush();
  MF_CHECK(out.good(), "data: error while writing split file '", path, "'");
}

std::shared_ptr<const Dataset> open_dataset(const std::string& spec, const OpenOptions& options) {
  check_image_spec(options.image, "open_dataset");
  const std::string builtin = "builtin:";
  if (spec.rfind(builtin, 0) == 0) {
    const std::string name = spec.substr(builtin.size());
    MF_USAGE_CHECK(name == "glyphs", "data: unknown built-in dataset '", spec,
                   "'; image datasets: builtin:glyphs (builtin:sinusoid is a regression family, see "
                   "data/sinusoid.h)");
    MF_USAGE_CHECK(options.layout == Layout::auto_detect || options.layout == Layout::glyphs,
                   "data: layout '", layout_name(options.layout), "' does not apply to ", spec);
    const auto t0 = std::chrono::steady_clock::now();
    Dataset::Contents c = glyph_contents(options.glyph_seed, options.image);
    if (!options.split_file.empty()) c.splits = read_split_file(options.split_file, c.classes, options.image);
    if (options.rotated_splits)
      for (Split& s : c.splits)
        if (!s.rotated && is_rotated(s.name, options.rotated_splits, {})) {
          std::vector<int32_t> base;
          for (const SplitClass& sc : s.classes) base.push_back(sc.base_class);
          s = make_split(s.name, base, true);
        }
    c.load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return std::make_shared<const Dataset>(std::move(c));
  }
  MF_USAGE_CHECK(options.layout != Layout::glyphs,
                 "data: layout glyphs is for builtin:glyphs, not the folder '", spec, "'");
  return open_folder(spec, options);
}

}  // namespace metafew::data
