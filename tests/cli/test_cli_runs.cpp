// End-to-end tests of a run folder: one writer, signals, resume bit for bit, and export.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <thread>

#include "support/cli_run.h"

namespace metafew::testing::cli {
namespace {

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


}  // namespace
}  // namespace metafew::testing::cli
