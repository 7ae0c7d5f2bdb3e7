// End-to-end tests of the metafew binary on builtin:glyphs, in a temporary folder.
#include <doctest/doctest.h>
#include <stb/stb_image_write.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "data/dataset.h"
#include "io/checkpoint.h"

namespace metafew::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Result {
  int code = -1;
  std::string out, err;
};

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("metafew_cli_" + std::to_string(::getpid()) + "_" +
                                        std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// Runs `metafew <args>` with its stdout and stderr captured.
Result metafew(const std::string& args, const fs::path& dir) {
  const fs::path out = dir / "stdout.txt", err = dir / "stderr.txt";
  const std::string cmd = std::string(METAFEW_BINARY) + " " + args + " > " + out.string() + " 2> " + err.string();
  const int status = std::system(cmd.c_str());
  Result r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

// A small, fast training configuration on builtin:glyphs.
const char* kSmall =
    "--data builtin:glyphs --ways 5 --shots 1 --queries 5 --meta-batch 4 --filters 16 --inner-lr 0.4 "
    "--eval-steps 5 --val-episodes 20 --log-every 20 --threads 2";

// kSmall with `extra` appended; a flag of kSmall that `extra` sets again is left out (a flag given twice is
// refused).
std::string small(const std::string& extra) {
  std::istringstream words(kSmall);
  std::string out, flag, value;
  while (words >> flag >> value)
    if (extra.find(flag + " ") == std::string::npos && extra.find(flag + "=") == std::string::npos)
      out += flag + " " + value + " ";
  return out + extra;
}

void write_png(const fs::path& file, const float* pixels, int side) {
  std::vector<unsigned char> bytes(static_cast<size_t>(side * side));
  // Glyph images are strokes 1.0 on 0.0, stored as they are (no inversion for the built-in dataset).
  for (int i = 0; i < side * side; ++i) bytes[i] = static_cast<unsigned char>(std::lround(pixels[i] * 255.0f));
  REQUIRE(stbi_write_png(file.string().c_str(), side, side, 1, bytes.data(), side) != 0);
}

// A 5-way 1-shot task from the glyph test split as folders: support/<class>/0.png, query/<class>/{0..2}.png.
void write_task_folders(const fs::path& dir) {
  auto ds = data::open_dataset("builtin:glyphs", {});
  const data::Split& test = ds->split("test");
  std::vector<float> img(28 * 28);
  for (int c = 0; c < 5; ++c) {
    const data::SplitClass& sc = test.classes[static_cast<size_t>(c * 7)];
    const int64_t first = ds->base_class(sc.base_class).first_image;
    const std::string name = "class" + std::to_string(c);
    fs::create_directories(dir / "support" / name);
    fs::create_directories(dir / "query" / name);
    ds->read_image(first, sc.quarter_turns, img.data());
    write_png(dir / "support" / name / "0.png", img.data(), 28);
    for (int q = 0; q < 3; ++q) {
      ds->read_image(first + 1 + q, sc.quarter_turns, img.data());
      write_png(dir / "query" / name / (std::to_string(q) + ".png"), img.data(), 28);
    }
  }
}

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
  for (const std::string algo : {"maml", "fomaml", "metasgd", "anil", "reptile", "protonet", "matchingnet", "paramnet"}) {
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

void expect_error(const Result& r, int code, const std::string& fragment) {
  INFO("stderr: " << r.err);
  CHECK(r.code == code);
  // Progress lines may come first; the error is the line that starts with "error: ".
  CHECK((r.err.rfind("error: ", 0) == 0 || r.err.find("\nerror: ") != std::string::npos));
  CHECK(r.err.find(fragment) != std::string::npos);
}

// The tensors of a checkpoint whose names start with `prefix` (the parameters by default), in order.
std::vector<tensor::Tensor> params_of(const fs::path& ckpt, const std::string& prefix = "param/") {
  io::Checkpoint ck = io::load_checkpoint(ckpt.string());
  std::vector<tensor::Tensor> out;
  for (const auto& t : ck.tensors)
    if (t.name.rfind(prefix, 0) == 0) out.push_back(t.tensor);
  return out;
}

// Trains `common` to the end in TMP/a, and in TMP/b interrupted with SIGINT once it has logged its first
// line, then resumed.
void run_whole_and_interrupted(const std::string& common, const TempDir& tmp) {
  REQUIRE(metafew("meta-train " + common + " --out " + (tmp.path / "a").string(), tmp.path).code == 0);

  // Run b: interrupted with SIGINT once it has logged its first line, then resumed.
  const fs::path b = tmp.path / "b";
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const std::string cmd = std::string(METAFEW_BINARY) + " meta-train " + common + " --out " + b.string() +
                            " > " + (tmp.path / "b.out").string() + " 2> " + (tmp.path / "b.err").string();
    execl("/bin/sh", "sh", "-c", ("exec " + cmd).c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  for (int i = 0; i < 600 && !(fs::exists(b / "metrics.jsonl") && fs::file_size(b / "metrics.jsonl") > 0); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ::kill(pid, SIGINT);
  int status = 0;
  ::waitpid(pid, &status, 0);
  REQUIRE(WIFEXITED(status));
  INFO(slurp(tmp.path / "b.err"));
  CHECK(WEXITSTATUS(status) == 130);
  io::Checkpoint mid = io::load_checkpoint((b / "last").string());
  const int64_t stopped = mid.header["iteration"];
  CHECK(stopped >= 20);
  CHECK(stopped < 120);

  Result resumed = metafew("meta-train --resume " + b.string(), tmp.path);
  INFO(resumed.err);
  REQUIRE(resumed.code == 0);
}

void check_same_bits(const std::vector<tensor::Tensor>& pa, const std::vector<tensor::Tensor>& pb) {
  REQUIRE(pa.size() == pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    REQUIRE(pa[i].shape() == pb[i].shape());
    REQUIRE(pa[i].dtype() == pb[i].dtype());
    CHECK(std::memcmp(pa[i].raw_data(), pb[i].raw_data(),
                      static_cast<size_t>(pa[i].numel()) * tensor::dtype_size(pa[i].dtype())) == 0);
  }
}

// The iterations of metrics.jsonl's lines, in file order (every line must be a JSON object).
std::vector<int64_t> metric_iterations(const fs::path& run) {
  std::vector<int64_t> its;
  std::ifstream f(run / "metrics.jsonl");
  for (std::string line; std::getline(f, line);) {
    json j = json::parse(line, nullptr, false);
    INFO("line: ", line);
    REQUIRE(!j.is_discarded());
    its.push_back(j["iteration"].get<int64_t>());
  }
  return its;
}

// Issue 25, item 5: one writer per run folder, and no new run over an old one unless asked.
TEST_CASE("cli: a run folder has one writer at a time; a new run into a finished one needs --resume or --overwrite") {
  TempDir tmp;
  const fs::path d = tmp.path / "run";
  const std::string common = small(" --algo protonet --val-split '' --checkpoint-every 10");
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const std::string cmd = std::string(METAFEW_BINARY) + " meta-train " + common + " --iterations 1000000 --out " +
                            d.string() + " > /dev/null 2> " + (tmp.path / "long.err").string();
    execl("/bin/sh", "sh", "-c", ("exec " + cmd).c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  for (int i = 0; i < 600 && !fs::exists(d / "last"); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  REQUIRE(fs::exists(d / "last"));
  const std::string holder = "pid " + std::to_string(pid);
  // A second run with the same --out, with or without --overwrite, and a resume: each refused, naming the holder.
  for (const std::string& args : {"meta-train " + common + " --iterations 5 --out " + d.string(),
                                  "meta-train " + common + " --iterations 5 --overwrite --out " + d.string(),
                                  "meta-train --resume " + d.string() + " --iterations 2000000"}) {
    CAPTURE(args);
    Result r = metafew(args, tmp.path);
    CHECK(r.code == 1);
    CHECK(r.err.find("is in use by another metafew process") != std::string::npos);
    CHECK(r.err.find(holder) != std::string::npos);
  }
  ::kill(pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 130);
  // The holder's metrics are its own: iterations strictly increasing.
  std::vector<int64_t> its = metric_iterations(d);
  CHECK(std::is_sorted(its.begin(), its.end()));
  CHECK(std::adjacent_find(its.begin(), its.end()) == its.end());

  // Now the folder is free but holds a run: a new run there is refused, pointing to --resume and --overwrite.
  expect_error(metafew("meta-train " + common + " --iterations 5 --out " + d.string(), tmp.path), 2,
               "already holds a run");
  Result over = metafew("meta-train " + small(" --algo maml --val-split '' --iterations 5 --overwrite --out ") +
                            d.string(),
                        tmp.path);
  INFO(over.err);
  REQUIRE(over.code == 0);
  // Nothing of the old run is left to be mistaken for the new one.
  CHECK(io::load_checkpoint((d / "best").string()).header["config"]["algo"] == "maml");
  CHECK(io::load_checkpoint((d / "last").string()).header["config"]["algo"] == "maml");
  CHECK(metric_iterations(d) == std::vector<int64_t>{5});
  // --resume with --out or --config is refused rather than silently ignored.
  expect_error(metafew("meta-train --resume " + d.string() + " --out elsewhere --iterations 9", tmp.path), 2,
               "cannot be given with it");
}

// Issue 25, item 11: a signal during a long validation stops at once (the rest of the episodes are skipped);
// the resume runs that validation first, so `best`, `last` and the metrics equal an uninterrupted run's.
// `iterations` 20: stopped in the validation of iteration 10; 10: in the final validation.
void sigint_during_validation(int iterations) {
  CAPTURE(iterations);
  TempDir tmp;
  const std::string common = small(" --algo maml --log-every 10 --val-every 10 --val-episodes 3000 --checkpoint-every 1000") +
                             " --iterations " + std::to_string(iterations);
  const fs::path whole = tmp.path / "whole", cut = tmp.path / "cut";
  REQUIRE(metafew("meta-train " + common + " --out " + whole.string(), tmp.path).code == 0);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const std::string cmd = std::string(METAFEW_BINARY) + " meta-train " + common + " --out " + cut.string() +
                            " > /dev/null 2> " + (tmp.path / "cut.err").string();
    execl("/bin/sh", "sh", "-c", ("exec " + cmd).c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  // The iteration-10 log line is written just before the validation starts.
  for (int i = 0; i < 1200 && !(fs::exists(cut / "metrics.jsonl") && fs::file_size(cut / "metrics.jsonl") > 0); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ::kill(pid, SIGINT);
  int status = 0;
  ::waitpid(pid, &status, 0);
  INFO(slurp(tmp.path / "cut.err"));
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 130);
  io::Checkpoint mid = io::load_checkpoint((cut / "last").string());
  CHECK(mid.header["iteration"] == 10);
  CHECK(mid.header["validation_pending"] == true);
  CHECK(metric_iterations(cut) == std::vector<int64_t>{10});  // no partial validation line
  Result r = metafew("meta-train --resume " + cut.string(), tmp.path);
  INFO(r.err);
  REQUIRE(r.code == 0);
  CHECK(metric_iterations(cut) == metric_iterations(whole));
  check_same_bits(params_of(cut / "last"), params_of(whole / "last"));
  check_same_bits(params_of(cut / "best"), params_of(whole / "best"));
  CHECK(io::load_checkpoint((cut / "best").string()).header["iteration"] ==
        io::load_checkpoint((whole / "best").string()).header["iteration"]);
  CHECK(slurp(cut / "last") == slurp(whole / "last"));  // the pending mark is cleared too
}

TEST_CASE("cli: SIGINT during validation stops promptly and the resume equals an uninterrupted run") {
  sigint_during_validation(20);
  sigint_during_validation(10);
}

// Issue 30, item 5: on a terminal the live line alone (the latest validation folded into it), the metrics in
// metrics.jsonl; without a terminal the metrics lines on stderr as before. util-linux's `script` gives the
// run a pseudo-terminal (Debian's bsdutils, an essential package).
TEST_CASE("cli: on a terminal meta-train shows the progress line, not raw metrics lines") {
  TempDir tmp;
  REQUIRE(fs::exists("/usr/bin/script"));
  const fs::path run = tmp.path / "tty";
  const std::string cmd = "/usr/bin/script -qc \"" + std::string(METAFEW_BINARY) + " meta-train " +
                          small("--algo protonet --iterations 40 --val-every 20 --log-every 10 --out " + run.string()) +
                          "\" /dev/null > " + (tmp.path / "tty.txt").string() + " 2>&1";
  REQUIRE(std::system(cmd.c_str()) == 0);
  const std::string screen = slurp(tmp.path / "tty.txt");
  CHECK(screen.find("{\"iteration\"") == std::string::npos);
  CHECK(screen.find("ETA") != std::string::npos);
  CHECK(screen.find("val ") != std::string::npos);
  CHECK(metric_iterations(run) == std::vector<int64_t>{10, 20, 20, 30, 40, 40});
  Result piped = metafew("meta-train " + small("--algo protonet --iterations 20 --log-every 10 --out " +
                                               (tmp.path / "piped").string()),
                         tmp.path);
  CHECK(piped.err.find("{\"accuracy\"") != std::string::npos);
}

// Issue 25, item 6: a resume after a kill or a full disk drops the metrics lines logged after the checkpoint
// and an incomplete last line, and removes the temporaries the killed writer left.
TEST_CASE("cli: resume trims metrics to the checkpoint and removes a killed writer's temporaries") {
  TempDir tmp;
  const std::string common = small(" --algo protonet --val-every 10 --val-episodes 5 --log-every 5");
  const fs::path whole = tmp.path / "whole", cut = tmp.path / "cut", part = tmp.path / "part";
  REQUIRE(metafew("meta-train " + common + " --iterations 20 --out " + whole.string(), tmp.path).code == 0);
  REQUIRE(metafew("meta-train " + common + " --iterations 20 --out " + cut.string(), tmp.path).code == 0);
  REQUIRE(metafew("meta-train " + common + " --iterations 10 --out " + part.string(), tmp.path).code == 0);
  // `cut` as a SIGKILL at iteration ~17 leaves it: last from iteration 10, metrics past it, a half-written line
  // and a temporary checkpoint.
  fs::copy_file(part / "last", cut / "last", fs::copy_options::overwrite_existing);
  std::ofstream(cut / "metrics.jsonl", std::ios::app) << R"({"iteration": 17, "loss")";
  std::ofstream(cut / "last.tmp.4242") << "partial checkpoint";
  std::ofstream(cut / "notes.tmp.txt") << "the user's own file";
  Result r = metafew("meta-train --resume " + cut.string() + " --iterations 20", tmp.path);
  INFO(r.err);
  REQUIRE(r.code == 0);
  CHECK(r.err.find("dropped") != std::string::npos);
  CHECK(metric_iterations(cut) == metric_iterations(whole));
  CHECK(!fs::exists(cut / "last.tmp.4242"));
  CHECK(fs::exists(cut / "notes.tmp.txt"));
  check_same_bits(params_of(cut / "last"), params_of(whole / "last"));
}


TEST_CASE("cli: an interrupted run resumes to the same parameters, bit for bit") {
  TempDir tmp;
  run_whole_and_interrupted(
      small(" --algo maml --iterations 120 --val-every 60 --checkpoint-every 1000"), tmp);
  check_same_bits(params_of(tmp.path / "a" / "last"), params_of(tmp.path / "b" / "last"));
}

TEST_CASE("cli: Reptile's carried inner state survives export and an interrupted run, bit for bit") {
  TempDir tmp;
  run_whole_and_interrupted(
      small(" --algo reptile --inner-lr 0.001 --inner-steps 2 --iterations 120 --val-every 60 "
          "--checkpoint-every 1000"),
      tmp);
  const fs::path a = tmp.path / "a" / "last";
  check_same_bits(params_of(a), params_of(tmp.path / "b" / "last"));
  check_same_bits(params_of(a, "state/"), params_of(tmp.path / "b" / "last", "state/"));
  io::Checkpoint ck = io::load_checkpoint(a.string());
  CHECK(ck.header["config"]["inner_state"] == "carry");
  const tensor::Tensor& steps = io::find_tensor(ck, "state/inner_adam.steps");
  CHECK(steps.data<int32_t>()[0] == 240);  // 120 meta-steps of 2 inner steps
  CHECK(params_of(a, "state/").size() == params_of(a).size() + 1);

  // export keeps the state, so the exported model evaluates exactly as the run's.
  const fs::path exported = tmp.path / "model.mfck";
  REQUIRE(metafew("export --checkpoint " + a.string() + " --out " + exported.string(), tmp.path).code == 0);
  check_same_bits(params_of(a, "state/"), params_of(exported, "state/"));
  Result e1 = metafew("eval --checkpoint " + a.string() + " --episodes 20 --json", tmp.path);
  Result e2 = metafew("eval --checkpoint " + exported.string() + " --episodes 20 --json", tmp.path);
  REQUIRE(e1.code == 0);
  REQUIRE(e2.code == 0);
  CHECK(json::parse(e1.out)["accuracy"] == json::parse(e2.out)["accuracy"]);
  // eval --bn overrides the run's batch-norm mode and reports it.
  Result e3 =
      metafew("eval --checkpoint " + a.string() + " --episodes 20 --bn nontransductive --json", tmp.path);
  INFO(e3.err);
  REQUIRE(e3.code == 0);
  CHECK(json::parse(e3.out)["bn"] == "nontransductive");
  CHECK(json::parse(e1.out)["bn"] == "transductive");

  // A checkpoint written before --inner-state, --features, --head-init, --bn-scale and --inner-bn existed (no
  // settings, no state) loads as fresh, flatten, lecun, learned scales and a full inner loop: it evaluates.
  io::Checkpoint old = ck;
  old.header["config"].erase("inner_state");
  old.header["config"].erase("features");
  old.header["config"].erase("head_init");
  old.header["config"].erase("bn_scale");
  old.header["config"].erase("inner_bn");
  old.header.erase("state_names");
  std::vector<io::NamedTensor> kept;
  for (const auto& t : old.tensors)
    if (t.name.rfind("state/", 0) != 0) kept.push_back(t);
  old.tensors = kept;
  io::save_checkpoint((tmp.path / "old.mfck").string(), old);
  Result e4 =
      metafew("eval --checkpoint " + (tmp.path / "old.mfck").string() + " --episodes 20 --json", tmp.path);
  INFO(e4.err);
  CHECK(e4.code == 0);
  // A carried-state checkpoint that lost its state is refused, naming the missing tensor.
  old.header["config"]["inner_state"] = "carry";
  io::save_checkpoint((tmp.path / "broken.mfck").string(), old);
  expect_error(metafew("eval --checkpoint " + (tmp.path / "broken.mfck").string(), tmp.path), 1,
               "state/inner_adam.v.");
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

TEST_CASE("cli: bad input gets a clear message and the documented exit code") {
  TempDir tmp;
  const fs::path d = tmp.path;
  expect_error(metafew("meta-train --no-such-flag 3", d), 2, "no-such-flag");
  expect_error(metafew("meta-train --bn-scale false --out " + (d / "r").string(), d), 2,
               "a boolean flag takes its value after '='");
  expect_error(metafew("meta-train --ways", d), 2, "ways");
  expect_error(metafew("meta-train --ways 0 --out " + (d / "r").string(), d), 2, "--ways must be at least 2");
  expect_error(metafew("meta-train --ways 1 --out " + (d / "r").string(), d), 2, "a 1-way task is always 100% correct");
  expect_error(metafew("meta-train --shots -1 --out " + (d / "r").string(), d), 2, "--shots must be positive");
  expect_error(metafew("meta-train --inner-lr nan --out " + (d / "r").string(), d), 2,
               "--inner-lr expects a finite number, got 'nan'");
  // Issue 25 item 8 and issue 30 item 5: parse errors name the flag; typos get the nearest flag; the hint is
  // the subcommand's help; a repeated flag is refused instead of taking its last value.
  expect_error(metafew("meta-train --ways five --out " + (d / "r").string(), d), 2, "--ways expects an integer, got 'five'");
  expect_error(metafew("eval --checkpoint x --episodes=1e12", d), 2, "--episodes expects an integer, got '1e12'");
  expect_error(metafew("meta-train --iteration 5 --out " + (d / "r").string(), d), 2,
               "unknown flag --iteration (did you mean --iterations?)");
  expect_error(metafew("meta-train --iteration 5", d), 2, "hint: run 'metafew meta-train --help'");
  expect_error(metafew("meta-train --ways 5 --ways 7 --out " + (d / "r").string(), d), 2, "--ways is given 2 times");
  expect_error(metafew("meta-train --config /dev/zero --out " + (d / "r").string(), d), 1, "is not a regular file");
  expect_error(metafew("meta-train --inner-lr -1 --out " + (d / "r").string(), d), 2, "--inner-lr must be");
  expect_error(metafew("meta-train --algo nope --out " + (d / "r").string(), d), 2, "unknown --algo 'nope'");
  expect_error(metafew("meta-train --ways 5000 --out " + (d / "r").string(), d), 2, "5000");
  expect_error(metafew("meta-train --data " + (d / "missing").string() + " --out " + (d / "r").string(), d), 2,
               "missing' does not exist");
  expect_error(metafew("frobnicate", d), 2, "unknown command");
  expect_error(metafew("meta-train --algo reptile --inner-state warm --out " + (d / "r").string(), d), 2,
               "--inner-state must be carry or fresh, got 'warm'");
  expect_error(metafew("meta-train --bn query --out " + (d / "r").string(), d), 2,
               "--bn must be transductive, support or nontransductive, got 'query'");
  expect_error(
      metafew("meta-train --algo matchingnet --matching-attention dot --out " + (d / "r").string(), d), 2,
      "--matching-attention must be cosine or supnorm, got 'dot'");
  std::ofstream(d / "settings.json") << R"({"algo": "reptile", "inner_state": true})";
  expect_error(
      metafew("meta-train --config " + (d / "settings.json").string() + " --out " + (d / "r").string(), d), 1,
      "\"inner_state\" expects a string");

  // A trained checkpoint to damage.
  const fs::path run = d / "run";
  REQUIRE(metafew("meta-train " + small(" --algo protonet --iterations 5 --out ") + run.string(), d)
              .code == 0);
  // Resuming a ProtoNets run as another algorithm is refused.
  expect_error(metafew("meta-train --resume " + run.string() + " --algo maml", d), 2, "--algo differs");
  // Issue 25, crashes 1 and 2: sizes that overflowed, and headers edited with a valid checksum (eval and resume
  // built the model, or divided, before checking). Each is refused by the settings' one check, naming the key.
  for (const char* huge : {"9223372036854775807", "4611686018427387904"})
    expect_error(metafew("meta-train --algo protonet --iterations 2 --filters " + std::string(huge) + " --out " +
                             (d / "r").string(),
                         d),
                 2, "--filters must be positive and at most 4096");
  expect_error(metafew("meta-train --meta-batch 100000000 --out " + (d / "r").string(), d), 2,
               "--meta-batch must be positive and at most 100000");
  expect_error(metafew("meta-train --resume " + run.string() + " --iterations -1", d), 2, "--iterations must be positive");
  for (const auto& edit : std::vector<std::pair<std::string, json>>{
           {"checkpoint_every", 0}, {"log_every", 0}, {"filters", std::numeric_limits<int64_t>::max()}, {"ways", "5"}}) {
    const std::string& key = edit.first;
    const json& value = edit.second;
    CAPTURE(key);
    io::Checkpoint crafted = io::load_checkpoint((run / "last").string());
    crafted.header["config"][key] = value;
    fs::create_directories(d / "crafted");
    io::save_checkpoint((d / "crafted" / "last").string(), crafted);
    expect_error(metafew("meta-train --resume " + (d / "crafted").string() + " --iterations 10", d), 2,
                 "setting \"" + key + "\"");
    expect_error(metafew("eval --checkpoint " + (d / "crafted" / "last").string(), d), 2, "setting \"" + key + "\"");
  }
  const std::string good = slurp(run / "last");
  auto write = [&](const fs::path& p, const std::string& bytes) { std::ofstream(p, std::ios::binary) << bytes; };
  write(d / "truncated", good.substr(0, good.size() / 2));
  std::string flipped = good;
  flipped[flipped.size() / 3] ^= 0x10;
  write(d / "flipped", flipped);
  write(d / "empty", "");
  write(d / "fake.mf", std::string("\x89PNG\r\n\x1a\n", 8) + std::string(100, 'x'));
  expect_error(metafew("eval --checkpoint " + (d / "truncated").string(), d), 1, "truncated");
  expect_error(metafew("eval --checkpoint " + (d / "flipped").string(), d), 1, "checksum");
  expect_error(metafew("eval --checkpoint " + (d / "empty").string(), d), 1, "empty");
  expect_error(metafew("eval --checkpoint " + (d / "fake.mf").string(), d), 1, "PNG");
  expect_error(metafew("eval --checkpoint " + (d / "nothing").string(), d), 1, "nothing");

  // Support and query folders.
  write_task_folders(d);
  fs::create_directories(d / "support" / "class9");  // a class without images
  expect_error(metafew("adapt --checkpoint " + run.string() + " --support " + (d / "support").string() + " --query " +
                           (d / "query").string(),
                       d),
               2, "has no images");
  fs::remove(d / "support" / "class9");
  fs::copy_file(d / "support" / "class0" / "0.png", d / "support" / "class0" / "1.png");  // 2 shots vs 1
  expect_error(metafew("adapt --checkpoint " + run.string() + " --support " + (d / "support").string() + " --query " +
                           (d / "query").string(),
                       d),
               2, "same number of shots");
  fs::remove(d / "support" / "class0" / "1.png");
  expect_error(metafew("adapt --checkpoint " + run.string() + " --support " + (d / "support").string() + " --query " +
                           (d / "nowhere").string(),
                       d),
               2, "does not exist");
  // A checkpoint of the wrong kind: predict needs an adapted model.
  expect_error(metafew("predict --model " + (run / "last").string() + " --query " + (d / "query").string(), d), 2,
               "not an adapted model");
  // A MAML checkpoint has a 5-way head: a 3-way evaluation does not fit it.
  const fs::path maml = d / "maml";
  REQUIRE(metafew("meta-train " + small(" --algo maml --iterations 2 --out ") + maml.string(), d).code == 0);
  expect_error(metafew("eval --checkpoint " + maml.string() + " --ways 3", d), 2, "5-way head");
  expect_error(metafew("eval --checkpoint " + maml.string() + " --episodes 1000000000000", d), 2,
               "--episodes must be positive and at most 100000000");
  expect_error(metafew("eval --checkpoint " + maml.string() + " --ways 1", d), 2, "a 1-way task is always 100% correct");
  expect_error(metafew("eval --checkpoint " + maml.string() + " --data builtin:sinusoid", d), 2,
               "builtin:sinusoid is a regression dataset; this checkpoint is an image classifier");
  // One episode has no interval: null in JSON, said in words in text (it used to print +- 0.00%).
  Result one = metafew("eval --checkpoint " + maml.string() + " --episodes 1 --json", d);
  REQUIRE(one.code == 0);
  CHECK(json::parse(one.out)["ci95"].is_null());
  Result one_text = metafew("eval --checkpoint " + maml.string() + " --episodes 1", d);
  CHECK(one_text.out.find("no interval from one episode") != std::string::npos);
  Result two_text = metafew("eval --checkpoint " + maml.string() + " --episodes 4", d);
  CHECK(two_text.out.find("% (95%)") != std::string::npos);
  // An adapted model given to --resume is named as such.
  const fs::path adapted_run = d / "adapted_run";
  fs::create_directories(adapted_run);
  REQUIRE(metafew("adapt --checkpoint " + maml.string() + " --support " + (d / "support").string() +
                      " --save-adapted " + (adapted_run / "last").string(),
                  d)
              .code == 0);
  expect_error(metafew("meta-train --resume " + adapted_run.string() + " --iterations 9", d), 2,
               "is an adapted model (made by adapt --save-adapted), not a training checkpoint");
  // predict's errors are predict's.
  expect_error(metafew("predict --model " + (adapted_run / "last").string() + " --query " + (d / "nowhere").string(), d),
               2, "error: predict: query path");
  // A query class folder that matches no support class: warned, labelled, not counted.
  fs::create_directories(d / "query" / "stranger");
  fs::copy_file(d / "query" / "class0" / "0.png", d / "query" / "stranger" / "0.png");
  Result un = metafew("predict --model " + (adapted_run / "last").string() + " --query " + (d / "query").string() + " --json", d);
  INFO(un.err);
  REQUIRE(un.code == 0);
  CHECK(un.err.find("warning: query class folder 'stranger' matches no support class") != std::string::npos);
  const json unj = json::parse(un.out);
  CHECK(unj["predictions"].size() == 16);
  int counted = 0;
  for (const auto& p : unj["predictions"]) counted += p.contains("true_label");
  CHECK(counted == 15);
  // A class name with a newline cannot forge a line of the text output.
  fs::rename(d / "query" / "stranger", d / "query" / "two\nlines");
  Result nl = metafew("predict --model " + (adapted_run / "last").string() + " --query '" +
                          (d / "query" / "two\nlines" / "0.png").string() + "'",
                      d);
  REQUIRE(nl.code == 0);
  CHECK(nl.out.find("two\\nlines") != std::string::npos);
  CHECK(std::count(nl.out.begin(), nl.out.end(), '\n') == 1);
  expect_error(metafew("eval --checkpoint " + maml.string() + " --bn none", d), 2,
               "--bn must be transductive, support or nontransductive, got 'none'");
}

// Every value of every tensor of a checkpoint file, as doubles.
bool all_finite(const fs::path& ckpt) {
  for (const io::NamedTensor& nt : io::load_checkpoint(ckpt.string()).tensors) {
    if (nt.tensor.dtype() == tensor::DType::i32) continue;
    for (double v : nt.tensor.to_vector())
      if (!std::isfinite(v)) return false;
  }
  return true;
}

TEST_CASE("cli: a diverging run stops with exit 1 naming a checkpoint whose parameters are all finite") {
  TempDir tmp;
  Result r = metafew("meta-train " + small(" --algo maml --optimizer sgd --outer-lr 1e30 --inner-lr 1e30 --iterations 50 --out ") +
                         (tmp.path / "r").string(),
                     tmp.path);
  expect_error(r, 1, "diverged");
  // Issue 25, item 4: runs that saved NaN as good. MAML with a huge SGD step and a checkpoint every iteration
  // (the issue's step of 100 diverges with GCC's build but not with clang's: 10^4 does with both);
  // ProtoNets whose loss stays ln 5 while its parameters turn NaN (it used to exit 0).
  for (const std::string& flags : {std::string("--algo maml --optimizer sgd --outer-lr 10000 --meta-batch 2 --checkpoint-every 1"),
                                   std::string("--algo protonet --outer-lr 1e30 --val-every 2 --val-episodes 5")}) {
    CAPTURE(flags);
    const fs::path run = tmp.path / "nan";
    fs::remove_all(run);
    Result d = metafew("meta-train --data builtin:glyphs --filters 16 --queries 5 --iterations 10 --threads 2 " + flags +
                           " --out " + run.string(),
                       tmp.path);
    expect_error(d, 1, "diverged");
    CHECK(d.err.find("NaN or infinite") != std::string::npos);
    CHECK(d.err.find((run / "last").string()) != std::string::npos);
    CHECK(d.err.find("every parameter finite") != std::string::npos);
    for (const char* name : {"last", "best"}) {
      CAPTURE(name);
      if (!fs::exists(run / name)) continue;
      CHECK(all_finite(run / name));
      // and it evaluates: not refused as diverged.
      Result ev = metafew("eval --checkpoint " + (run / name).string() + " --episodes 5", tmp.path);
      INFO(ev.err);
      CHECK(ev.code == 0);
    }
  }
  // A file with NaN parameters (an older metafew could write one) is refused, naming the parameter.
  const fs::path ok = tmp.path / "ok";
  REQUIRE(metafew("meta-train " + small(" --algo protonet --iterations 2 --out ") + ok.string(), tmp.path).code == 0);
  io::Checkpoint ck = io::load_checkpoint((ok / "last").string());
  for (io::NamedTensor& nt : ck.tensors)
    if (nt.name == "param/block1.conv.weight") nt.tensor.data<float>()[3] = NAN;
  io::save_checkpoint((tmp.path / "nan.mfck").string(), ck);
  expect_error(metafew("eval --checkpoint " + (tmp.path / "nan.mfck").string(), tmp.path), 1,
               "parameter block1.conv.weight: 1 of");
}

}  // namespace
}  // namespace metafew::testing
