#include "data/scan.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>

#include "core/error.h"
#include "data/hash.h"

// Note [Scanning]
// The layouts have a fixed depth (ROOT/group/alphabet/character/files for Omniglot, ROOT[/split]/class/files
// for folders), so the scan never recurses freely: folders found inside a class folder are skipped and
// counted, never descended. Every entry is stat()ed through its links; an entry whose link cannot be resolved
// (a loop such as `ln -s loop loop`, ELOOP, or a dangling link) is skipped and counted, and a folder whose
// canonical path was already visited (a link back to an ancestor or to another class folder) is read once
// only. So a symlink loop can neither hang the scan nor duplicate a class. Entries are sorted by name (byte
// order) so the listing, the base-image order and hence every episode are the same on any file system.
// Non-image files (by extension, hidden files included) are skipped and counted; `metafew data` reports them.
// An image that fails to decode is not skipped: decoding throws naming the file (the user should know).

namespace metafew::data::detail {
namespace fs = std::filesystem;

int64_t SourceListing::images() const {
  int64_t n = 0;
  for (const auto& c : classes) n += static_cast<int64_t>(c.files.size());
  return n;
}

namespace {

constexpr size_t kMaxNotes = 8;

enum class Kind { dir, file, skipped };

struct Entry {
  std::string name;
  fs::path path;
  std::string canon;  // folders: canonical path, the identity used to detect loops
  Kind kind = Kind::skipped;
  uint64_t size = 0;
  int64_t mtime_ns = 0;
};

std::string canonical_key(const fs::path& p) {
  std::error_code ec;
  const fs::path canon = fs::weakly_canonical(p, ec);
  return ec ? p.string() : canon.string();
}

void note(ScanReport& rep, const std::string& what) {
  if (rep.notes.size() < kMaxNotes) rep.notes.push_back(what);
}

void count_extension(ScanReport& rep, const std::string& name) {
  if (!name.empty() && name[0] == '.') return;  // hidden files (.DS_Store) are nobody's images
  ++rep.non_image_extensions[file_extension(name)];
}

class Scanner {
 public:
  explicit Scanner(ScanReport& rep) : rep_(rep) {}

  // Entries of `dir`, sorted by name, resolved through links; loops and dangling links are counted and
  // dropped.
  std::vector<Entry> list(const fs::path& dir) {
    std::error_code ec;
    fs::directory_iterator it(dir, ec);
    MF_CHECK(!ec, "data: cannot list folder '", dir.string(), "': ", ec.message());
    std::vector<Entry> out;
    for (; it != fs::directory_iterator(); it.increment(ec)) {
      MF_CHECK(!ec, "data: error while listing folder '", dir.string(), "': ", ec.message());
      Entry e;
      e.path = it->path();
      e.name = e.path.filename().string();
      struct stat st {};
      if (::stat(e.path.c_str(), &st) != 0) {
        const int err = errno;
        ++rep_.skipped_links;
        note(rep_, e.path.string() + ": skipped, " +
                       (err == ELOOP    ? std::string("symlink loop")
                        : err == ENOENT ? std::string("dangling link")
                                        : std::string(std::strerror(err))));
        continue;
      }
      if (S_ISDIR(st.st_mode)) {
        e.kind = Kind::dir;
        e.canon = canonical_key(e.path);
      } else if (S_ISREG(st.st_mode)) {
        e.kind = Kind::file;
        e.size = static_cast<uint64_t>(st.st_size);
        e.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec;
      } else {
        ++rep_.skipped_other;
        note(rep_, e.path.string() + ": skipped, not a regular file or folder");
        continue;
      }
      out.push_back(std::move(e));
    }
    std::sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) { return a.name < b.name; });
    return out;
  }

  void enter(const fs::path& dir) { visited_.insert(canonical_key(dir)); }

  // Marks a listed folder as visited before reading it; false (counted as a skipped link) when it was visited
  // already, i.e. it is reached again through a link (a loop back to an ancestor, or a duplicate).
  bool descend(const Entry& e) {
    if (!visited_.insert(e.canon).second) {
      ++rep_.skipped_links;
      note(rep_, e.path.string() + ": skipped, a link to a folder already visited (loop or duplicate)");
      return false;
    }
    return true;
  }

  // A class folder: its images; other files counted, sub-folders skipped. Throws when no image is found.
  // requires: descend(dir entry) returned true.
  SourceClass read_class(const fs::path& dir, std::string name, std::string group) {
    SourceClass c;
    c.name = std::move(name);
    c.group = std::move(group);
    c.folder = dir.string();
    int64_t others = 0;
    for (Entry& e : list(dir)) {
      if (e.kind == Kind::dir) {
        if (visited_.count(e.canon)) {
          descend(e);  // counts the link back
          continue;
        }
        ++rep_.skipped_other;
        ++others;
        note(rep_, e.path.string() + ": skipped, a folder inside class folder '" + c.name + "'");
      } else if (!has_image_extension(e.name)) {
        ++rep_.non_image_files;
        count_extension(rep_, e.name);
        ++others;
        note(rep_, e.path.string() + ": skipped, not an image file");
      } else {
        ++rep_.image_files;
        c.files.push_back({e.path.string(), e.size, e.mtime_ns});
      }
    }
    MF_CHECK(!c.files.empty(), "data: class folder '", c.folder, "' holds no images (", others,
             " other entries skipped); expected at least one .png, .jpg, .jpeg, .bmp, .pgm or .ppm file");
    return c;
  }

  // Files where only folders are expected are counted (images among them noted as misplaced).
  void skip_file(const Entry& e, const char* where) {
    if (has_image_extension(e.name)) {
      ++rep_.skipped_other;
      note(rep_, e.path.string() + ": skipped, an image outside a class folder (" + where + ")");
    } else {
      ++rep_.non_image_files;
      count_extension(rep_, e.name);
      note(rep_, e.path.string() + ": skipped, not an image file");
    }
  }

 private:
  ScanReport& rep_;
  std::set<std::string> visited_;
};

bool is_dir(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}

void scan_omniglot(const fs::path& root, Scanner& sc, SourceListing& out) {
  bool any_group = false;
  for (const char* group : {"background", "evaluation"}) {
    const fs::path gdir = root / (std::string("images_") + group);
    if (!is_dir(gdir)) continue;
    any_group = true;
    sc.enter(gdir);
    for (const Entry& alpha : sc.list(gdir)) {
      if (alpha.kind != Kind::dir) {
        sc.skip_file(alpha, "expected alphabet folders");
        continue;
      }
      if (!sc.descend(alpha)) continue;
      for (const Entry& ch : sc.list(alpha.path)) {
        if (ch.kind != Kind::dir) {
          sc.skip_file(ch, "expected character folders");
          continue;
        }
        if (!sc.descend(ch)) continue;
        out.classes.push_back(sc.read_class(ch.path, alpha.name + "/" + ch.name, group));
      }
    }
  }
  MF_CHECK(any_group, "data: '", root.string(),
           "' is not in the Omniglot layout; expected ROOT/images_background/<alphabet>/<character>/*.png "
           "and/or ROOT/images_evaluation/...");
  MF_CHECK(!out.classes.empty(), "data: no character folders found in the Omniglot folder '", root.string(),
           "'; expected ROOT/images_background/<alphabet>/<character>/*.png");
}

void scan_folder(const fs::path& root, const std::vector<Entry>& top, Scanner& sc, SourceListing& out) {
  static const std::set<std::string> split_dirs = {"train", "val", "test"};
  bool has_split_dir = false, all_split_dirs = true;
  for (const Entry& e : top) {
    if (e.kind != Kind::dir) continue;
    if (split_dirs.count(e.name))
      has_split_dir = true;
    else
      all_split_dirs = false;
  }
  if (has_split_dir && all_split_dirs) {
    for (const char* split : {"train", "val", "test"}) {
      const fs::path sdir = root / split;
      if (!is_dir(sdir)) continue;
      sc.enter(sdir);
      for (const Entry& e : sc.list(sdir)) {
        if (e.kind != Kind::dir) {
          sc.skip_file(e, "expected class folders");
          continue;
        }
        if (!sc.descend(e)) continue;
        out.classes.push_back(sc.read_class(e.path, std::string(split) + "/" + e.name, split));
      }
    }
  } else {
    for (const Entry& e : top) {
      if (e.kind != Kind::dir) {
        sc.skip_file(e, "expected class folders");
        continue;
      }
      if (!sc.descend(e)) continue;
      out.classes.push_back(sc.read_class(e.path, e.name, ""));
    }
  }
  MF_CHECK(!out.classes.empty(), "data: no class folders found in '", root.string(),
           "'; expected ROOT/<class>/<images> or ROOT/{train,val,test}/<class>/<images>");
}

}  // namespace

SourceListing scan_source(const std::string& root_str, Layout requested) {
  MF_USAGE_CHECK(!root_str.empty(), "data: the dataset path is empty; expected a folder or builtin:glyphs");
  const fs::path root(root_str);
  std::error_code ec;
  MF_USAGE_CHECK(fs::exists(root, ec), "data: dataset folder '", root_str, "' does not exist");
  MF_USAGE_CHECK(fs::is_directory(root, ec), "data: dataset path '", root_str, "' is not a folder");
  SourceListing out;
  out.root = root_str;
  Scanner sc(out.report);
  sc.enter(root);
  const std::vector<Entry> top = sc.list(root);
  MF_CHECK(
      !top.empty(), "data: dataset folder '", root_str,
      "' is empty; expected ROOT/<class>/<images>, ROOT/{train,val,test}/<class>/<images> or the Omniglot "
      "layout");
  Layout layout = requested;
  if (layout == Layout::auto_detect)
    layout = (is_dir(root / "images_background") || is_dir(root / "images_evaluation")) ? Layout::omniglot
                                                                                        : Layout::folder;
  MF_USAGE_CHECK(layout == Layout::omniglot || layout == Layout::folder, "data: layout '",
                 layout_name(layout), "' cannot be read from a folder; expected omniglot or folder");
  out.layout = layout;
  if (layout == Layout::omniglot)
    scan_omniglot(root, sc, out);
  else
    scan_folder(root, top, sc, out);
  return out;
}

uint64_t listing_key(const SourceListing& listing, const ImageSpec& image, bool invert) {
  // Version of the decode/resize/quantise pipeline: bump it whenever preprocess_image changes its output.
  // 2: JPEG decoded by libjpeg-turbo instead of stb_image (its IDCT and upsampling round differently).
  // 3: a centre crop to the target's aspect ratio before the resize (images of another shape were stretched).
  constexpr uint64_t kPreprocessVersion = 3;
  ChunkHasher h(kPreprocessVersion);
  h.add_string(layout_name(listing.layout));
  h.add_u64(static_cast<uint64_t>(image.channels));
  h.add_u64(static_cast<uint64_t>(image.height));
  h.add_u64(static_cast<uint64_t>(image.width));
  h.add_u64(invert ? 1 : 0);
  for (const SourceClass& c : listing.classes) {
    h.add_string(c.name);
    h.add_string(c.group);
    h.add_u64(c.files.size());
    for (const SourceFile& f : c.files) {
      // Relative to the root, so two spellings of the same folder share a cache entry.
      h.add_string(std::string_view(f.path).substr(std::min(f.path.size(), listing.root.size())));
      h.add_u64(f.size);
      h.add_u64(static_cast<uint64_t>(f.mtime_ns));
    }
  }
  return h.value();
}

}  // namespace metafew::data::detail
