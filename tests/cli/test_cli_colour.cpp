// End-to-end on colour images a user might bring: a generated class-per-folder dataset of RGB PNG and JPEG
// files, meta-trained, evaluated, adapted to new classes and predicted, with conv-4 and with ResNet-12.
#include <doctest/doctest.h>
#include <stb/stb_image_write.h>

#include "support/cli_run.h"

namespace metafew::testing::cli {
namespace {

// "c<k>" (written without operator+ on a literal, which GCC 12's -Wrestrict misreads).
std::string class_name(int k) {
  std::string s = "c";
  s += std::to_string(k);
  return s;
}

// Class k's images: a disc of hue k on a background of a second hue, its place jittered by the image index;
// every third image is a JPEG. The classes differ only in colour, so a model that ignored two channels
// could not separate them.
void write_colour_class(const fs::path& dir, int k, int images, int side) {
  fs::create_directories(dir);
  auto hue = [](int h, int c) { return static_cast<unsigned char>(127 + 120 * std::sin(0.9 * h + 2.1 * c)); };
  for (int i = 0; i < images; ++i) {
    std::vector<unsigned char> px(static_cast<size_t>(side * side * 3));
    const double cx = side * 0.5 + (i % 3) - 1, cy = side * 0.5 + (i % 2), r = side * 0.3;
    for (int y = 0; y < side; ++y)
      for (int x = 0; x < side; ++x)
        for (int c = 0; c < 3; ++c)
          px[static_cast<size_t>((y * side + x) * 3 + c)] =
              std::hypot(x - cx, y - cy) < r ? hue(k, c) : hue(k + 7, c);
    const std::string stem = (dir / ("img" + std::to_string(i))).string();
    if (i % 3 == 2)
      REQUIRE(stbi_write_jpg((stem + ".jpg").c_str(), side, side, 3, px.data(), 95) != 0);
    else
      REQUIRE(stbi_write_png((stem + ".png").c_str(), side, side, 3, px.data(), side * 3) != 0);
  }
}

TEST_CASE("cli: conv-4 and ResNet-12 meta-train, evaluate, adapt and predict on a colour class-per-folder dataset") {
  TempDir tmp;
  const fs::path data = tmp.path / "colours";
  int k = 0;
  for (const auto& [split, classes] : {std::pair{"train", 8}, {"val", 5}, {"test", 5}})
    for (int c = 0; c < classes; ++c, ++k) write_colour_class(data / split / class_name(k), k, 6, 16);
  // A new task: 5 test classes, one support image each, the rest as queries.
  for (int c = 13; c < 18; ++c) {
    const fs::path from = data / "test" / class_name(c);
    fs::create_directories(tmp.path / "support" / class_name(c));
    fs::copy_file(from / "img0.png", tmp.path / "support" / class_name(c) / "img0.png");
    fs::create_directories(tmp.path / "query" / class_name(c));
    for (const char* q : {"img1.png", "img2.jpg"}) fs::copy_file(from / q, tmp.path / "query" / class_name(c) / q);
  }
  for (const std::string model : {"--model conv4 --filters 8", "--model resnet12 --widths 4,8,8,8"}) {
    CAPTURE(model);
    const fs::path run = tmp.path / (model.find("resnet") != std::string::npos ? "resnet" : "conv4");
    Result train = metafew("meta-train --data " + data.string() + " --channels 3 --image-size 16 --algo protonet " +
                               model + " --ways 5 --shots 1 --queries 3 --iterations 40 --val-every 40 --val-episodes 10 "
                               "--log-every 40 --threads 2 --out " + run.string(),
                           tmp.path);
    INFO(train.err);
    REQUIRE(train.code == 0);
    Result ev = metafew("eval --checkpoint " + run.string() + " --split test --episodes 50 --json --threads 2", tmp.path);
    INFO(ev.err);
    REQUIRE(ev.code == 0);
    const json e = json::parse(ev.out);
    CHECK(e["accuracy"].get<double>() > 0.8);  // chance is 0.2; the colours are easy once all channels are used
    const fs::path adapted = tmp.path / (run.filename().string() + ".mf");
    Result ad = metafew("adapt --checkpoint " + run.string() + " --support " + (tmp.path / "support").string() +
                            " --query " + (tmp.path / "query").string() + " --json --save-adapted " + adapted.string(),
                        tmp.path);
    INFO(ad.err);
    REQUIRE(ad.code == 0);
    const json a = json::parse(ad.out);
    int correct = 0, total = 0;
    for (const json& p : a["predictions"]) {
      const std::string file = p["file"];
      std::string folder = "/";
      folder += p["label"].get<std::string>();
      folder += '/';
      correct += file.find(folder) != std::string::npos;
      ++total;
    }
    CHECK(total == 10);
    CHECK(correct >= 8);
    Result pr = metafew("predict --model " + adapted.string() + " --query " + (tmp.path / "query").string() + " --json",
                        tmp.path);
    INFO(pr.err);
    REQUIRE(pr.code == 0);
    CHECK(json::parse(pr.out)["predictions"] == a["predictions"]);
  }
  // A grayscale image given to a colour model is refused, naming the file and the way on; with
  // --convert-channels its gray is replicated.
  const fs::path gray = tmp.path / "gray" / "x.png";
  fs::create_directories(gray.parent_path());
  std::vector<unsigned char> px(16 * 16, 90);
  REQUIRE(stbi_write_png(gray.c_str(), 16, 16, 1, px.data(), 16) != 0);
  const std::string predict = "predict --model " + (tmp.path / "conv4.mf").string() + " --query " + gray.string();
  expect_error(metafew(predict, tmp.path), 2,
               "x.png is a grayscale (1 channel) image; this model takes colour (3 channels) images: convert it, or "
               "pass --convert-channels");
  const Result converted = metafew(predict + " --convert-channels --json", tmp.path);
  INFO(converted.err);
  CHECK(converted.code == 0);
}

}  // namespace
}  // namespace metafew::testing::cli
