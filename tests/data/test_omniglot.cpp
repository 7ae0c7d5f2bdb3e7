// The real Omniglot, when ../shared/data/omniglot exists next to the source tree (skipped otherwise).
#include <doctest/doctest.h>

#include <filesystem>

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
