// End-to-end tests of the metafew binary on builtin:glyphs: the main flows, adapt and predict, and settings
// that change a model (support/cli_run.h runs it).
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <thread>

#include "support/cli_run.h"

namespace metafew::testing::cli {
namespace {

TEST_CASE("cli: meta-train, eval, adapt and predict on builtin:glyphs, with JSON outputs") {
  TempDir tmp;
  const fs::path run = tmp.path / "run";
  Result train = metafew("meta-train " + small(" --algo maml --iterations 200 --val-every 100 --out ") +
                             run.string() + " --json",
                         tmp.path);
  INFO(train.err);
  REQUIRE(train.code == 0);
  json summary = json::parse(train.out);
  CHECK(summary["iterations"] == 200);
  CHECK(summary.contains("val_accuracy"));
  CHECK(fs::exists(run / "last"));
  CHECK(fs::exists(run / "best"));
  CHECK(json::parse(slurp(run / "config.json"))["algo"] == "maml");
  // metrics.jsonl: one JSON object per line, training lines and validation lines.
  std::ifstream metrics(run / "metrics.jsonl");
  int lines = 0, val_lines = 0;
  for (std::string line; std::getline(metrics, line); ++lines) {
    json j = json::parse(line);
    CHECK(j.contains("iteration"));
    val_lines += j.contains("val_accuracy");
    // A training line says how much memory the process holds (a few MB at least: the binary and oneDNN).
    if (!j.contains("val_accuracy")) CHECK(j.value("rss_mb", 0.0) > 5.0);
  }
  CHECK(lines == 12);  // 10 logging lines + 2 validations
  CHECK(val_lines == 2);

  Result ev = metafew("eval --checkpoint " + run.string() + " --episodes 100 --json", tmp.path);
  INFO(ev.err);
  REQUIRE(ev.code == 0);
  json e = json::parse(ev.out);
  for (const char* k : {"accuracy", "ci95", "episodes", "ways", "shots"}) CHECK(e.contains(k));
  CHECK(e["episodes"] == 100);
  CHECK(e["ways"] == 5);
  // 200 iterations of a small conv-4 on glyphs: clearly above chance (20%).
  CHECK(e["accuracy"].get<double>() > 0.35);

  // export: the model without its optimizer state evaluates identically, is smaller, and cannot be resumed.
  const fs::path exported = tmp.path / "model.mfck";
  Result ex = metafew("export --checkpoint " + run.string() + " --out " + exported.string() + " --json", tmp.path);
  INFO(ex.err);
  REQUIRE(ex.code == 0);
  CHECK(json::parse(ex.out)["optimizer_bytes_dropped"].get<int64_t>() > 0);
  CHECK(fs::file_size(exported) < fs::file_size(run / "best"));
  Result ev2 = metafew("eval --checkpoint " + exported.string() + " --episodes 100 --json", tmp.path);
  REQUIRE(ev2.code == 0);
  CHECK(json::parse(ev2.out)["accuracy"] == e["accuracy"]);
  const fs::path fake_run = tmp.path / "fake_run";
  fs::create_directories(fake_run);
  fs::copy_file(exported, fake_run / "last");
  Result res = metafew("meta-train --resume " + fake_run.string() + " --iterations 300", tmp.path);
  CHECK(res.code == 2);
  CHECK(res.err.find("without the optimizer state") != std::string::npos);

  write_task_folders(tmp.path);
  const fs::path adapted = tmp.path / "adapted.mf";
  Result ad = metafew("adapt --checkpoint " + (run / "best").string() + " --support " + (tmp.path / "support").string() +
                          " --query " + (tmp.path / "query").string() + " --json --save-adapted " + adapted.string(),
                      tmp.path);
  INFO(ad.err);
  REQUIRE(ad.code == 0);
  json a = json::parse(ad.out);
  REQUIRE(a["predictions"].size() == 15);
  for (const auto& p : a["predictions"]) {
    CHECK(p.contains("file"));
    CHECK(p.contains("label"));
    double sum = 0;
    for (auto it = p["probabilities"].begin(); it != p["probabilities"].end(); ++it) sum += it.value().get<double>();
    CHECK(sum == doctest::Approx(1.0));
    CHECK(p["probabilities"].size() == 5);
  }
  CHECK(a["accuracy"].is_number());

  Result pr = metafew("predict --model " + adapted.string() + " --query " + (tmp.path / "query").string() + " --json",
                      tmp.path);
  INFO(pr.err);
  REQUIRE(pr.code == 0);
  json p = json::parse(pr.out);
  // The saved adapted model predicts exactly what adapt did, without adapting again.
  CHECK(p["predictions"] == a["predictions"]);
  CHECK(p["accuracy"] == a["accuracy"]);
}

// Labels and probabilities of `metafew predict` on one query path (a file or folder), keyed by file name.
std::map<std::string, json> predictions_by_file(const Result& r) {
  INFO(r.err);
  REQUIRE(r.code == 0);
  const json parsed = json::parse(r.out);
  std::map<std::string, json> by_file;
  for (const auto& p : parsed["predictions"]) by_file[p["file"].get<std::string>()] = p;
  return by_file;
}

// Issue 30's first complaint: under adapt's and predict's default batch norm, an image gets the same label and
// probabilities whether it is predicted alone or among the other queries of its folder, for every algorithm
// that labels images. Explicit --bn transductive is the protocol's mode and shows the dependence (so the check
// would catch a default that leaks the batch).
TEST_CASE("cli: adapt and predict label each query independently of the rest of the folder, every algorithm") {
  TempDir tmp;
  write_task_folders(tmp.path);
  const fs::path query = tmp.path / "query";
  for (const std::string algo :
       {"maml", "fomaml", "metasgd", "anil", "reptile", "protonet", "matchingnet", "paramnet", "pretrain"}) {
    CAPTURE(algo);
    const fs::path run = tmp.path / ("run_" + algo);
    std::string flags = algo == "reptile" ? " --inner-lr 0.001 --inner-steps 2 --outer-lr 1.0" : "";
    Result train = metafew("meta-train --data builtin:glyphs --ways 5 --shots 1 --queries 5 --meta-batch 2 --filters 8 "
                           "--eval-steps 2 --iterations 30 --val-split '' --log-every 30 --threads 2 --algo " +
                               algo + flags + " --out " + run.string(),
                           tmp.path);
    INFO(train.err);
    REQUIRE(train.code == 0);
    const fs::path adapted = tmp.path / (algo + ".mf");
    Result ad = metafew("adapt --checkpoint " + run.string() + " --support " + (tmp.path / "support").string() +
                            " --query " + query.string() + " --json --save-adapted " + adapted.string(),
                        tmp.path);
    std::map<std::string, json> in_folder = predictions_by_file(ad);
    REQUIRE(in_folder.size() == 15);
    CHECK(json::parse(ad.out)["bn"] == "support");
    // predict on the whole folder labels exactly as adapt did.
    CHECK(predictions_by_file(metafew("predict --model " + adapted.string() + " --query " + query.string() + " --json",
                                      tmp.path)) == in_folder);
    // Each class's first query alone (5 images; all 15 would triple the test's time): the same label and the same
    // probabilities. Bitwise equality is not promised (a batch of 1 may take other convolution kernels than a
    // batch of 15), so the probabilities get float32 rounding room.
    auto expect_alone_equal = [&](const std::map<std::string, json>& folder, const std::string& mode) {
      for (const auto& entry : folder) {  // no structured binding: clang 14 cannot capture one in CAPTURE
        const std::string& file = entry.first;
        const json& p = entry.second;
        if (!file.ends_with("0.png")) continue;
        CAPTURE(file);
        CAPTURE(mode);
        std::map<std::string, json> alone = predictions_by_file(
            metafew("predict --model " + adapted.string() + " --query " + file + mode + " --json", tmp.path));
        REQUIRE(alone.count(file) == 1);
        CHECK(alone[file]["label"] == p["label"]);
        for (auto it = p["probabilities"].begin(); it != p["probabilities"].end(); ++it)
          CHECK(alone[file]["probabilities"][it.key()].get<double>() ==
                doctest::Approx(it.value().get<double>()).epsilon(1e-5));
      }
    };
    expect_alone_equal(in_folder, "");
    // nontransductive (support set + one query per pass) is independent too.
    expect_alone_equal(predictions_by_file(metafew("predict --model " + adapted.string() + " --query " + query.string() +
                                                       " --bn nontransductive --json",
                                                   tmp.path)),
                       " --bn nontransductive");
    // transductive alone normalises the one image with its own statistics: its probabilities move.
    const std::string first = (query / "class0" / "0.png").string();
    json alone_t = predictions_by_file(metafew("predict --model " + adapted.string() + " --query " + first +
                                                   " --bn transductive --json",
                                               tmp.path))[first];
    json folder_t = predictions_by_file(metafew("predict --model " + adapted.string() + " --query " + query.string() +
                                                    " --bn transductive --json",
                                                tmp.path))[first];
    CHECK(alone_t["probabilities"] != folder_t["probabilities"]);
  }
}


TEST_CASE("cli: adapt, predict and eval report per-class accuracy, confusions and top-k, consistent with the labels") {
  TempDir tmp;
  const fs::path run = tmp.path / "run";
  Result train = metafew("meta-train " + small("--algo protonet --iterations 20 --val-every 20 --out ") + run.string(),
                         tmp.path);
  INFO(train.err);
  REQUIRE(train.code == 0);
  write_task_folders(tmp.path);
  const std::string task =
      " --support " + (tmp.path / "support").string() + " --query " + (tmp.path / "query").string();
  const fs::path adapted = tmp.path / "adapted.mf";
  Result ad = metafew("adapt --checkpoint " + run.string() + task + " --top-k 2 --json --save-adapted " +
                          adapted.string(),
                      tmp.path);
  INFO(ad.err);
  REQUIRE(ad.code == 0);
  const json a = json::parse(ad.out);
  const std::vector<std::string> classes = a["confusion"]["classes"];
  REQUIRE(classes.size() == 5);
  const json& matrix = a["confusion"]["matrix"];
  // Recount everything from the per-image predictions.
  std::map<std::pair<std::string, std::string>, int64_t> pairs;
  int64_t correct = 0, top2 = 0;
  for (const json& p : a["predictions"]) {
    REQUIRE(p["top"].size() == 2);
    CHECK(p["top"][0]["label"] == p["label"]);
    CHECK(p["top"][0]["probability"].get<double>() >= p["top"][1]["probability"].get<double>());
    CHECK(p["top"][1]["probability"] == p["probabilities"][p["top"][1]["label"].get<std::string>()]);
    ++pairs[{p["true_label"], p["label"]}];
    correct += p["true_label"] == p["label"];
    top2 += p["true_label"] == p["top"][0]["label"] || p["true_label"] == p["top"][1]["label"];
  }
  for (size_t t = 0; t < 5; ++t) {
    int64_t row = 0;
    for (size_t k = 0; k < 5; ++k) {
      CHECK(matrix[t][k] == pairs[{classes[t], classes[k]}]);
      row += matrix[t][k].get<int64_t>();
    }
    CHECK(row == 3);  // 3 queries per class
    const json& pc = a["per_class"][classes[t]];
    CHECK(pc["queries"] == 3);
    CHECK(pc["correct"] == matrix[t][t]);
    CHECK(pc["accuracy"].get<double>() == doctest::Approx(matrix[t][t].get<double>() / 3));
  }
  CHECK(a["accuracy"].get<double>() == doctest::Approx(correct / 15.0));
  CHECK(a["top_k"] == 2);
  CHECK(a["top_k_accuracy"].get<double>() == doctest::Approx(top2 / 15.0));

  // predict with the saved model: the same report; as text, the tables follow the accuracy line.
  Result pr = metafew("predict --model " + adapted.string() + " --query " + (tmp.path / "query").string() + " --top-k 2",
                      tmp.path);
  INFO(pr.err);
  REQUIRE(pr.code == 0);
  CHECK(pr.out.find("top-2 accuracy " + detail::concat(a["top_k_accuracy"].get<double>())) != std::string::npos);
  CHECK(pr.out.find("per class (accuracy, correct/queries):") != std::string::npos);
  CHECK(pr.out.find("confusion (rows: true class") != std::string::npos);
  Result bad = metafew("adapt --checkpoint " + run.string() + task + " --top-k 6", tmp.path);
  CHECK(bad.code == 2);
  CHECK(bad.err.find("--top-k must be from 1 to 5") != std::string::npos);

  // eval: per dataset class over all episodes, the same counts at 1 and 2 threads, summing to the accuracy.
  json by_threads[2];
  for (int threads : {1, 2}) {
    Result ev = metafew("eval --checkpoint " + run.string() + " --episodes 30 --queries 4 --top-k 2 --json --threads " +
                            std::to_string(threads),
                        tmp.path);
    INFO(ev.err);
    REQUIRE(ev.code == 0);
    by_threads[threads - 1] = json::parse(ev.out);
  }
  const json& e = by_threads[1];
  CHECK(e["per_class"] == by_threads[0]["per_class"]);
  CHECK(e["most_confused"] == by_threads[0]["most_confused"]);
  int64_t queries = 0, right = 0, wrong_listed = 0;
  for (const auto& [name, pc] : e["per_class"].items()) {
    CHECK(name.rfind("glyph", 0) == 0);
    queries += pc["queries"].get<int64_t>();
    right += pc["correct"].get<int64_t>();
  }
  for (const json& m : e["most_confused"]) {
    CHECK(m["true"] != m["predicted"]);
    wrong_listed += m["count"].get<int64_t>();
  }
  CHECK(queries == 30 * 5 * 4);
  CHECK(e["accuracy"].get<double>() == doctest::Approx(static_cast<double>(right) / queries).epsilon(1e-12));
  CHECK(wrong_listed <= queries - right);
  CHECK(e["top_k_accuracy"].get<double>() >= e["accuracy"].get<double>());
  Result ev_text = metafew("eval --checkpoint " + run.string() + " --episodes 5 --top-k 3", tmp.path);
  REQUIRE(ev_text.code == 0);
  CHECK(ev_text.out.find("top-3 accuracy") != std::string::npos);
  CHECK(ev_text.out.find("classes met; the least recognised:") != std::string::npos);
  CHECK(metafew("eval --checkpoint " + run.string() + " --episodes 5 --top-k 0", tmp.path).code == 2);
}

TEST_CASE("cli: --split-file gives meta-train and eval their class splits; eval takes the run's or its own") {
  TempDir tmp;
  // Splits the derived ones do not have: train on 100 glyph classes, validate on "mine", test on "other".
  auto write_split = [&](const fs::path& file, const std::string& name, int first, int count) {
    std::ofstream out(file, std::ios::app);
    out << "[" << name << "]\n";
    for (int c = first; c < first + count; ++c) {
      char buf[16];
      std::snprintf(buf, sizeof buf, "glyph%04d", c);
      out << buf << "\n";
    }
  };
  const fs::path split = tmp.path / "split.txt", other = tmp.path / "other.txt";
  write_split(split, "train", 0, 100);
  write_split(split, "mine", 100, 20);
  write_split(other, "other", 200, 20);
  const fs::path run = tmp.path / "run";
  const std::string train_flags = "--algo protonet --iterations 4 --val-every 4 --val-split mine --out ";
  Result no_file = metafew("meta-train " + small(train_flags) + run.string(), tmp.path);
  CHECK(no_file.code == 2);
  CHECK(no_file.err.find("mine") != std::string::npos);
  Result train = metafew("meta-train " + small(train_flags) + run.string() + " --split-file " + split.string(), tmp.path);
  INFO(train.err);
  REQUIRE(train.code == 0);
  CHECK(json::parse(slurp(run / "config.json"))["split_file"] == split.string());

  Result ev = metafew("eval --checkpoint " + run.string() + " --split mine --episodes 5 --json", tmp.path);
  INFO(ev.err);
  REQUIRE(ev.code == 0);
  CHECK(json::parse(ev.out)["split"] == "mine");
  Result ev_test = metafew("eval --checkpoint " + run.string() + " --episodes 5", tmp.path);  // the file has no test
  CHECK(ev_test.code == 2);
  Result ev_other = metafew("eval --checkpoint " + run.string() + " --split other --episodes 5 --json --split-file " +
                                other.string(),
                            tmp.path);
  INFO(ev_other.err);
  REQUIRE(ev_other.code == 0);
  Result missing = metafew("eval --checkpoint " + run.string() + " --split other --split-file " +
                               (tmp.path / "none.txt").string(),
                           tmp.path);
  CHECK(missing.code == 2);
  CHECK(missing.err.find("none.txt") != std::string::npos);
}

TEST_CASE("cli: eval --matching-attention overrides the run's attention; at 1 shot both predict alike") {
  TempDir tmp;
  const fs::path run = tmp.path / "run";
  Result train = metafew("meta-train " + small(" --algo matchingnet --matching-attention supnorm --iterations 60 --val-every 30 --out ") +
                             run.string(),
                         tmp.path);
  INFO(train.err);
  REQUIRE(train.code == 0);
  Result own = metafew("eval --checkpoint " + run.string() + " --episodes 40 --json", tmp.path);
  Result cos = metafew("eval --checkpoint " + run.string() + " --episodes 40 --matching-attention cosine --json",
                       tmp.path);
  INFO(own.err << cos.err);
  REQUIRE(own.code == 0);
  REQUIRE(cos.code == 0);
  CHECK(json::parse(own.out)["matching_attention"] == "supnorm");
  CHECK(json::parse(cos.out)["matching_attention"] == "cosine");
  // q . s / |s| = |q| cos(q, s): one support example per class, so both rank the classes alike.
  CHECK(json::parse(own.out)["accuracy"] == json::parse(cos.out)["accuracy"]);
  CHECK(json::parse(own.out)["accuracy"].get<double>() > 0.3);
  expect_error(metafew("eval --checkpoint " + run.string() + " --matching-attention dot", tmp.path), 2,
               "--matching-attention must be cosine or supnorm, got 'dot'");
  const fs::path proto = tmp.path / "proto";
  REQUIRE(metafew("meta-train " + small(" --algo protonet --iterations 2 --out ") + proto.string(),
                  tmp.path)
              .code == 0);
  expect_error(metafew("eval --checkpoint " + proto.string() + " --matching-attention cosine", tmp.path), 2,
               "applies to Matching Networks checkpoints only");
}

TEST_CASE("cli: --bn-scale false trains without batch-norm scales; its checkpoint refuses a model with them") {
  TempDir tmp;
  const fs::path run = tmp.path / "run";
  Result train = metafew("meta-train " + small(" --algo anil --bn-scale=false --iterations 40 --val-every 20 --out ") + run.string(),
                         tmp.path);
  INFO(train.err);
  REQUIRE(train.code == 0);
  CHECK(json::parse(slurp(run / "config.json"))["bn_scale"] == false);
  io::Checkpoint ck = io::load_checkpoint((run / "last").string());
  CHECK(ck.header["config"]["bn_scale"] == false);
  int scales = 0, params = 0;
  for (const auto& t : ck.tensors) {
    params += t.name.rfind("param/", 0) == 0;
    scales += t.name.find("bn.weight") != std::string::npos;
  }
  CHECK(scales == 0);
  CHECK(params == 4 * 3 + 2);
  Result ev = metafew("eval --checkpoint " + run.string() + " --episodes 20 --json", tmp.path);
  INFO(ev.err);
  REQUIRE(ev.code == 0);
  // The same tensors under a header claiming learned scales: refused, naming the missing scale.
  io::Checkpoint lying = ck;
  lying.header["config"]["bn_scale"] = true;
  io::save_checkpoint((tmp.path / "lying.mfck").string(), lying);
  expect_error(metafew("eval --checkpoint " + (tmp.path / "lying.mfck").string(), tmp.path), 1,
               "param/block1.bn.weight");
  // A model with scales under a header claiming none: refused, naming the parameter it does not have.
  const fs::path with = tmp.path / "with";
  REQUIRE(metafew("meta-train " + small(" --algo anil --iterations 1 --out ") + with.string(),
                  tmp.path)
              .code == 0);
  io::Checkpoint scaled = io::load_checkpoint((with / "last").string());
  scaled.header["config"]["bn_scale"] = false;
  io::save_checkpoint((tmp.path / "scaled.mfck").string(), scaled);
  expect_error(metafew("eval --checkpoint " + (tmp.path / "scaled.mfck").string(), tmp.path), 1,
               "holds parameter block1.bn.weight");
}


}  // namespace
}  // namespace metafew::testing::cli
