// End-to-end on colour images a user might bring: a generated class-per-folder dataset of RGB PNG and JPEG
// files, meta-trained, evaluated, adapted to new classes and predicted, with conv-4 and with ResNet-12; and
// the pretraining recipe (issue 27) on a second one: pretrain, test-time heads, Meta-Baseline, adapt, predict.
#include <doctest/doctest.h>
#include <stb/stb_image_write.h>

#include "data/options.h"
#include "nn/options.h"
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

// dir/colours: 8 training, 5 validation and 5 test classes of 16x16 images written by `write_class`, `images`
// each; and a new task from the 5 test classes: dir/support (img0 of each) and dir/query (img1 and `second`).
template <class WriteClass>
fs::path write_dataset(const fs::path& dir, WriteClass write_class, int images, const char* second) {
  const fs::path data = dir / "colours";
  int k = 0;
  for (const auto& [split, classes] : {std::pair{"train", 8}, {"val", 5}, {"test", 5}})
    for (int c = 0; c < classes; ++c, ++k) write_class(data / split / class_name(k), k, images, 16);
  for (int c = 13; c < 18; ++c) {
    const fs::path from = data / "test" / class_name(c);
    fs::create_directories(dir / "support" / class_name(c));
    fs::copy_file(from / "img0.png", dir / "support" / class_name(c) / "img0.png");
    fs::create_directories(dir / "query" / class_name(c));
    for (const char* q : {"img1.png", second}) fs::copy_file(from / q, dir / "query" / class_name(c) / q);
  }
  return data;
}

// adapt's labels of the task written by write_dataset: at least 8 of its 10 queries in their own class
// folder; predict with the saved model labels them the same.
void check_task_predictions(const json& adapted_out, const fs::path& adapted, const fs::path& dir) {
  int correct = 0;
  for (const json& p : adapted_out["predictions"]) {
    std::string folder = "/";
    folder += p["label"].get<std::string>();
    folder += '/';
    correct += p["file"].get<std::string>().find(folder) != std::string::npos;
  }
  CHECK(adapted_out["predictions"].size() == 10);
  CHECK(correct >= 8);
  Result pr = metafew("predict --model " + adapted.string() + " --query " + (dir / "query").string() + " --json", dir);
  INFO(pr.err);
  REQUIRE(pr.code == 0);
  CHECK(json::parse(pr.out)["predictions"] == adapted_out["predictions"]);
}

TEST_CASE("cli: conv-4 and ResNet-12 meta-train, evaluate, adapt and predict on a colour class-per-folder dataset") {
  TempDir tmp;
  const fs::path data = write_dataset(tmp.path, write_colour_class, 6, "img2.jpg");
  // conv-4 with the inputs normalised per channel (Note [Input normalisation]), ResNet-12 without.
  for (const std::string model : {"--model conv4 --filters 8 --normalize channel", "--model resnet12 --widths 4,8,8,8"}) {
    CAPTURE(model);
    const fs::path run = tmp.path / (model.find("resnet") != std::string::npos ? "resnet" : "conv4");
    Result train = metafew("meta-train --data " + data.string() + " --channels 3 --image-size 16 --algo protonet " +
                               model + " --ways 5 --shots 1 --queries 3 --iterations 40 --val-every 40 --val-episodes 10 "
                               "--log-every 40 --threads 2 --out " + run.string(),
                           tmp.path);
    INFO(train.err);
    REQUIRE(train.code == 0);
    // The training split's statistics are recorded in the run; eval, adapt and predict below take them from
    // the checkpoint (predict's labels must equal adapt's).
    const json cfg = json::parse(slurp(run / "config.json"));
    if (model.find("--normalize channel") != std::string::npos) {
      CHECK(cfg["normalize"] == "channel");
      data::OpenOptions opt;
      opt.image = {3, 16, 16};
      opt.use_cache = false;
      const data::ChannelStatistics st = data::channel_statistics(*data::open_dataset(data.string(), opt), "train");
      CHECK(cfg["input_mean"] == nn::channel_values_name(st.mean));
      CHECK(cfg["input_std"] == nn::channel_values_name(st.std));
      CHECK(train.err.find("inputs normalised per channel with split 'train'") != std::string::npos);
    } else {
      CHECK(cfg["normalize"] == "none");
      CHECK(cfg["input_mean"] == "");
    }
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
    check_task_predictions(json::parse(ad.out), adapted, tmp.path);
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

// Class k's images for the pretraining test: a small disc of hue k on a background whose hue changes from
// image to image (the nuisance that covers most of the pixels), the disc's place jittered. An untrained
// network's features follow the background; features learned on the training classes follow the disc.
void write_nuisance_class(const fs::path& dir, int k, int images, int side) {
  fs::create_directories(dir);
  auto hue = [](double h, int c) { return static_cast<unsigned char>(127 + 120 * std::sin(h + 2.1 * c)); };
  for (int i = 0; i < images; ++i) {
    std::vector<unsigned char> px(static_cast<size_t>(side * side * 3));
    const double cx = side * 0.5 + (i % 5) - 2, cy = side * 0.5 + (i % 3) - 1, r = side * 0.22;
    const double background = 0.37 * (k * 31 + i * 17 % 23) + 1.3 * i;
    for (int y = 0; y < side; ++y)
      for (int x = 0; x < side; ++x)
        for (int c = 0; c < 3; ++c)
          px[static_cast<size_t>((y * side + x) * 3 + c)] =
              std::hypot(x - cx, y - cy) < r ? hue(0.9 * k, c) : hue(background, c);
    const std::string stem = (dir / ("img" + std::to_string(i))).string();
    REQUIRE(stbi_write_png((stem + ".png").c_str(), side, side, 3, px.data(), side * 3) != 0);
  }
}

// Issue 27's recipe on a user's colour data: pretrain a backbone on the training classes, test it on new
// classes with the test-time heads, and start Meta-Baseline's ProtoNets stage from it; adapt + predict agree.
TEST_CASE("cli: pretrain, test-time heads and Meta-Baseline on a colour class-per-folder dataset") {
  TempDir tmp;
  const fs::path data = write_dataset(tmp.path, write_nuisance_class, 12, "img2.png");
  const fs::path pre = tmp.path / "pretrain";
  Result train = metafew("meta-train --data " + data.string() + " --channels 3 --image-size 16 --algo pretrain "
                         "--model conv4 --filters 8 --batch-size 16 --queries 3 --iterations 150 --optimizer sgd --outer-lr 0.05 "
                         "--momentum 0.9 --weight-decay 5e-4 --val-every 150 --val-episodes 10 --log-every 150 "
                         "--threads 2 --out " + pre.string(),
                         tmp.path);
  INFO(train.err);
  REQUIRE(train.code == 0);
  CHECK(json::parse(slurp(pre / "config.json"))["pretrain_classes"] == 8);
  auto test_accuracy = [&](const fs::path& run, const std::string& extra) {
    Result r = metafew("eval --checkpoint " + run.string() + " --split test --ways 5 --shots 1 --queries 3 --episodes 50 --json "
                       "--no-record --threads 2 " + extra,
                       tmp.path);
    INFO(r.err);
    REQUIRE(r.code == 0);
    return json::parse(r.out)["accuracy"].get<double>();
  };
  // Chance is 0.2; the five test hues were never trained on. The same network untrained (one step at
  // learning rate 0) follows the background and stays near chance, so the figures are pretraining's
  // (measured: trained centroid 93.1%, logreg 92.5%; untrained 29.3%, 29.2%).
  const fs::path untrained = tmp.path / "untrained";
  Result zero = metafew("meta-train --data " + data.string() + " --channels 3 --image-size 16 --algo pretrain "
                        "--model conv4 --filters 8 --batch-size 16 --queries 3 --iterations 1 --optimizer sgd "
                        "--outer-lr 0 --val-every 1 --val-episodes 2 --threads 2 --out " + untrained.string(),
                        tmp.path);
  INFO(zero.err);
  REQUIRE(zero.code == 0);
  for (const std::string head : {"--head centroid", "--head logreg --logreg-c 10"}) {
    CAPTURE(head);
    CHECK(test_accuracy(pre, head) > 0.85);
    CHECK(test_accuracy(untrained, head) < 0.45);
  }

  const fs::path mb = tmp.path / "metabaseline";
  Result second = metafew("meta-train --data " + data.string() + " --channels 3 --image-size 16 --algo protonet "
                          "--distance cosine --model conv4 --filters 8 --ways 5 --shots 1 --queries 3 --iterations 20 "
                          "--optimizer sgd --outer-lr 0.001 --momentum 0.9 --val-every 20 --val-episodes 10 "
                          "--threads 2 --init-from " + pre.string() + " --out " + mb.string(),
                          tmp.path);
  INFO(second.err);
  REQUIRE(second.code == 0);
  CHECK(test_accuracy(mb, "") > 0.85);  // measured 93.6%

  // adapt with the logistic-regression head on the pretrained backbone; predict from the saved model agrees.
  const fs::path adapted = tmp.path / "logreg.mf";
  Result ad = metafew("adapt --checkpoint " + pre.string() + " --head logreg --logreg-c 10 --support " +
                          (tmp.path / "support").string() + " --query " + (tmp.path / "query").string() +
                          " --json --save-adapted " + adapted.string(),
                      tmp.path);
  INFO(ad.err);
  REQUIRE(ad.code == 0);
  check_task_predictions(json::parse(ad.out), adapted, tmp.path);
}

}  // namespace
}  // namespace metafew::testing::cli
