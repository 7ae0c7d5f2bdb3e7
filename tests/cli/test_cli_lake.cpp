// Lake's protocol end to end (issue 29): a generated folder in Omniglot's layout, meta-trained on the
// background alphabets not held out, validated on within-alphabet trials of the held-out ones, and evaluated
// on within-alphabet trials of images_evaluation; and the errors of --episodes-within.
#include <doctest/doctest.h>

#include <set>

#include "support/cli_run.h"

namespace metafew::testing::cli {
namespace {

// ROOT/images_{background,evaluation}/A<a>/character<c>/<id>_<drawer>.png from glyph classes: 6 background
// and 2 evaluation alphabets of 5 characters, 8 drawers each. Lake's validation split holds out
// round(6 * 5 / 30) = 1 background alphabet.
fs::path write_omniglot_like(const fs::path& dir) {
  auto glyphs = data::open_dataset("builtin:glyphs", {});
  const data::Split& train = glyphs->split("train");
  std::vector<float> img(28 * 28);
  int id = 0;
  for (const auto& [group, alphabets] : {std::pair{"images_background", 6}, {"images_evaluation", 2}})
    for (int a = 0; a < alphabets; ++a)
      for (int c = 1; c <= 5; ++c, ++id) {
        const data::SplitClass& sc = train.classes[static_cast<size_t>(id * 3)];
        const int64_t first = glyphs->base_class(sc.base_class).first_image;
        char rel[96];
        for (int d = 1; d <= 8; ++d) {
          glyphs->read_image(first + d - 1, 0, img.data());
          for (float& v : img) v = 1.0f - v;  // dark strokes on white, as Omniglot's files are
          std::snprintf(rel, sizeof(rel), "%s/A%d%s/character%02d/%04d_%02d.png", group, a, group[7] == 'b' ? "" : "e",
                        c, id, d);
          fs::create_directories((dir / rel).parent_path());
          write_png(dir / rel, img.data(), 28);
        }
      }
  return dir;
}

TEST_CASE("cli: Lake's protocol - within-alphabet validation and evaluation") {
  TempDir tmp;
  const fs::path d = tmp.path;
  const fs::path omni = write_omniglot_like(d / "omni");
  const std::string data = " --data " + omni.string() + " --cache-dir " + (d / "cache").string();
  const fs::path run = d / "run";
  Result train = metafew("meta-train --algo protonet --filters 16 --ways 5 --shots 1 --queries 3 --iterations 20 "
                         "--val-every 10 --val-episodes 12 --log-every 10 --threads 2 --train-split background-train "
                         "--val-split background-val --test-episodes-within alphabet --out " +
                             run.string() + data,
                         d);
  INFO(train.err);
  REQUIRE(train.code == 0);
  const json config = json::parse(slurp(run / "config.json"));
  CHECK(config["episodes_within"] == "any");
  CHECK(config["test_episodes_within"] == "alphabet");
  int validations = 0;
  std::istringstream lines(slurp(run / "metrics.jsonl"));
  for (std::string line; std::getline(lines, line);)
    if (line.find("\"split\"") != std::string::npos) ++validations;
  CHECK(validations == 2);

  // eval takes the run's within-alphabet trials unless told otherwise; every class it met is of the
  // evaluation alphabets.
  const std::string common = "eval --checkpoint " + run.string() + " --split evaluation --episodes 40 --json --no-record";
  Result lake = metafew(common, d);
  REQUIRE(lake.code == 0);
  const json lj = json::parse(lake.out);
  CHECK(lj["episodes_within"] == "alphabet");
  std::set<std::string> alphabets;
  for (const auto& item : lj["per_class"].items()) alphabets.insert(item.key().substr(0, item.key().find('/')));
  CHECK(alphabets == std::set<std::string>{"A0e", "A1e"});
  Result same = metafew(common + " --episodes-within alphabet", d);
  REQUIRE(same.code == 0);
  CHECK(json::parse(same.out)["accuracy"] == lj["accuracy"]);
  // Cross-alphabet episodes mix the two alphabets: another draw, another figure.
  Result any = metafew(common + " --episodes-within any", d);
  REQUIRE(any.code == 0);
  CHECK(json::parse(any.out)["episodes_within"] == "any");
  CHECK(json::parse(any.out)["accuracy"] != lj["accuracy"]);

  // Errors name the flag and what it needs.
  expect_error(metafew(common + " --episodes-within alphabets", d), 2,
               "--episodes-within must be any (classes from anywhere in the split) or alphabet");
  expect_error(metafew(common + " --ways 6", d), 2,
               "6-way episodes need an alphabet with 6 characters, but the largest of split 'evaluation'");
  expect_error(metafew("meta-train --test-episodes-within some --out " + (d / "r").string(), d), 2,
               "--test-episodes-within must be any");
  expect_error(metafew("meta-train --data builtin:sinusoid --episodes-within alphabet --out " + (d / "r").string(), d),
               2, "--episodes-within alphabet applies to image datasets");
  expect_error(metafew("meta-train " + small("--iterations 2 --episodes-within alphabet --out ") + (d / "r2").string(), d), 2,
               "--episodes-within alphabet needs a dataset in the Omniglot layout");
}

TEST_CASE("cli: --augment affine and photo train the same at 1 and 2 threads, and differently from none") {
  TempDir tmp;
  const fs::path d = tmp.path;
  auto run = [&](const std::string& name, const std::string& extra) {
    Result r = metafew("meta-train " + small("--algo protonet --iterations 6 --val-every 3 --log-every 3 " + extra +
                                              " --out ") +
                           (d / name).string(),
                       d);
    INFO(r.err);
    REQUIRE(r.code == 0);
    return params_of(d / name / "last");
  };
  const auto one = run("one", "--augment affine --threads 1");
  const auto two = run("two", "--augment affine --threads 2");
  const auto plain = run("plain", "--augment none --threads 2");
  check_same_bits(one, two);
  bool differ = false;
  for (size_t i = 0; i < one.size(); ++i) differ |= one[i].to_vector() != plain[i].to_vector();
  CHECK(differ);
  CHECK(json::parse(slurp(d / "one" / "config.json"))["augment"] == "affine");
  // Validation is never augmented: with a meta step size of 0 the parameters stay as initialised, and the
  // training loss (augmented episodes) differs while the validation figures (plain episodes) do not.
  auto frozen = [&](const std::string& name, const std::string& augment) {
    REQUIRE(metafew("meta-train " + small("--algo protonet --iterations 3 --val-every 3 --log-every 3 --outer-lr 0 "
                                           "--augment " + augment + " --out ") +
                        (d / name).string(),
                    d)
                .code == 0);
    json train, val;
    std::istringstream lines(slurp(d / name / "metrics.jsonl"));
    for (std::string line; std::getline(lines, line);) (line.find("\"split\"") != std::string::npos ? val : train) = json::parse(line);
    return std::pair{train, val};
  };
  const auto affine = frozen("frozen_affine", "affine"), none = frozen("frozen_none", "none");
  CHECK(affine.first["loss"] != none.first["loss"]);
  CHECK(affine.second["val_accuracy"] == none.second["val_accuracy"]);
  // --augment photo, too, is the same at 1 and 2 threads.
  check_same_bits(run("photo1", "--augment photo --threads 1"), run("photo2", "--augment photo --threads 2"));
  expect_error(metafew("meta-train --augment crop --out " + (d / "r").string(), d), 2,
               "--augment must be none, affine");
  expect_error(metafew("meta-train --data builtin:sinusoid --augment affine --out " + (d / "r").string(), d), 2,
               "--augment affine applies to image datasets");
}

}  // namespace
}  // namespace metafew::testing::cli
