// Readers, layouts, splits, preprocessing and bad input, on small folders built in a temp dir.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <set>

#include "data/data_support.h"
#include "data/dataset.h"
#include "data/episode.h"
#include "data/image.h"
#include "data/options.h"

namespace metafew::testing {
namespace {

namespace fs = std::filesystem;
using data::open_dataset;
using data::OpenOptions;

OpenOptions no_cache() {
  OpenOptions o;
  o.use_cache = false;
  return o;
}

// Builds ROOT/images_{background,evaluation}/<alphabet>/<character>/*.png with 105x105 dark-on-white images.
void make_omniglot(const fs::path& root, int bg_alphabets, int ev_alphabets, int chars, int drawings) {
  int pattern = 0;
  for (auto [group, alphabets] :
       {std::pair<const char*, int>{"images_background", bg_alphabets}, {"images_evaluation", ev_alphabets}})
    for (int a = 0; a < alphabets; ++a)
      for (int c = 0; c < chars; ++c, ++pattern)
        for (int d = 0; d < drawings; ++d) {
          char rel[128];
          std::snprintf(rel, sizeof(rel), "%s/%s%d/character%02d/%04d_%02d.png", group,
                        group[7] == 'b' ? "Alpha" : "Beta", a, c + 1, pattern, d + 1);
          write_test_image(root / rel, 105, 105, pattern, d);
        }
}

TEST_CASE("data: area resize averages the covered area") {
  // 4x4 -> 2x2: each output is the mean of a 2x2 block.
  const std::vector<float> src = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  std::vector<float> dst(4);
  data::resize_area(src.data(), 4, 4, dst.data(), 2, 2);
  CHECK(dst[0] == doctest::Approx(3.5));
  CHECK(dst[1] == doctest::Approx(5.5));
  CHECK(dst[2] == doctest::Approx(11.5));
  CHECK(dst[3] == doctest::Approx(13.5));
  // 3 -> 2: output 0 covers [0, 1.5): (1 * a + 0.5 * b) / 1.5.
  const std::vector<float> row = {3, 6, 9};
  std::vector<float> out(2);
  data::resize_area(row.data(), 3, 1, out.data(), 2, 1);
  CHECK(out[0] == doctest::Approx((3 + 0.5 * 6) / 1.5));
  CHECK(out[1] == doctest::Approx((0.5 * 6 + 9) / 1.5));
  // 105 -> 28 keeps a constant image constant and preserves the mean of any image.
  std::vector<float> big(105 * 105), small(28 * 28);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<float>((i * 7919) % 13) / 12.0f;
  data::resize_area(big.data(), 105, 105, small.data(), 28, 28);
  double mb = 0, ms = 0;
  for (float v : big) mb += v;
  for (float v : small) ms += v;
  CHECK(ms / 784.0 == doctest::Approx(mb / 11025.0).epsilon(1e-5));
}

TEST_CASE("data: omniglot layout, Lake and Vinyals splits, inversion, rotations") {
  TempDir tmp("omni");
  make_omniglot(tmp.path(), 2, 1, 4, 5);  // 8 background + 4 evaluation characters, 5 drawings each
  auto ds = open_dataset(tmp.str(), no_cache());
  CHECK(ds->layout() == data::Layout::omniglot);
  CHECK(ds->base_class_count() == 12);
  CHECK(ds->base_image_count() == 60);
  CHECK(ds->class_count("background") == 8);
  CHECK(ds->image_count("background") == 40);
  CHECK(ds->class_count("evaluation") == 4);
  CHECK(ds->image_count("evaluation") == 20);
  CHECK_FALSE(ds->split("background").rotated);
  // Vinyals-style: proportions 1100 / 100 / 423 of 12 -> 8 / 1 / 3 characters, times 4 rotations.
  CHECK(ds->class_count("train") == 32);
  CHECK(ds->class_count("val") == 4);
  CHECK(ds->class_count("test") == 12);
  CHECK(ds->image_count("train") == 160);
  std::set<int32_t> seen;
  for (const char* s : {"train", "val", "test"})
    for (const auto& c : ds->split(s).classes) seen.insert(c.base_class);
  CHECK(seen.size() == 12);  // a partition of all characters
  CHECK(ds->base_class(0).name == "Alpha0/character01");
  CHECK(ds->class_name(ds->split("train").classes[1], true).find("/rot90") != std::string::npos);
  // Inverted: the white background becomes 0, the dark blob 1.
  std::vector<float> img(28 * 28);
  ds->read_image(0, 0, img.data());
  CHECK(img[0] == 0.0f);
  float mx = 0;
  for (float v : img) mx = std::max(mx, v);
  CHECK(mx == 1.0f);
  // Rotation by a quarter turn: out[i][j] = in[j][W - 1 - i] (numpy.rot90).
  std::vector<float> rot(28 * 28);
  ds->read_image(3, 1, rot.data());
  ds->read_image(3, 0, img.data());
  bool same = true;
  for (int i = 0; i < 28; ++i)
    for (int j = 0; j < 28; ++j) same = same && rot[i * 28 + j] == img[j * 28 + 27 - i];
  CHECK(same);
  // Rotations can be turned off per split.
  OpenOptions o = no_cache();
  o.rotated_splits = std::vector<std::string>{"train"};
  auto ds2 = open_dataset(tmp.str(), o);
  CHECK(ds2->class_count("train") == 32);
  CHECK(ds2->class_count("test") == 3);
  // Forced to the folder layout, images_background is read as a class folder, and holds no images.
  o.layout = data::Layout::folder;
  CHECK_THROWS_WITH_AS(open_dataset(tmp.str(), o), doctest::Contains("holds no images"), Error);
}

TEST_CASE("data: folder layout, ratio split by seed and split folders") {
  TempDir tmp("folder");
  make_class_folders(tmp.path(), 10, 6, 24);
  auto ds = open_dataset(tmp.str(), no_cache());
  CHECK(ds->layout() == data::Layout::folder);
  CHECK(ds->split_names() == std::vector<std::string>{"train", "val", "test"});
  CHECK(ds->class_count("train") == 6);  // round(10 * 0.64)
  CHECK(ds->class_count("val") == 2);    // round(10 * 0.16)
  CHECK(ds->class_count("test") == 2);
  CHECK(ds->image_count("train") == 36);
  // Not inverted by default: white background stays 1.
  std::vector<float> img(28 * 28);
  ds->read_image(0, 0, img.data());
  CHECK(img[0] == 1.0f);
  // Same seed, same split; another seed, (almost surely) another one.
  auto again = open_dataset(tmp.str(), no_cache());
  CHECK(again->split("train").classes == ds->split("train").classes);
  OpenOptions o = no_cache();
  o.split_seed = 7;
  o.image = {3, 16, 16};
  auto other = open_dataset(tmp.str(), o);
  CHECK(other->split("train").classes != ds->split("train").classes);
  CHECK(other->image_spec().channels == 3);
  data::EpisodeSampler s(other, "train", {3, 2, 4}, 1);
  const data::Episode ep = s.episode(0);
  CHECK(ep.support_x.shape() == tensor::Shape{6, 3, 16, 16});
  CHECK(ep.query_x.shape() == tensor::Shape{12, 3, 16, 16});

  TempDir split("splitdirs");
  make_class_folders(split / "train", 5, 4);
  make_class_folders(split / "val", 2, 4, 20, "v");
  make_class_folders(split / "test", 3, 4, 20, "t");
  auto sd = open_dataset(split.str(), no_cache());
  CHECK(sd->split_names() == std::vector<std::string>{"train", "val", "test"});
  CHECK(sd->class_count("train") == 5);
  CHECK(sd->class_count("val") == 2);
  CHECK(sd->class_count("test") == 3);
  CHECK(sd->image_count("test") == 12);
  CHECK(sd->base_class(0).name == "train/class00");
}

TEST_CASE("data: split file round trip and rejection of unknown classes") {
  TempDir tmp("splitfile");
  make_omniglot(tmp / "omni", 1, 1, 3, 3);
  auto ds = open_dataset((tmp / "omni").string(), no_cache());
  const std::string file = (tmp / "split.txt").string();
  data::write_split_file(*ds, file);
  OpenOptions o = no_cache();
  o.split_file = file;
  auto back = open_dataset((tmp / "omni").string(), o);
  REQUIRE(back->splits().size() == ds->splits().size());
  for (size_t i = 0; i < ds->splits().size(); ++i) {
    CHECK(back->splits()[i].name == ds->splits()[i].name);
    CHECK(back->splits()[i].classes == ds->splits()[i].classes);
    CHECK(back->splits()[i].rotated == ds->splits()[i].rotated);
  }
  write_text(tmp / "bad.txt", "[train]\nAlpha0/character01/rot90\nNoSuch/character09\n");
  o.split_file = (tmp / "bad.txt").string();
  CHECK_THROWS_WITH_AS(open_dataset((tmp / "omni").string(), o),
                       doctest::Contains("line 3: unknown class 'NoSuch/character09'"), Error);
  write_text(tmp / "bad2.txt", "[train]\nAlpha0/character01/rot45\n");
  o.split_file = (tmp / "bad2.txt").string();
  CHECK_THROWS_WITH_AS(open_dataset((tmp / "omni").string(), o), doctest::Contains("line 2"), Error);
}

TEST_CASE("data: bad input - missing, empty, no images, corrupt image") {
  TempDir tmp("bad");
  CHECK_THROWS_WITH_AS(open_dataset((tmp / "nope").string(), no_cache()), doctest::Contains("does not exist"),
                       Error);
  fs::create_directories(tmp / "empty");
  CHECK_THROWS_WITH_AS(open_dataset((tmp / "empty").string(), no_cache()), doctest::Contains("is empty"),
                       Error);
  // Only files at the top: no class folders.
  write_text(tmp / "flat" / "readme.txt", "hi");
  CHECK_THROWS_WITH_AS(open_dataset((tmp / "flat").string(), no_cache()),
                       doctest::Contains("no class folders"), Error);
  // A class folder with no images names the folder.
  make_class_folders(tmp / "noimg", 3, 2);
  write_text(tmp / "noimg" / "zempty" / "notes.txt", "nothing here");
  CHECK_THROWS_WITH_AS(open_dataset((tmp / "noimg").string(), no_cache()),
                       doctest::Contains("zempty' holds no images (1 other entries skipped)"), Error);
  // A corrupt image names the file, at any thread count.
  make_class_folders(tmp / "corrupt", 3, 2);
  write_text(tmp / "corrupt" / "class01" / "broken.png", "definitely not a png");
  CHECK_THROWS_WITH_AS(open_dataset((tmp / "corrupt").string(), no_cache()), doctest::Contains("broken.png"),
                       Error);
  write_text(tmp / "zero" / "c" / "empty.jpg", "");
  CHECK_THROWS_WITH_AS(open_dataset((tmp / "zero").string(), no_cache()), doctest::Contains("empty.jpg"),
                       Error);
  // Forcing the Omniglot layout on a plain folder.
  OpenOptions o = no_cache();
  o.layout = data::Layout::omniglot;
  CHECK_THROWS_WITH_AS(open_dataset((tmp / "corrupt").string(), o),
                       doctest::Contains("not in the Omniglot layout"), Error);
  CHECK_THROWS_AS(data::parse_layout("imagenet"), Error);
}

TEST_CASE("data: bad input - non-image files skipped and counted, symlink loops skipped") {
  TempDir tmp("skip");
  make_class_folders(tmp.path(), 4, 3);
  write_text(tmp / "class00" / "labels.csv", "a,b");
  write_text(tmp / "class01" / ".DS_Store", "x");
  write_text(tmp / "README", "top-level file");
  // A link loop inside a class folder (back to the class), a self loop at the top, a dangling link.
  fs::create_directory_symlink(tmp / "class02", tmp / "class02" / "again");
  fs::create_symlink(tmp / "selfloop", tmp / "selfloop");
  fs::create_symlink(tmp / "missing_target", tmp / "class03" / "dangling.png");
  // A link to a whole class folder: read once, not twice.
  fs::create_directory_symlink(tmp / "class01", tmp / "zz_link_to_class01");
  auto ds = open_dataset(tmp.str(), no_cache());
  const data::ScanReport& r = ds->scan_report();
  CHECK(ds->base_class_count() == 4);
  CHECK(ds->base_image_count() == 12);
  CHECK(r.image_files == 12);
  CHECK(r.non_image_files == 3);
  CHECK(r.skipped_links == 4);  // again, selfloop, dangling.png, zz_link_to_class01
  CHECK_FALSE(r.notes.empty());
}

TEST_CASE("data: mixed image sizes are all resized to the spec") {
  TempDir tmp("mixed");
  write_test_image(tmp / "a" / "small.pgm", 12, 12, 1, 0);
  write_test_image(tmp / "a" / "wide.png", 60, 30, 1, 1);
  write_test_image(tmp / "b" / "big.PNG", 200, 150, 2, 0);
  write_test_image(tmp / "b" / "tiny.pgm", 6, 5, 2, 1);
  write_test_image(tmp / "c" / "x.png", 28, 28, 3, 0);
  auto ds = open_dataset(tmp.str(), no_cache());
  CHECK(ds->base_image_count() == 5);
  CHECK(ds->image_spec() == data::ImageSpec{1, 28, 28});
  std::vector<float> img(28 * 28);
  for (int64_t i = 0; i < 5; ++i) {
    ds->read_image(i, 0, img.data());
    float mn = 1, mx = 0;
    for (float v : img) mn = std::min(mn, v), mx = std::max(mx, v);
    CHECK(mn >= 0.0f);
    CHECK(mx <= 1.0f);
    CHECK(mx > mn);  // each holds its blob
  }
}

TEST_CASE("data: images of another aspect ratio are centre-cropped to the spec's, never stretched") {
  CHECK(data::centre_crop(40, 20, 10, 10).x == 10);
  CHECK(data::centre_crop(40, 20, 10, 10).width == 20);
  CHECK(data::centre_crop(40, 20, 10, 10).height == 20);
  CHECK(data::centre_crop(21, 40, 10, 10).y == 9);  // 40 - 21 = 19: 9 above, 10 below
  CHECK(data::centre_crop(21, 40, 10, 10).height == 21);
  CHECK(data::centre_crop(105, 105, 28, 28).width == 105);  // same shape: nothing cut
  CHECK(data::centre_crop(100, 100, 20, 10).height == 50);  // a wide target crops rows
  CHECK(data::centre_crop(100, 100, 20, 10).y == 25);
  // A 40x20 RGB image: black left and right quarters around a white square of 20x20 with one red pixel in its
  // top left corner. At 10x10 only the square remains (no black averaged in), its red corner in the corner.
  data::DecodedImage img;
  img.width = 40, img.height = 20, img.channels = 3, img.source_channels = 3;
  img.hwc.assign(40 * 20 * 3, 0);
  for (int y = 0; y < 20; ++y)
    for (int x = 10; x < 30; ++x)
      for (int c = 0; c < 3; ++c) img.hwc[static_cast<size_t>((y * 40 + x) * 3 + c)] = 255;
  for (int c = 1; c < 3; ++c) img.hwc[static_cast<size_t>((0 * 40 + 10) * 3 + c)] = 0;
  std::vector<uint8_t> out(3 * 10 * 10);
  data::preprocess_image(img, {3, 10, 10}, false, out.data());
  CHECK(out[0] == 255);                // red plane, corner
  CHECK(out[100] == 191);              // green plane, corner: (0 + 3 * 255) / 4 of its 2x2 patch
  CHECK(out[200] == 191);
  for (size_t i = 1; i < 100; ++i) CHECK(out[100 + i] == 255);
}

TEST_CASE("data: requests the data cannot serve are refused up front") {
  TempDir tmp("refuse");
  make_class_folders(tmp / "train", 3, 4);
  write_test_image(tmp / "train" / "class03" / "only.png", 20, 20, 9, 0);
  write_test_image(tmp / "train" / "class03" / "two.png", 20, 20, 9, 1);
  auto ds = open_dataset(tmp.str(), no_cache());
  CHECK_THROWS_WITH_AS(data::EpisodeSampler(ds, "train", {5, 1, 1}, 0),
                       doctest::Contains("5-way episodes need 5 classes but split 'train'"), Error);
  CHECK_THROWS_WITH_AS(
      data::EpisodeSampler(ds, "train", {2, 1, 2}, 0),
      doctest::Contains("class 'train/class03' of split 'train' has 2 images, fewer than shots + "
                        "queries = 1 + 2 = 3"),
      Error);
  CHECK_THROWS_WITH_AS(data::EpisodeSampler(ds, "val", {2, 1, 1}, 0), doctest::Contains("no split 'val'"),
                       Error);
  CHECK_THROWS_AS(data::EpisodeSampler(ds, "train", {0, 1, 1}, 0), Error);
  CHECK_NOTHROW(data::EpisodeSampler(ds, "train", {4, 1, 1}, 0));
  // Zero queries is a valid request (support only).
  const data::Episode ep = data::EpisodeSampler(ds, "train", {4, 2, 0}, 0).episode(3);
  CHECK(ep.query_x.shape() == tensor::Shape{0, 1, 28, 28});
  CHECK(ep.query_y.numel() == 0);
  CHECK(ep.support_y.numel() == 8);
}

TEST_CASE("data: episodes within an alphabet follow Lake's trials") {
  TempDir tmp("lake");
  make_omniglot(tmp.path(), 6, 2, 4, 6);  // 24 background + 8 evaluation characters, drawers 1 to 6
  auto ds = open_dataset(tmp.str(), no_cache());
  CHECK(ds->drawer(0) == 1);
  CHECK(ds->drawer(5) == 6);
  CHECK(ds->alphabet(ds->split("evaluation").classes[0].base_class) == "Beta0");
  // Lake's validation alphabets: round(6 * 5 / 30) = 1 of the 6 background alphabets, the rest to train on.
  auto alphabets_of = [&](const std::string& split) {
    std::set<std::string> out;
    for (const auto& c : ds->split(split).classes) out.insert(ds->alphabet(c.base_class));
    return out;
  };
  const std::set<std::string> held = alphabets_of("background-val"), kept = alphabets_of("background-train");
  CHECK(held.size() == 1);
  CHECK(kept.size() == 5);
  for (const std::string& a : held) CHECK(kept.count(a) == 0);
  CHECK(ds->class_count("background-train") + ds->class_count("background-val") == ds->class_count("background"));
  CHECK_FALSE(ds->split("background-val").rotated);
  CHECK(std::vector<std::string>(held.begin(), held.end()) ==
        data::background_val_alphabets({{"Alpha0", 4}, {"Alpha1", 4}, {"Alpha2", 4}, {"Alpha3", 4}, {"Alpha4", 4},
                                        {"Alpha5", 4}},
                                       1));

  auto of_class = [&](int64_t image, const std::string& name) {
    for (int64_t c = 0; c < ds->base_class_count(); ++c)
      if (ds->base_class(c).name == name)
        return image >= ds->base_class(c).first_image &&
               image < ds->base_class(c).first_image + ds->base_class(c).image_count;
    return false;
  };
  // Every episode: the characters of one alphabet; one drawer for all the support images, and each query by
  // a drawer who drew no support image; queries by distinct drawers within a class.
  for (const char* split : {"background", "evaluation"}) {
    data::EpisodeSampler s(ds, split, {4, 1, 3}, 7, data::Within::alphabet);
    CHECK(s.alphabets().size() == (std::string(split) == "background" ? 6u : 2u));
    std::set<std::string> alphabets_met;
    std::set<int32_t> support_drawers_met;
    for (uint64_t i = 0; i < 200; ++i) {
      const data::Episode ep = s.episode(i);
      std::set<std::string> alphabets;
      for (const std::string& n : ep.class_names) alphabets.insert(n.substr(0, n.find('/')));
      REQUIRE(alphabets.size() == 1);
      alphabets_met.insert(*alphabets.begin());
      REQUIRE(ep.support_images.size() == 4);
      REQUIRE(ep.query_images.size() == 12);
      const int32_t d = ds->drawer(ep.support_images[0]);
      support_drawers_met.insert(d);
      for (int64_t image : ep.support_images) CHECK(ds->drawer(image) == d);
      for (int64_t w = 0; w < 4; ++w) {
        std::set<int32_t> query_drawers;
        for (int64_t q = 0; q < 3; ++q) {
          const int64_t image = ep.query_images[static_cast<size_t>(w * 3 + q)];
          CHECK(ds->drawer(image) != d);
          query_drawers.insert(ds->drawer(image));
          CHECK(of_class(image, ep.class_names[static_cast<size_t>(w)]));
        }
        CHECK(of_class(ep.support_images[static_cast<size_t>(w)], ep.class_names[static_cast<size_t>(w)]));
        CHECK(query_drawers.size() == 3);
      }
    }
    CHECK(alphabets_met.size() == s.alphabets().size());
    CHECK(support_drawers_met.size() == 6);
    // A pure function of (seed, split, index): the same twice and at any thread count.
    std::vector<uint64_t> serial(100), par(100);
    for (size_t i = 0; i < serial.size(); ++i) serial[i] = episode_hash(s.episode(i));
#pragma omp parallel for num_threads(2) schedule(dynamic, 3)
    for (int64_t i = 0; i < 100; ++i) par[static_cast<size_t>(i)] = episode_hash(s.episode(static_cast<uint64_t>(i)));
    CHECK(par == serial);
  }
  // Rotated: each rotation of an alphabet is an alphabet of its own.
  data::EpisodeSampler rot(ds, "train", {2, 1, 1}, 3, data::Within::alphabet);
  for (const std::string& a : rot.alphabets()) CHECK(a.find("/rot") != std::string::npos);
  for (uint64_t i = 0; i < 50; ++i) {
    const data::Episode ep = rot.episode(i);
    auto group = [](const std::string& n) { return n.substr(0, n.find('/')) + n.substr(n.rfind('/')); };
    CHECK(group(ep.class_names[0]) == group(ep.class_names[1]));
  }
}

TEST_CASE("data: episodes within an alphabet refuse what they cannot serve") {
  TempDir tmp("lake-refuse");
  make_omniglot(tmp / "omni", 2, 2, 4, 3);
  auto ds = open_dataset((tmp / "omni").string(), no_cache());
  CHECK_THROWS_WITH_AS(data::EpisodeSampler(ds, "evaluation", {5, 1, 1}, 0, data::Within::alphabet),
                       doctest::Contains("5-way episodes need an alphabet with 5 characters, but the largest of "
                                         "split 'evaluation' ('Beta0') has 4; use --ways 4 or fewer"),
                       Error);
  CHECK_NOTHROW(data::EpisodeSampler(ds, "evaluation", {5, 1, 1}, 0, data::Within::any));
  CHECK_NOTHROW(data::EpisodeSampler(ds, "evaluation", {4, 1, 2}, 0, data::Within::alphabet));
  // Four images by two drawers: enough images for 1 + 2, not enough drawers.
  const fs::path ch = tmp / "omni" / "images_evaluation" / "Beta0" / "character01";
  fs::remove_all(ch);
  for (const char* name : {"0001_01.png", "0002_01.png", "0003_02.png", "0004_02.png"})
    write_test_image(ch / name, 30, 30, 1, name[3] - '0');
  auto two = open_dataset((tmp / "omni").string(), no_cache());
  CHECK_NOTHROW(data::EpisodeSampler(two, "evaluation", {2, 1, 2}, 0, data::Within::any));
  CHECK_THROWS_WITH_AS(data::EpisodeSampler(two, "evaluation", {2, 1, 2}, 0, data::Within::alphabet),
                       doctest::Contains("character 'Beta0/character01' of split 'evaluation' has images by 2 "
                                         "known drawers (from file names like 0965_07.png: drawer 7), fewer than "
                                         "shots + queries = 3"),
                       Error);
  // File names that do not say who drew them.
  make_class_folders(tmp / "omni2" / "images_evaluation" / "Gamma", 4, 4);
  auto unnamed = open_dataset((tmp / "omni2").string(), no_cache());
  CHECK_THROWS_WITH_AS(data::EpisodeSampler(unnamed, "evaluation", {2, 1, 1}, 0, data::Within::alphabet),
                       doctest::Contains("has images by 0 known drawers (from file names like 0965_07.png"),
                       Error);
  // Not Omniglot's layout.
  make_class_folders(tmp / "folders", 4, 4);
  auto folders = open_dataset((tmp / "folders").string(), no_cache());
  CHECK_THROWS_WITH_AS(data::EpisodeSampler(folders, "all", {2, 1, 1}, 0, data::Within::alphabet),
                       doctest::Contains("--episodes-within alphabet needs a dataset in the Omniglot layout"), Error);
  CHECK_THROWS_WITH_AS(data::parse_within("alphabets"),
                       doctest::Contains("--episodes-within must be any (classes from anywhere in the split) or "
                                         "alphabet"),
                       Error);
}

// Note [Input normalisation]: the statistics meta-train fills input_mean and input_std with, against the same
// sums done here in double: per channel, every base image of the split once (a rotated copy of a class adds
// nothing), population standard deviation, in [0, 1] units.
TEST_CASE("data: channel statistics of a split count each base image once, per channel") {
  data::Dataset::Contents c;
  c.source = "test";
  c.layout = data::Layout::folder;
  c.image = {3, 2, 2};
  c.classes = {{"a", 0, 2}, {"b", 2, 1}, {"c", 3, 1}};
  for (int i = 0; i < 4; ++i)
    for (int k = 0; k < 12; ++k) c.pixels.push_back(static_cast<uint8_t>((i * 97 + k * k * 29 + 13) % 256));
  c.splits = {{"train", {{0, 0}, {0, 1}, {1, 0}}, true, 0}, {"test", {{1, 0}}, false, 0}, {"flat", {{2, 0}}, false, 0}};
  // Image 3 has a constant first channel.
  for (int k = 0; k < 4; ++k) c.pixels[static_cast<size_t>(3 * 12 + k)] = 200;
  const data::Dataset ds(std::move(c));
  const data::ChannelStatistics st = data::channel_statistics(ds, "train");
  REQUIRE(st.mean.size() == 3);
  REQUIRE(st.std.size() == 3);
  for (int ch = 0; ch < 3; ++ch) {
    double sum = 0, squares = 0;
    for (int image : {0, 1, 2})
      for (int k = 0; k < 4; ++k) {
        const double v = ds.image_u8(image)[ch * 4 + k] / 255.0;
        sum += v;
        squares += v * v;
      }
    const double mean = sum / 12, sd = std::sqrt(squares / 12 - mean * mean);
    CHECK(st.mean[static_cast<size_t>(ch)] == doctest::Approx(mean).epsilon(1e-6));
    CHECK(st.std[static_cast<size_t>(ch)] == doctest::Approx(sd).epsilon(1e-6));
  }
  // One image: its own statistics.
  const data::ChannelStatistics one = data::channel_statistics(ds, "test");
  CHECK(one.mean[1] == doctest::Approx((ds.image_u8(2)[4] + ds.image_u8(2)[5] + ds.image_u8(2)[6] + ds.image_u8(2)[7]) /
                                       (4 * 255.0)).epsilon(1e-6));
  CHECK_THROWS_WITH(data::channel_statistics(ds, "flat"),
                    doctest::Contains("channel 0 of split 'flat' has the same value in every pixel"));
}

}  // namespace
}  // namespace metafew::testing
