#pragma once
// Datasets of images grouped in classes, with named class splits (ARCHITECTURE.md, data/).
//
// A Dataset is opened once from a folder (Omniglot or class-per-folder layout) or a built-in generator and is
// immutable afterwards, so any number of threads may read it. It stores every *base* image once, decoded,
// resized and quantised to 8 bits (CHW planes), grouped by base class; a split is a list of (base class,
// quarter turns) pairs, so a 90-degree rotation is a new class without a copy of its pixels.
//
//   auto ds = open_dataset("/data/omniglot", {});          // layout detected, cache used
//   EpisodeSampler train(ds, "train", {5, 1, 15}, seed);    // see data/episode.h
#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "data/image.h"

namespace metafew::data {

enum class Layout {
  auto_detect,  // omniglot when ROOT/images_background or ROOT/images_evaluation exists, else folder
  omniglot,     // ROOT/images_{background,evaluation}/<alphabet>/<character>/*.png
  folder,       // ROOT/<class>/<images> or ROOT/{train,val,test}/<class>/<images>
  glyphs,       // builtin:glyphs (data/glyphs.h)
};
const char* layout_name(Layout layout);
// "auto" | "omniglot" | "folder" | "glyphs"; throws (usage) naming the accepted values otherwise.
Layout parse_layout(const std::string& name);

// The default cache folder: $METAFEW_CACHE_DIR, else $XDG_CACHE_HOME/metafew, else $HOME/.cache/metafew;
// empty when none of those variables is set (the cache is then off).
std::string default_cache_dir();

struct OpenOptions {
  Layout layout = Layout::auto_detect;
  ImageSpec image;  // every image is resized to this (area averaging) and converted to its channel count
  // Cache folder; empty means default_cache_dir(). use_cache = false neither reads nor writes a cache.
  std::string cache_dir;
  bool use_cache = true;
  // When set, the splits are read from this file (format: write_split_file) instead of being derived.
  std::string split_file;
  // Seed of the derived class splits: Omniglot's Vinyals-style train/val/test and the folder ratio split.
  uint64_t split_seed = 1;
  // Splits whose classes are expanded with 90, 180 and 270 degree rotations as new classes. Unset: the
  // layout's default (Omniglot: train, val, test, as MAML's data code; folders and glyphs: none).
  std::optional<std::vector<std::string>> rotated_splits;
  // Folder layout without split folders: fractions of classes for train / val / test (Note [Ratio split]).
  std::array<double, 3> folder_ratios{0.64, 0.16, 0.20};
  // Invert intensities (v -> 1 - v). Unset: Omniglot yes (strokes 1.0, background 0.0), otherwise no.
  std::optional<bool> invert;
  // builtin:glyphs generator seed.
  uint64_t glyph_seed = 1;
};

// A class as found in the source: its name (Omniglot "Greek/character05", folders "cat" or "train/cat") and
// the contiguous range of its base images.
struct ClassEntry {
  std::string name;
  int64_t first_image = 0;
  int64_t image_count = 0;
};

// One class of a split: a base class seen at a rotation of quarter_turns * 90 degrees (counter-clockwise).
struct SplitClass {
  int32_t base_class = 0;
  int32_t quarter_turns = 0;
  bool operator==(const SplitClass&) const = default;
};

struct Split {
  std::string name;
  std::vector<SplitClass> classes;
  bool rotated = false;  // named "<class>/rot<deg>" when true
  int64_t images = 0;    // sum of the classes' image counts (a rotated copy counts as an image)
};

// What the folder scan skipped (Note [Scanning]).
struct ScanReport {
  int64_t image_files = 0;
  int64_t non_image_files = 0;     // files without an image extension, hidden files included
  int64_t skipped_links = 0;       // symlink loops, dangling links, links back to a visited folder
  int64_t skipped_other = 0;       // stray folders inside class folders, files where folders were expected
  std::vector<std::string> notes;  // the first few skipped paths with the reason
  // Files without an image extension by lower-case extension (".webp", "" for none), hidden files left out.
  std::map<std::string, int64_t> non_image_extensions;
  // Read as grayscale (channels 1): of a few sampled images (the first of up to 8 classes spread over the
  // listing), how many hold colour (Note [Colour read as grayscale] in dataset.cpp).
  int64_t colour_sampled = 0, colour_found = 0;
};

struct CacheReport {
  std::string state = "off";  // off | hit | built | rebuilt (<reason>) | in memory | write failed (<reason>)
  std::string path;
  uint64_t key = 0;
  int64_t bytes = 0;
};

class Dataset {
 public:
  // Everything a reader produces; the constructor checks its consistency.
  struct Contents {
    std::string source;  // the folder, or "builtin:glyphs"
    Layout layout = Layout::folder;
    ImageSpec image;
    std::string preprocessing;  // one human-readable line
    std::vector<ClassEntry> classes;
    std::vector<uint8_t> pixels;  // images() * image.pixels() bytes, CHW per image, in class order
    // Per base image, who drew it: Omniglot's drawer, the NN of "0965_NN.png" (1 to 20), 0 where a file name
    // does not say. Empty for layouts without drawers.
    std::vector<int32_t> drawers;
    std::vector<Split> splits;
    ScanReport scan;
    CacheReport cache;
    double load_seconds = 0;
  };
  explicit Dataset(Contents contents);

  const std::string& source() const { return c_.source; }
  Layout layout() const { return c_.layout; }
  const ImageSpec& image_spec() const { return c_.image; }
  const std::string& preprocessing() const { return c_.preprocessing; }
  const ScanReport& scan_report() const { return c_.scan; }
  const CacheReport& cache_report() const { return c_.cache; }
  double load_seconds() const { return c_.load_seconds; }

  int64_t base_class_count() const { return static_cast<int64_t>(c_.classes.size()); }
  int64_t base_image_count() const { return image_count_; }
  const ClassEntry& base_class(int64_t i) const;

  // Splits in their canonical order (Omniglot: train, val, test, background, evaluation).
  std::vector<std::string> split_names() const;
  // True for split_names() and for "all" (every class, unrotated: Note [The split "all"] in dataset.cpp).
  bool has_split(const std::string& name) const;
  // Throws (usage) naming the available splits when `name` is unknown; "all" is every class unless the
  // dataset has a split of that name.
  const Split& split(const std::string& name) const;
  int64_t class_count(const std::string& split_name) const {
    return static_cast<int64_t>(split(split_name).classes.size());
  }
  int64_t image_count(const std::string& split_name) const { return split(split_name).images; }
  const std::vector<Split>& splits() const { return c_.splits; }

  // "Greek/character05" for an unrotated split, "Greek/character05/rot90" for a rotated one.
  std::string class_name(const SplitClass& c, bool rotated) const;
  int64_t class_size(const SplitClass& c) const { return base_class(c.base_class).image_count; }

  // Omniglot's alphabet of a base class (the part of its name before the first '/'); empty for other layouts.
  std::string alphabet(int64_t cls) const;
  // The drawer of a base image (Contents::drawers); 0 when unknown.
  int32_t drawer(int64_t base_image) const;

  // The raw stored image (image_spec().pixels() bytes, CHW).
  const uint8_t* image_u8(int64_t base_image) const;
  // Writes base image `base_image` rotated by quarter_turns * 90 degrees counter-clockwise as f32 in [0, 1]
  // (image_spec().pixels() floats, CHW). requires: height == width unless quarter_turns % 4 == 0.
  void read_image(int64_t base_image, int32_t quarter_turns, float* dst) const;

 private:
  Contents c_;
  int64_t image_count_ = 0;
  Split all_;
};

// Opens a dataset. `spec` is a folder or "builtin:glyphs". Throws metafew::Error with the folder, class or
// file at fault for: a missing or empty folder, a class folder without images, an image that cannot be read
// or decoded, a layout forced on a folder that does not have it, a split file that does not match.
std::shared_ptr<const Dataset> open_dataset(const std::string& spec, const OpenOptions& options = {});

// Split files: plain text, one class per line, grouped under "[split]" headers; '#' starts a comment.
//   [train]
//   Greek/character05/rot0
//   Greek/character05/rot90
// A line without a "/rot<deg>" suffix is the unrotated class. Reading rejects an unknown class or
// rotation naming the file and line.
void write_split_file(const Dataset& ds, const std::string& path);
std::vector<Split> read_split_file(const std::string& path, const std::vector<ClassEntry>& classes,
                                   const ImageSpec& image);

// The Vinyals-style Omniglot split (Note [Omniglot splits]): class indices of train, val and test.
std::array<std::vector<int32_t>, 3> vinyals_split(int64_t class_count, uint64_t seed);

// The alphabet of an Omniglot character's class name: the part before the first '/' ("Greek" of
// "Greek/character05").
std::string omniglot_alphabet(const std::string& class_name);

// The alphabets of images_background held out as "background-val" (Note [Omniglot splits]): from the
// background alphabets (name and character count, in name order), those chosen by `seed`, in name order.
std::vector<std::string> background_val_alphabets(const std::vector<std::pair<std::string, int64_t>>& alphabets,
                                                  uint64_t seed);

}  // namespace metafew::data
