// --algo pretrain (Note [Pretraining] in meta/pretrain.cpp): supervised training on mini-batches of every
// training class, validated and tested by nearest centroid on episodes; the same parameters at 1 and 2
// threads and after a resume; its checkpoint starts a ProtoNets run (Meta-Baseline's second stage); the
// test-time heads (--head centroid | logreg) on it and on a MAML checkpoint.
#include <doctest/doctest.h>

#include "support/cli_run.h"

namespace metafew::testing::cli {

TEST_CASE("cli: pretrain learns a classifier over the training classes, the same at 1 and 2 threads and resumed") {
  TempDir tmp;
  // 20 glyph classes to train on (a classifier the test can watch fit), 20 to validate and test on.
  const fs::path split = tmp.path / "split.txt";
  {
    std::ofstream out(split);
    for (const auto& [name, first] : {std::pair{"train", 0}, {"val", 100}, {"test", 200}}) {
      out << "[" << name << "]\n";
      for (int c = first; c < first + 20; ++c) {
        char buf[16];
        std::snprintf(buf, sizeof buf, "glyph%04d", c);
        out << buf << "\n";
      }
    }
  }
  const std::string flags = "meta-train --data builtin:glyphs --split-file " + split.string() +
                            " --algo pretrain --filters 16 --batch-size 32 --iterations 60 --log-every 10 "
                            "--optimizer sgd --outer-lr 0.05 --momentum 0.9 --weight-decay 5e-4 "
                            "--val-every 30 --val-episodes 20 --checkpoint-every 30 ";
  const fs::path one = tmp.path / "one", two = tmp.path / "two";
  Result r1 = metafew(flags + "--threads 1 --out " + one.string(), tmp.path);
  INFO(r1.err);
  REQUIRE(r1.code == 0);
  CHECK(r1.err.find("pretrain on builtin:glyphs, train (20 classes), batches of 32 images") != std::string::npos);
  Result r2 = metafew(flags + "--threads 2 --out " + two.string(), tmp.path);
  REQUIRE(r2.code == 0);
  check_same_bits(params_of(one / "last"), params_of(two / "last"));

  const json cfg = json::parse(slurp(one / "config.json"));
  CHECK(cfg["pretrain_classes"] == 20);
  const std::vector<tensor::Tensor> params = params_of(one / "last");
  REQUIRE(params.size() >= 2);
  CHECK(params[params.size() - 2].shape() == tensor::Shape{20, 16});  // classifier (classes, features)
  CHECK(params.back().shape() == tensor::Shape{20});

  // It learns: the training windows log images per second, and accuracy over the 20 classes rises from
  // near chance (5%) to nearly all in 60 batches of 32 with RFS's SGD (measured: 19% in the first window, 99%
  // in the last).
  std::vector<json> windows;
  std::ifstream metrics(one / "metrics.jsonl");
  for (std::string line; std::getline(metrics, line);) {
    json j = json::parse(line);
    if (!j.contains("split")) windows.push_back(j);
  }
  REQUIRE(windows.size() == 6);
  for (const json& w : windows) CHECK(w["images_per_second"].get<double>() > 0);
  CHECK(windows.front()["accuracy"].get<double>() < 0.3);
  CHECK(windows.back()["accuracy"].get<double>() > 0.9);
  CHECK(windows.back()["loss"].get<double>() < windows.front()["loss"].get<double>() - 1.0);

  // Stopped at 30 and resumed: the batches after the resume are the ones an uninterrupted run draws.
  const fs::path resumed = tmp.path / "resumed";
  Result half = metafew(std::string(flags).replace(flags.find("--iterations 60"), 15, "--iterations 30") +
                            "--threads 2 --out " + resumed.string(),
                        tmp.path);
  REQUIRE(half.code == 0);
  Result rest = metafew("meta-train --resume " + resumed.string() + " --iterations 60", tmp.path);
  INFO(rest.err);
  REQUIRE(rest.code == 0);
  check_same_bits(params_of(one / "last"), params_of(resumed / "last"));

  // Tested as it will be used: 5-way episodes of other classes, nearest centroid; adapt labels a task.
  Result ev = metafew("eval --checkpoint " + one.string() + " --episodes 20 --json --no-record", tmp.path);
  INFO(ev.err);
  REQUIRE(ev.code == 0);
  const json e = json::parse(ev.out);
  CHECK(e["algo"] == "pretrain");
  CHECK(e["accuracy"].get<double>() > 0.5);
  write_task_folders(tmp.path);
  Result ad = metafew("adapt --checkpoint " + one.string() + " --support " + (tmp.path / "support").string() +
                          " --query " + (tmp.path / "query").string() + " --json",
                      tmp.path);
  INFO(ad.err);
  REQUIRE(ad.code == 0);
  CHECK(json::parse(ad.out)["predictions"].size() == 15);

  // Test-time heads (Note [Test-time heads] in src/meta/heads.cpp): centroid is pretrain's own head, so the
  // same figure; logreg fits each episode's support set (measured: centroid 92.4%, logreg 90.1%, C = 1000 92.9%).
  auto eval_json = [&](const std::string& extra) {
    Result r = metafew("eval --checkpoint " + one.string() + " --episodes 20 --json --no-record " + extra, tmp.path);
    INFO(r.err);
    REQUIRE(r.code == 0);
    return json::parse(r.out);
  };
  CHECK(eval_json("--head centroid")["accuracy"] == e["accuracy"]);
  const json lr = eval_json("--head logreg");
  CHECK(lr["head"] == "logreg");
  CHECK(lr["steps"] == 0);
  CHECK(lr["accuracy"].get<double>() > 0.7);
  CHECK(lr["accuracy"] != e["accuracy"]);
  CHECK(eval_json("--head logreg --logreg-c 1000")["accuracy"] != lr["accuracy"]);
  // adapt --head logreg: the saved model keeps the head and predict labels exactly as adapt did.
  const fs::path saved = tmp.path / "logreg.mf";
  Result adl = metafew("adapt --checkpoint " + one.string() + " --head logreg --support " +
                           (tmp.path / "support").string() + " --query " + (tmp.path / "query").string() +
                           " --json --save-adapted " + saved.string(),
                       tmp.path);
  INFO(adl.err);
  REQUIRE(adl.code == 0);
  Result pr = metafew("predict --model " + saved.string() + " --query " + (tmp.path / "query").string() + " --json",
                      tmp.path);
  INFO(pr.err);
  REQUIRE(pr.code == 0);
  CHECK(json::parse(pr.out)["predictions"] == json::parse(adl.out)["predictions"]);
  CHECK(json::parse(pr.out)["predictions"] != json::parse(ad.out)["predictions"]);  // not the centroid's
  expect_error(metafew("eval --checkpoint " + one.string() + " --head svm", tmp.path), 2,
               "--head must be own, centroid or logreg, got 'svm'");
  expect_error(metafew("eval --checkpoint " + one.string() + " --head logreg --steps 3", tmp.path), 2,
               "eval: --steps applies to the algorithm's own head; the logreg head classifies the frozen");
  expect_error(metafew("eval --checkpoint " + one.string() + " --head logreg --logreg-c 0", tmp.path), 2,
               "--logreg-c must be a finite number >= 1e-06, got 0");

  // Meta-Baseline's second stage: ProtoNets with cosine prototypes from the pretrained backbone (the
  // classifier is left out; the scale starts fresh at 10 and is learned).
  Result mb = metafew("meta-train --data builtin:glyphs --split-file " + split.string() +
                          " --algo protonet --distance cosine --filters 16 --iterations 2 --val-episodes 4 --init-from " +
                          one.string() + " --out " + (tmp.path / "mb").string(),
                      tmp.path);
  INFO(mb.err);
  REQUIRE(mb.code == 0);
  CHECK(mb.err.find("; fresh: protonet.scale; not in this model, ignored: pretrain.classifier.bias, "
                    "pretrain.classifier.weight") != std::string::npos);
  const std::vector<tensor::Tensor> mb_params = params_of(tmp.path / "mb" / "last");
  REQUIRE(mb_params.back().numel() == 1);
  CHECK(mb_params.back().to_vector()[0] != 10.0);  // two steps moved the scale
  CHECK(json::parse(slurp(tmp.path / "mb" / "config.json"))["distance"] == "cosine");
  expect_error(metafew("meta-train --data builtin:glyphs --algo protonet --distance manhattan --out " +
                           (tmp.path / "bad").string(),
                       tmp.path),
               2, "--distance must be euclidean or cosine, got 'manhattan'");

  // A MAML checkpoint's 5-way head does not bind a test-time head: 3-way episodes on its features.
  Result maml = metafew("meta-train --data builtin:glyphs --split-file " + split.string() +
                            " --algo maml --filters 16 --iterations 2 --val-episodes 4 --out " + (tmp.path / "maml").string(),
                        tmp.path);
  REQUIRE(maml.code == 0);
  expect_error(metafew("eval --checkpoint " + (tmp.path / "maml").string() + " --ways 3 --episodes 4", tmp.path), 2,
               "5-way head; --ways 3 does not fit it");
  Result m3 = metafew("eval --checkpoint " + (tmp.path / "maml").string() +
                          " --ways 3 --episodes 4 --head centroid --json --no-record",
                      tmp.path);
  INFO(m3.err);
  REQUIRE(m3.code == 0);
  CHECK(json::parse(m3.out)["ways"] == 3);

  // bench times mini-batches (Note [Benchmarking pretraining] in src/cli/bench.cpp): images per second, and
  // the FLOP of a forward and backward of the batch.
  Result bench = metafew("bench --algo pretrain --filters 16 --batch-size 32 --pretrain-classes 16 --threads 1 "
                         "--warmup 0 --repeats 1 --json",
                         tmp.path);
  INFO(bench.err);
  REQUIRE(bench.code == 0);
  const json b = json::parse(bench.out);
  CHECK(b["algo"] == "pretrain");
  CHECK(b["batch_size"] == 32);
  CHECK(b["ways"] == 16);
  CHECK(b["images_per_second"].get<double>() == doctest::Approx(32 / b["seconds_per_iter_median"].get<double>()));
  CHECK(b["gflop_per_iter"].get<double>() > 0);
  // Its ceilings (Note [Bare conv of the model's layers]): forward primitives, and a training step's kernels.
  CHECK(b["step_peak_fraction"].get<double>() ==
        doctest::Approx(b["gflops"].get<double>() / b["bare_step_conv_gflops"].get<double>()));
  CHECK(b["peak_fraction"].get<double>() ==
        doctest::Approx(b["gflops"].get<double>() / b["bare_conv_gflops"].get<double>()));
  expect_error(metafew("bench --algo pretrain --pretrain-classes 1", tmp.path), 2,
               "bench: --pretrain-classes must be from 2 to 960");
  expect_error(metafew("meta-train --data builtin:sinusoid --algo pretrain --iterations 2 --out " +
                           (tmp.path / "sin").string(),
                       tmp.path),
               2, "--algo pretrain is a classification method; builtin:sinusoid is regression");
}

}  // namespace metafew::testing::cli
