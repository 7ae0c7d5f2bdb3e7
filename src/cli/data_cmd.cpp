#include "cli/data_cmd.h"

#include <cstdio>
#include <cxxopts.hpp>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "cli/common.h"
#include "core/error.h"
#include "core/setting.h"
#include "data/dataset.h"

namespace metafew::cli {
namespace {

// The subcommand's defaults, in one place (--help prints them).
struct DataCmdOptions {
  std::string data;
  std::string layout = "auto";
  std::string cache_dir;  // empty: $METAFEW_CACHE_DIR, $XDG_CACHE_HOME/metafew or ~/.cache/metafew
  bool no_cache = false;
  int64_t size = 28;
  int64_t channels = 1;
  std::string split_file;
  std::string write_split;
  uint64_t split_seed = 1;
  std::string rotate = "default";
  uint64_t glyph_seed = 1;
  bool json = false;
};

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

int describe_sinusoid(bool json) {
  if (json) {
    nlohmann::ordered_json j;
    j["source"] = "builtin:sinusoid";
    j["layout"] = "regression";
    j["family"] = "y = A sin(x - phase)";
    j["amplitude"] = {0.1, 5.0};
    j["phase"] = {0.0, 3.141592653589793};
    j["x"] = {-5.0, 5.0};
    j["splits"] = nlohmann::ordered_json::object();
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf(
        "dataset     builtin:sinusoid\nlayout      regression family (MAML): y = A sin(x - phase)\n"
        "sampling    A ~ U[0.1, 5], phase ~ U[0, pi], x ~ U[-5, 5]; task i of a split is a function of "
        "(seed, "
        "split, i)\n");
  }
  return 0;
}

// Omniglot: the alphabets a split's characters come from, in name order (Lake's trials are drawn within one).
std::vector<std::string> split_alphabets(const data::Dataset& ds, const data::Split& s) {
  std::set<std::string> names;
  for (const data::SplitClass& c : s.classes)
    if (std::string a = ds.alphabet(c.base_class); !a.empty()) names.insert(std::move(a));
  return {names.begin(), names.end()};
}

}  // namespace

int run_data(int argc, char** argv) {
  DataCmdOptions d;
  cxxopts::Options opts("metafew data",
                        "Show what metafew finds in a dataset: layout, splits, counts, cache");
  add_shared_flags(opts, {SharedFlag::data, SharedFlag::json_output});
  opts.add_options()("layout", "auto | omniglot | folder",
                                                    cxxopts::value<std::string>()->default_value(d.layout))(
      "cache-dir", "cache folder (default $METAFEW_CACHE_DIR, $XDG_CACHE_HOME/metafew, ~/.cache/metafew)",
      cxxopts::value<std::string>()->default_value(d.cache_dir))("no-cache",
                                                                 "neither read nor write the cache")(
      "size", "image height and width", cxxopts::value<int64_t>()->default_value(std::to_string(d.size)))(
      "channels", "1 (grayscale) or 3 (RGB)",
      cxxopts::value<int64_t>()->default_value(std::to_string(d.channels)))(
      "split-file", "read the class split from this file", cxxopts::value<std::string>()->default_value(""))(
      "write-split", "write the class split to this file", cxxopts::value<std::string>()->default_value(""))(
      "split-seed", "seed of the derived class split",
      cxxopts::value<uint64_t>()->default_value(std::to_string(d.split_seed)))(
      "rotate", "splits with 90-degree rotations as classes: default | none | comma list (train,val,test)",
      cxxopts::value<std::string>()->default_value(d.rotate))(
      "glyph-seed", "builtin:glyphs generator seed",
      cxxopts::value<uint64_t>()->default_value(std::to_string(d.glyph_seed)));
  cxxopts::ParseResult args;
  try {
    args = opts.parse(argc, argv);
  } catch (const cxxopts::exceptions::exception& e) {
    throw Error(std::string("data: ") + e.what(), ErrorKind::usage);
  }
  if (args.count("help")) {
    std::printf("%s\n", opts.help().c_str());
    return 0;
  }
  MF_USAGE_CHECK(args.count("data"),
                 "data: --data PATH is required (a folder, builtin:glyphs or builtin:sinusoid)");
  d.data = args["data"].as<std::string>();
  d.layout = args["layout"].as<std::string>();
  d.cache_dir = args["cache-dir"].as<std::string>();
  d.no_cache = args.count("no-cache") > 0;
  d.size = args["size"].as<int64_t>();
  d.channels = args["channels"].as<int64_t>();
  d.split_file = args["split-file"].as<std::string>();
  d.write_split = args["write-split"].as<std::string>();
  d.split_seed = args["split-seed"].as<uint64_t>();
  d.rotate = args["rotate"].as<std::string>();
  d.glyph_seed = args["glyph-seed"].as<uint64_t>();
  d.json = args.count("json") > 0;
  if (d.data == "builtin:sinusoid") return describe_sinusoid(d.json);

  data::OpenOptions o;
  o.layout = data::parse_layout(d.layout);
  o.image = {d.channels, d.size, d.size};
  o.cache_dir = d.cache_dir;
  o.use_cache = !d.no_cache;
  o.split_file = d.split_file;
  o.split_seed = d.split_seed;
  o.glyph_seed = d.glyph_seed;
  if (d.rotate == "none")
    o.rotated_splits = std::vector<std::string>{};
  else if (d.rotate != "default")
    o.rotated_splits = split_list(d.rotate);
  auto ds = data::open_dataset(d.data, o);
  if (!d.write_split.empty()) data::write_split_file(*ds, d.write_split);

  const data::ImageSpec& im = ds->image_spec();
  const data::ScanReport& scan = ds->scan_report();
  const data::CacheReport& cache = ds->cache_report();
  if (d.json) {
    nlohmann::ordered_json j;
    j["source"] = ds->source();
    j["layout"] = data::layout_name(ds->layout());
    j["image"] = {{"channels", im.channels}, {"height", im.height}, {"width", im.width}};
    j["preprocessing"] = ds->preprocessing();
    j["cache"] = {{"state", cache.state}, {"path", cache.path}, {"bytes", cache.bytes}};
    j["load_seconds"] = ds->load_seconds();
    j["base"] = {{"classes", ds->base_class_count()}, {"images", ds->base_image_count()}};
    nlohmann::ordered_json splits = nlohmann::ordered_json::object();
    for (const data::Split& s : ds->splits()) {
      splits[s.name] = {{"classes", s.classes.size()}, {"images", s.images}, {"rotated", s.rotated}};
      if (ds->layout() == data::Layout::omniglot) splits[s.name]["alphabets"] = split_alphabets(*ds, s);
    }
    j["splits"] = splits;
    j["split_order"] = ds->split_names();
    j["skipped"] = {{"non_image_files", scan.non_image_files},
                    {"non_image_by_extension", scan.non_image_extensions},
                    {"links", scan.skipped_links},
                    {"other", scan.skipped_other},
                    {"notes", scan.notes}};
    if (!d.write_split.empty()) j["split_file_written"] = d.write_split;
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("dataset     %s\n", ds->source().c_str());
  std::printf("layout      %s\n", data::layout_name(ds->layout()));
  std::printf("image       %lld x %lld x %lld (C x H x W)\n", static_cast<long long>(im.channels),
              static_cast<long long>(im.height), static_cast<long long>(im.width));
  std::printf("preprocess  %s\n", ds->preprocessing().c_str());
  if (cache.path.empty())
    std::printf("cache       %s\n", cache.state.c_str());
  else
    std::printf("cache       %s: %s (%.1f MB)\n", cache.state.c_str(), cache.path.c_str(),
                static_cast<double>(cache.bytes) / 1e6);
  std::printf("loaded in   %.3f s\n", ds->load_seconds());
  std::printf("base        %lld classes, %lld images\n", static_cast<long long>(ds->base_class_count()),
              static_cast<long long>(ds->base_image_count()));
  std::printf("splits\n");
  for (const data::Split& s : ds->splits()) {
    std::printf("  %-16s %6zu classes %8lld images%s", s.name.c_str(), s.classes.size(),
                static_cast<long long>(s.images), s.rotated ? "  (90-degree rotations as classes)" : "");
    const std::vector<std::string> alphabets = split_alphabets(*ds, s);
    if (alphabets.size() > 10)
      std::printf("  %zu alphabets", alphabets.size());
    else if (!alphabets.empty())
      std::printf("  %zu alphabet%s: %s", alphabets.size(), alphabets.size() == 1 ? "" : "s",
                  core::join(alphabets).c_str());
    std::printf("\n");
  }
  int64_t by_extension = 0;
  for (const auto& kind : scan.non_image_extensions) by_extension += kind.second;
  std::string kinds = non_image_kinds(scan);
  if (scan.non_image_files > by_extension)
    kinds += detail::concat(kinds.empty() ? "" : ", ", scan.non_image_files - by_extension, " hidden");
  std::printf("skipped     %lld non-image files%s, %lld links (loops, dangling, revisits), %lld other (folders inside "
              "class folders, images outside them)\n",
              static_cast<long long>(scan.non_image_files), kinds.empty() ? "" : (" (" + kinds + ")").c_str(),
              static_cast<long long>(scan.skipped_links), static_cast<long long>(scan.skipped_other));
  for (const std::string& n : scan.notes) std::printf("  %s\n", n.c_str());
  if (!d.write_split.empty()) std::printf("split file  written to %s\n", d.write_split.c_str());
  return 0;
}

}  // namespace metafew::cli
