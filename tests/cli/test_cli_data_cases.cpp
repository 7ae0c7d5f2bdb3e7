// Data as users have it (issue 30, item 2): a flat folder of classes, a folder with train/ and test/ only,
// files the scan skips, colour images read as grayscale, uneven shots in adapt, images drawn the other way
// round from a model's training data. Each gets either behaviour that works or a message naming the flags
// that do, and the flags named are run to show that they work.
#include <doctest/doctest.h>
#include <stb/stb_image_write.h>

#include "support/cli_run.h"

namespace metafew::testing::cli {
namespace {

// `count` images of glyph class `base_class` (builtin:glyphs, light strokes on dark) as dir/<i>.png; with
// `inverted`, dark strokes on light (as Omniglot's files are drawn).
void write_glyph_class(const fs::path& dir, int64_t base_class, int count, bool inverted = false) {
  static const auto ds = data::open_dataset("builtin:glyphs", {});
  fs::create_directories(dir);
  std::vector<float> img(28 * 28);
  const int64_t first = ds->base_class(base_class).first_image;
  for (int i = 0; i < count; ++i) {
    ds->read_image(first + i, 0, img.data());
    if (inverted)
      for (float& v : img) v = 1.0f - v;
    write_png(dir / (std::to_string(i) + ".png"), img.data(), 28);
  }
}

std::string class_dir(int c) {
  std::string s = "shape";
  s += std::to_string(c);
  return s;
}

int count_lines_with(const std::string& text, const std::string& fragment) {
  int n = 0;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) n += line.find(fragment) != std::string::npos;
  return n;
}

// A quick ProtoNets run on a user folder: 28x28 grayscale, small conv-4, few iterations.
std::string train_on(const fs::path& data, const std::string& extra) {
  return "meta-train --data " + data.string() +
         " --algo protonet --filters 8 --shots 1 --queries 2 --meta-batch 2 --iterations 4 --val-every 4 "
         "--val-episodes 4 --log-every 4 --threads 2 " + extra;
}

}  // namespace

TEST_CASE("cli data: a flat folder of ten classes gets a message naming the flags that fit, and each of them works") {
  TempDir tmp;
  const fs::path data = tmp.path / "flat";
  for (int c = 0; c < 10; ++c) write_glyph_class(data / class_dir(c), c, 4);

  // The default 5-way task does not fit the 2 validation classes of a 64/16/20% split of 10.
  Result plain = metafew(train_on(data, "--out " + (tmp.path / "plain").string()), tmp.path);
  expect_error(plain, 2, "split 'val' of " + data.string() + " has 2 classes, fewer than the 5 of a 5-way task");
  CHECK(plain.err.find("the splits: train 6, val 2, test 2") != std::string::npos);
  CHECK(plain.err.find("a folder without train/val/test folders is split 64/16/20% by class") != std::string::npos);
  CHECK(plain.err.find("--ways 2 --test-ways 2") != std::string::npos);
  CHECK(plain.err.find("--val-split ''") != std::string::npos);
  CHECK(plain.err.find("metafew data --data " + data.string() + " --write-split splits.txt") != std::string::npos);
  CHECK(plain.err.find("--split-file splits.txt") != std::string::npos);
  CHECK(plain.err.find("hint: run 'metafew meta-train --help'") != std::string::npos);

  // Each named fix runs.
  const fs::path two_way = tmp.path / "two_way";
  Result fewer = metafew(train_on(data, "--ways 2 --test-ways 2 --out " + two_way.string()), tmp.path);
  INFO(fewer.err);
  CHECK(fewer.code == 0);
  const fs::path no_val = tmp.path / "no_val";
  Result without = metafew(train_on(data, "--val-split '' --out " + no_val.string()), tmp.path);
  INFO(without.err);
  REQUIRE(without.code == 0);

  const fs::path splits = tmp.path / "splits.txt";
  REQUIRE(metafew("data --data " + data.string() + " --write-split " + splits.string(), tmp.path).code == 0);
  // The user's edit: 5 classes to train on, none to validate on, 5 to test on.
  {
    std::ofstream out(splits, std::ios::trunc);
    out << "[train]\n";
    for (int c = 0; c < 5; ++c) out << class_dir(c) << "\n";
    out << "[test]\n";
    for (int c = 5; c < 10; ++c) out << class_dir(c) << "\n";
  }
  const fs::path own = tmp.path / "own";
  Result with_file =
      metafew(train_on(data, "--val-split '' --split-file " + splits.string() + " --out " + own.string()), tmp.path);
  INFO(with_file.err);
  REQUIRE(with_file.code == 0);
  Result ev_own = metafew("eval --checkpoint " + own.string() + " --episodes 4 --json", tmp.path);
  INFO(ev_own.err);
  REQUIRE(ev_own.code == 0);
  CHECK(json::parse(ev_own.out)["ways"] == 5);

  // eval of the ratio-split run: its test split has 2 classes; the message names --split all, which works
  // and draws from all ten classes.
  Result ev = metafew("eval --checkpoint " + no_val.string() + " --episodes 4", tmp.path);
  expect_error(ev, 2, "split 'test' of " + data.string() + " has 2 classes, fewer than the 5 of a 5-way task");
  CHECK(ev.err.find("--ways 2 or fewer, or --split all (every class of the dataset: 10)") != std::string::npos);
  CHECK(ev.err.find("hint: run 'metafew eval --help'") != std::string::npos);
  Result all = metafew("eval --checkpoint " + no_val.string() + " --split all --episodes 20 --json --no-record", tmp.path);
  INFO(all.err);
  REQUIRE(all.code == 0);
  const json aj = json::parse(all.out);
  CHECK(aj["split"] == "all");
  CHECK(aj["ways"] == 5);
  // 20 episodes of 5 classes out of 10: more than the 6 training classes are met, so "all" is not "train".
  CHECK(aj["per_class"].size() > 6);
  for (const auto& pc : aj["per_class"].items()) CHECK(pc.key().rfind("shape", 0) == 0);
}

TEST_CASE("cli data: a folder with train/ and test/ only names --val-split '' (meta-train) and --split all (eval)") {
  TempDir tmp;
  const fs::path data = tmp.path / "two_splits";
  for (int c = 0; c < 6; ++c) write_glyph_class(data / "train" / class_dir(c), c, 4);
  for (int c = 6; c < 11; ++c) write_glyph_class(data / "test" / class_dir(c), c, 4);
  Result plain = metafew(train_on(data, "--out " + (tmp.path / "plain").string()), tmp.path);
  expect_error(plain, 2, "meta-train: " + data.string() + " has no split 'val' (its splits: train 6, test 5)");
  CHECK(plain.err.find("Use --val-split '' (train without validation)") != std::string::npos);
  CHECK(plain.err.find("--split-file splits.txt") != std::string::npos);
  const fs::path run = tmp.path / "run";
  Result fixed = metafew(train_on(data, "--val-split '' --out " + run.string()), tmp.path);
  INFO(fixed.err);
  REQUIRE(fixed.code == 0);
  Result ev_val = metafew("eval --checkpoint " + run.string() + " --split val --episodes 4", tmp.path);
  expect_error(ev_val, 2, "eval: " + data.string() + " has no split 'val'");
  CHECK(ev_val.err.find("--split all (every class of the dataset: 11)") != std::string::npos);
  Result ev = metafew("eval --checkpoint " + run.string() + " --episodes 4 --json --no-record", tmp.path);
  INFO(ev.err);
  REQUIRE(ev.code == 0);
  CHECK(json::parse(ev.out)["split"] == "test");
}

TEST_CASE("cli data: skipped files are counted by kind in `data` and warned in one line by meta-train, eval, adapt") {
  TempDir tmp;
  const fs::path data = tmp.path / "mixed";
  for (int c = 0; c < 10; ++c) write_glyph_class(data / class_dir(c), c, 4);
  // What a user's folder holds besides PNGs: WebP files (not read), a folder one level too deep, a note, a
  // hidden file from a file manager.
  for (int c = 0; c < 3; ++c) std::ofstream(data / class_dir(c) / "extra.webp") << "RIFF....WEBP";
  write_glyph_class(data / class_dir(4) / "more", 20, 2);
  std::ofstream(data / "README.txt") << "my classes\n";
  std::ofstream(data / class_dir(5) / ".DS_Store") << "x";

  Result scan = metafew("data --data " + data.string(), tmp.path);
  INFO(scan.out, scan.err);
  REQUIRE(scan.code == 0);
  CHECK(scan.out.find("skipped     5 non-image files (3 .webp, 1 .txt, 1 hidden), 0 links") != std::string::npos);

  const fs::path run = tmp.path / "run";
  Result train = metafew(train_on(data, "--val-split '' --out " + run.string()), tmp.path);
  INFO(train.err);
  REQUIRE(train.code == 0);
  CHECK(count_lines_with(train.err, "were skipped") == 1);
  CHECK(train.err.find("meta-train: warning: 5 files of " + data.string() +
                       " were skipped (3 .webp, 1 .txt, 1 folders inside class folders or images outside them)") !=
        std::string::npos);
  CHECK(train.err.find("`metafew data --data " + data.string() + "` lists them") != std::string::npos);
  CHECK(train.err.find(".DS_Store") == std::string::npos);
  Result ev = metafew("eval --checkpoint " + run.string() + " --split all --episodes 2 --no-record", tmp.path);
  INFO(ev.err);
  REQUIRE(ev.code == 0);
  CHECK(count_lines_with(ev.err, "eval: warning: 5 files of") == 1);

  // A clean folder gets no warning.
  const fs::path clean = tmp.path / "clean";
  for (int c = 0; c < 10; ++c) write_glyph_class(clean / class_dir(c), c, 4);
  Result quiet = metafew(train_on(clean, "--val-split '' --out " + (tmp.path / "quiet").string()), tmp.path);
  REQUIRE(quiet.code == 0);
  CHECK(quiet.err.find("warning") == std::string::npos);

  // adapt: the same in its support and query folders, one line each.
  for (int c = 0; c < 3; ++c) {
    write_glyph_class(tmp.path / "support" / class_dir(c), 30 + c, 1);
    write_glyph_class(tmp.path / "query" / class_dir(c), 30 + c, 2);
  }
  std::ofstream(tmp.path / "support" / class_dir(0) / "photo.webp") << "RIFF";
  fs::create_directories(tmp.path / "support" / class_dir(1) / "nested");
  std::ofstream(tmp.path / "query" / class_dir(2) / "photo.heic") << "x";
  Result ad = metafew("adapt --checkpoint " + run.string() + " --support " + (tmp.path / "support").string() +
                          " --query " + (tmp.path / "query").string(),
                      tmp.path);
  INFO(ad.err);
  REQUIRE(ad.code == 0);
  CHECK(count_lines_with(ad.err, "were skipped") == 2);
  CHECK(ad.err.find("adapt: warning: 2 entries of the support folder " + (tmp.path / "support").string() +
                    " were skipped (1 .webp, 1 folders inside class folders)") != std::string::npos);
  CHECK(ad.err.find("adapt: warning: 1 entries of the query folder " + (tmp.path / "query").string() +
                    " were skipped (1 .heic)") != std::string::npos);
  CHECK(count_lines_with(ad.out, ".png") == 6);  // every image still labelled
}

TEST_CASE("cli data: colour images read as grayscale are warned about unless --channels is given") {
  TempDir tmp;
  const fs::path data = tmp.path / "colour";
  for (int c = 0; c < 10; ++c) {
    fs::create_directories(data / class_dir(c));
    for (int i = 0; i < 4; ++i) {
      std::vector<unsigned char> px(16 * 16 * 3);
      for (size_t k = 0; k < px.size(); ++k) px[k] = static_cast<unsigned char>((k % 3 == 0 ? 40 * c : 17 * i) % 256);
      REQUIRE(stbi_write_png((data / class_dir(c) / (std::to_string(i) + ".png")).string().c_str(), 16, 16, 3,
                             px.data(), 16 * 3) != 0);
    }
  }
  Result grey = metafew(train_on(data, "--image-size 16 --val-split '' --out " + (tmp.path / "grey").string()), tmp.path);
  INFO(grey.err);
  REQUIRE(grey.code == 0);
  CHECK(count_lines_with(grey.err, "warning") == 1);
  CHECK(grey.err.find("meta-train: warning: " + data.string() + " holds colour images (8 of 8 sampled) and they are "
                      "read as grayscale (--channels 1, the default); pass --channels 3 to keep the colour") !=
        std::string::npos);
  Result rgb = metafew(train_on(data, "--image-size 16 --channels 3 --val-split '' --out " + (tmp.path / "rgb").string()),
                       tmp.path);
  INFO(rgb.err);
  REQUIRE(rgb.code == 0);
  CHECK(rgb.err.find("warning") == std::string::npos);
  // A grayscale folder gets no warning (the other tests' runs check that too).
}

// Note [Uneven shots] (adapt.cpp): classes may bring different numbers of support images. With ProtoNets
// the labels must follow the folders: renaming the 3-image class so that it sorts last instead of first
// changes the order of the support set and of the labels but no prototype, so every probability stays the
// same up to the summation order of batch norm's statistics.
TEST_CASE("cli: adapt takes uneven shots; ProtoNets' probabilities do not depend on which class comes first") {
  TempDir tmp;
  const fs::path run = tmp.path / "run";
  REQUIRE(metafew("meta-train " + small("--algo protonet --iterations 40 --out " + run.string()), tmp.path).code == 0);
  auto make_support = [&](const fs::path& dir, const std::string& big_name) {
    write_glyph_class(dir / big_name, 900, 3);
    for (int c = 1; c < 5; ++c) write_glyph_class(dir / class_dir(c), 900 + c, 1 + c % 2);
  };
  make_support(tmp.path / "first", "a_big");
  make_support(tmp.path / "last", "z_big");
  fs::create_directories(tmp.path / "query");
  std::vector<float> img(28 * 28);
  auto ds = data::open_dataset("builtin:glyphs", {});
  for (int c = 0; c < 5; ++c)
    for (int i = 3; i < 6; ++i) {
      ds->read_image(ds->base_class(900 + c).first_image + i, 0, img.data());
      write_png(tmp.path / "query" / (std::to_string(c) + "_" + std::to_string(i) + ".png"), img.data(), 28);
    }
  auto adapt = [&](const fs::path& support) {
    Result r = metafew("adapt --checkpoint " + run.string() + " --support " + support.string() + " --query " +
                           (tmp.path / "query").string() + " --json",
                       tmp.path);
    INFO(r.err);
    REQUIRE(r.code == 0);
    CHECK(r.err.find("the support classes have 1 to 3 images each (uneven shots)") != std::string::npos);
    return json::parse(r.out);
  };
  const json first = adapt(tmp.path / "first"), last = adapt(tmp.path / "last");
  REQUIRE(first["predictions"].size() == 15);
  REQUIRE(last["predictions"].size() == 15);
  int right = 0;
  for (size_t i = 0; i < 15; ++i) {
    const json& a = first["predictions"][i];
    const json& b = last["predictions"][i];
    CAPTURE(a);
    CAPTURE(b);
    REQUIRE(a["file"] == b["file"]);
    const std::string la = a["label"], lb = b["label"];
    CHECK((la == lb || (la == "a_big" && lb == "z_big")));
    for (int c = 1; c < 5; ++c)
      CHECK(a["probabilities"][class_dir(c)].get<double>() ==
            doctest::Approx(b["probabilities"][class_dir(c)].get<double>()).epsilon(1e-5));
    CHECK(a["probabilities"]["a_big"].get<double>() ==
          doctest::Approx(b["probabilities"]["z_big"].get<double>()).epsilon(1e-5));
    const std::string file = fs::path(a["file"].get<std::string>()).filename().string();
    const std::string truth = file[0] == '0' ? "a_big" : class_dir(file[0] - '0');
    right += la == truth;
  }
  // Glyph classes are easy: a model 40 iterations in labels most queries right with uneven shots too.
  CHECK(right >= 10);
  // A gradient-based algorithm adapts on uneven shots as well (mean loss over the 8 support images).
  const fs::path maml = tmp.path / "maml";
  REQUIRE(metafew("meta-train " + small("--algo maml --iterations 2 --out " + maml.string()), tmp.path).code == 0);
  Result m = metafew("adapt --checkpoint " + maml.string() + " --support " + (tmp.path / "first").string() +
                         " --query " + (tmp.path / "query").string() + " --json",
                     tmp.path);
  INFO(m.err);
  REQUIRE(m.code == 0);
  CHECK(json::parse(m.out)["predictions"].size() == 15);
}

// Note [Polarity] (adapt.cpp): the checkpoint records the mean brightness of its training images; images
// drawn the other way round are warned about with the --invert value that fixes them, and with it adapt and
// predict see exactly the images the model was trained on.
TEST_CASE("cli: adapt warns about images of the other polarity and --invert yes restores the model's view") {
  TempDir tmp;
  const fs::path run = tmp.path / "run";
  REQUIRE(metafew("meta-train " + small("--algo protonet --iterations 4 --out " + run.string()), tmp.path).code == 0);
  const json pre = io::load_checkpoint((run / "last").string()).header["preprocessing"];
  REQUIRE(pre.contains("mean"));
  CHECK(pre["invert"] == false);
  CHECK(pre["mean"].get<double>() < 0.5);  // glyphs: light strokes on dark
  for (int c = 0; c < 5; ++c) {
    write_glyph_class(tmp.path / "plain" / "support" / class_dir(c), 900 + c, 1);
    write_glyph_class(tmp.path / "plain" / "query" / class_dir(c), 900 + c, 3);
    write_glyph_class(tmp.path / "dark" / "support" / class_dir(c), 900 + c, 1, true);
    write_glyph_class(tmp.path / "dark" / "query" / class_dir(c), 900 + c, 3, true);
  }
  auto adapt = [&](const std::string& set, const std::string& extra) {
    return metafew("adapt --checkpoint " + run.string() + " --support " + (tmp.path / set / "support").string() +
                       " --query " + (tmp.path / set / "query").string() + " --json " + extra,
                   tmp.path);
  };
  Result plain = adapt("plain", "");
  INFO(plain.err);
  REQUIRE(plain.code == 0);
  CHECK(plain.err.find("warning") == std::string::npos);
  Result dark = adapt("dark", "");
  INFO(dark.err);
  REQUIRE(dark.code == 0);
  CHECK(dark.err.find("adapt: warning: after preprocessing the support images are mostly light") != std::string::npos);
  CHECK(dark.err.find("pass --invert yes") != std::string::npos);
  const fs::path adapted = tmp.path / "adapted.mf";
  Result fixed = adapt("dark", "--invert yes --save-adapted " + adapted.string());
  INFO(fixed.err);
  REQUIRE(fixed.code == 0);
  CHECK(fixed.err.find("warning") == std::string::npos);
  // The inverted files, inverted back, are the plain files' pixels: the same probabilities, bit for bit.
  const json pj = json::parse(plain.out), fj = json::parse(fixed.out);
  REQUIRE(pj["predictions"].size() == fj["predictions"].size());
  for (size_t i = 0; i < pj["predictions"].size(); ++i)
    CHECK(pj["predictions"][i]["probabilities"] == fj["predictions"][i]["probabilities"]);
  CHECK(pj["accuracy"] == fj["accuracy"]);
  // The adapted model remembers the inversion; predict --invert no overrides it.
  CHECK(io::load_checkpoint(adapted.string()).header["preprocessing"]["invert"] == true);
  Result pr = metafew("predict --model " + adapted.string() + " --query " + (tmp.path / "dark" / "query").string() +
                          " --json",
                      tmp.path);
  INFO(pr.err);
  REQUIRE(pr.code == 0);
  CHECK(json::parse(pr.out)["predictions"] == fj["predictions"]);
  Result pr_no = metafew("predict --model " + adapted.string() + " --query " + (tmp.path / "dark" / "query").string() +
                             " --json --invert no",
                         tmp.path);
  REQUIRE(pr_no.code == 0);
  CHECK(json::parse(pr_no.out)["predictions"] != fj["predictions"]);
  expect_error(adapt("dark", "--invert maybe"), 2, "adapt: --invert must be yes or no, got 'maybe'");
}

}  // namespace metafew::testing::cli
