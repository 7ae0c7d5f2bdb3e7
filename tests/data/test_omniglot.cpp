// The real Omniglot, when ../shared/data/omniglot exists next to the source tree (skipped otherwise).
#include <doctest/doctest.h>

#include <filesystem>
#include <set>

#include "data/data_support.h"
#include "data/dataset.h"
#include "data/episode.h"

namespace metafew::testing {
namespace {

namespace fs = std::filesystem;

const char* kOmniglot = METAFEW_SOURCE_DIR "/../shared/data/omniglot";

// Opened once for all cases, with a cache in the temp dir (kept between runs so a re-run is a warm load; the
// key makes a stale entry harmless).
std::shared_ptr<const data::Dataset> omniglot() {
  static const std::shared_ptr<const data::Dataset> ds = [] {
    data::OpenOptions o;
    o.cache_dir = (fs::temp_directory_path() / "metafew-test-omniglot-cache").string();
    auto d = data::open_dataset(kOmniglot, o);
    MESSAGE("Omniglot opened in ", d->load_seconds(), " s, cache ", d->cache_report().state);
    return d;
  }();
  return ds;
}

TEST_CASE("data: omniglot counts (Lake's and Vinyals-style splits)") {
  if (!fs::exists(kOmniglot)) {
    MESSAGE("skipped: no Omniglot at ", kOmniglot);
    return;
  }
  auto ds = omniglot();
  CHECK(ds->layout() == data::Layout::omniglot);
  CHECK(ds->class_count("background") == 964);
  CHECK(ds->image_count("background") == 19280);
  CHECK(ds->class_count("evaluation") == 659);
  CHECK(ds->image_count("evaluation") == 13180);
  CHECK(ds->class_count("train") == 4 * 1100);
  CHECK(ds->class_count("val") == 4 * 100);
  CHECK(ds->class_count("test") == 4 * 423);
  CHECK(ds->image_count("train") == 4 * 1100 * 20);
  CHECK(ds->scan_report().non_image_files == 0);
  CHECK(ds->scan_report().skipped_links == 0);
}

TEST_CASE("data: omniglot's held-out background alphabets and Lake's 20-way trials") {
  if (!fs::exists(kOmniglot)) {
    MESSAGE("skipped: no Omniglot at ", kOmniglot);
    return;
  }
  auto ds = omniglot();
  std::set<std::string> held;
  for (const auto& c : ds->split("background-val").classes) held.insert(ds->alphabet(c.base_class));
  CHECK(held == std::set<std::string>{"Bengali", "Japanese_(katakana)", "Latin", "Malay_(Jawi_-_Arabic)", "Tifinagh"});
  CHECK(ds->class_count("background-val") == 214);
  CHECK(ds->class_count("background-train") == 750);
  // Every one of the 20 evaluation alphabets has 20 characters or more; every character 20 drawers.
  data::EpisodeSampler lake(ds, "evaluation", {20, 1, 19}, 0, data::Within::alphabet);
  CHECK(lake.alphabets().size() == 20);
  const data::Episode ep = lake.episode(0);
  std::set<int32_t> drawers;
  for (int64_t image : ep.query_images) drawers.insert(ds->drawer(image));
  drawers.insert(ds->drawer(ep.support_images[0]));
  CHECK(drawers.size() == 20);
  data::EpisodeSampler val(ds, "background-val", {20, 1, 15}, 0, data::Within::alphabet);
  CHECK(val.alphabets() == std::vector<std::string>(held.begin(), held.end()));
}

TEST_CASE("data: omniglot episodes are the same twice and with 1 and 2 threads") {
  if (!fs::exists(kOmniglot)) {
    MESSAGE("skipped: no Omniglot at ", kOmniglot);
    return;
  }
  auto ds = omniglot();
  for (const char* split : {"train", "background"}) {
    data::EpisodeSampler s(ds, split, {5, 1, 15}, 1);
    std::vector<uint64_t> serial(1000), again(1000);
    for (size_t i = 0; i < serial.size(); ++i) serial[i] = episode_hash(s.episode(i));
    for (size_t i = 0; i < again.size(); ++i) again[i] = episode_hash(s.episode(i));
    CHECK(serial == again);
    for (int threads : {1, 2}) {
      std::vector<uint64_t> par(1000);
#pragma omp parallel for num_threads(threads) schedule(dynamic, 5)
      for (int64_t i = 0; i < 1000; ++i)
        par[static_cast<size_t>(i)] = episode_hash(s.episode(static_cast<uint64_t>(i)));
      CHECK_MESSAGE(par == serial, split, ", ", threads, " thread(s)");
    }
  }
  const data::Episode ep = data::EpisodeSampler(ds, "train", {5, 1, 1}, 1).episode(0);
  CHECK(ep.class_names[0].find("/rot") != std::string::npos);
}

}  // namespace
}  // namespace metafew::testing
