// meta-train over several processes (Note [Processes] in src/core/dist.h, Note [Task-order reduction] in
// src/meta/trainer.cpp): under mpirun with 1, 2 and 3 processes (3 splits a meta-batch of 4 unevenly), every
// algorithm ends with the parameters, carried state and checkpoints of the single-process run, bit for bit;
// a run started over 2 processes resumes in one exactly; eval over 3 gives one process's figures; only process
// 0 writes.
#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "core/dist.h"
#include "support/cli_run.h"

namespace metafew::testing::cli {
namespace {

// `mpirun -np P` in front of the binary (as root Open MPI wants --allow-run-as-root; --oversubscribe lets 3
// processes share 2 cores).
Result mpi_metafew(int procs, const std::string& args, const fs::path& dir) {
  std::string launcher = "mpirun --oversubscribe ";
  if (::geteuid() == 0) launcher += "--allow-run-as-root ";
  return metafew_via(launcher + "-np " + std::to_string(procs) + " ", args, dir);
}

// The validation lines of a run's metrics (training windows carry timings and, over several processes, the
// communication figures; validations carry only results).
std::vector<std::string> validations(const fs::path& run) {
  std::vector<std::string> out;
  std::ifstream in(run / "metrics.jsonl");
  for (std::string line; std::getline(in, line);)
    if (json::parse(line).contains("split")) out.push_back(line);
  return out;
}

// The pid of the process of MPI rank `rank` among the running metafew processes whose command line holds
// `marker` (read from /proc: Open MPI gives each process OMPI_COMM_WORLD_RANK); 0 when none.
pid_t rank_pid(const std::string& marker, int rank) {
  const std::string want = "OMPI_COMM_WORLD_RANK=" + std::to_string(rank);
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream cmd(e.path() / "cmdline"), env(e.path() / "environ");
    std::string c((std::istreambuf_iterator<char>(cmd)), {}), v((std::istreambuf_iterator<char>(env)), {});
    std::replace(c.begin(), c.end(), '\0', ' ');
    if (c.find("metafew") == std::string::npos || c.find("mpirun") != std::string::npos ||
        c.find(marker) == std::string::npos)
      continue;
    for (size_t at = 0; at < v.size(); at = v.find('\0', at) + 1) {
      if (v.compare(at, want.size() + 1, want + '\0') == 0) return static_cast<pid_t>(std::stol(name));
      if (v.find('\0', at) == std::string::npos) break;
    }
  }
  return 0;
}

}  // namespace

TEST_CASE("cli: meta-train under mpirun gives the single-process parameters at 1, 2 and 3 processes") {
  REQUIRE_MESSAGE(dist::built_with_mpi(), "make deps installs Open MPI (libopenmpi-dev, openmpi-bin); rebuild");
  TempDir tmp;
  const std::string common = "--data builtin:glyphs --ways 3 --shots 1 --queries 2 --meta-batch 4 --filters 8 "
                             "--iterations 3 --val-every 3 --val-episodes 5 --eval-steps 2 --log-every 3 --threads 1 ";
  for (const std::string algo : {"maml", "fomaml", "metasgd", "anil", "reptile", "protonet", "matchingnet",
                                 "paramnet"}) {
    CAPTURE(algo);
    const std::string args = common + "--algo " + algo + " ";
    const fs::path single = tmp.path / (algo + "_single");
    Result s = metafew("meta-train " + args + "--out " + single.string(), tmp.path);
    INFO(s.err);
    REQUIRE(s.code == 0);
    for (int procs : {1, 2, 3}) {
      CAPTURE(procs);
      const fs::path run = tmp.path / (algo + "_np" + std::to_string(procs));
      Result r = mpi_metafew(procs, "meta-train " + args + "--out " + run.string(), tmp.path);
      INFO(r.err);
      REQUIRE(r.code == 0);
      check_same_bits(params_of(single / "last"), params_of(run / "last"));
      check_same_bits(params_of(single / "last", "state/"), params_of(run / "last", "state/"));
      check_same_bits(params_of(single / "best"), params_of(run / "best"));
      CHECK(validations(single) == validations(run));  // validation episodes split over the processes
      // One process writes and speaks: one summary line, one start line.
      CHECK(r.out == s.out.substr(0, s.out.find(single.string())) + run.string() +
                         s.out.substr(s.out.find(single.string()) + single.string().size()));
      size_t starts = 0;
      for (size_t at = r.err.find("meta-train: " + algo + " on"); at != std::string::npos;
           at = r.err.find("meta-train: " + algo + " on", at + 1))
        ++starts;
      CHECK(starts == 1);
      if (procs > 1) {
        CHECK(r.err.find("1 threads x " + std::to_string(procs) + " processes") != std::string::npos);
        std::ifstream in(run / "metrics.jsonl");
        std::string first;
        std::getline(in, first);
        const json w = json::parse(first);
        CHECK(w["processes"] == procs);
        CHECK(w["comm_mb_per_iteration"].get<double>() > 0);
      }
    }
  }
}

TEST_CASE("cli: a run started over 2 processes resumes in one exactly, and eval over 3 gives the same figures") {
  REQUIRE(dist::built_with_mpi());
  TempDir tmp;
  const std::string args = "meta-train --data builtin:glyphs --algo reptile --ways 3 --shots 1 --queries 2 "
                           "--meta-batch 3 --filters 8 --val-every 2 --val-episodes 4 --eval-steps 2 --threads 1 --schedule constant --outer-lr 0.5 ";
  // (Reptile anneals its step size to 0 over --iterations by default: a constant one lets the run grow.)
  const fs::path whole = tmp.path / "whole", parts = tmp.path / "parts";
  Result w = metafew(args + "--iterations 4 --out " + whole.string(), tmp.path);
  INFO(w.err);
  REQUIRE(w.code == 0);
  Result a = mpi_metafew(2, args + "--iterations 2 --out " + parts.string(), tmp.path);
  INFO(a.err);
  REQUIRE(a.code == 0);
  Result b = metafew("meta-train --resume " + parts.string() + " --iterations 4", tmp.path);
  INFO(b.err);
  REQUIRE(b.code == 0);
  check_same_bits(params_of(whole / "last"), params_of(parts / "last"));
  check_same_bits(params_of(whole / "last", "state/"), params_of(parts / "last", "state/"));
  // And back to 3 processes for two more.
  Result c = mpi_metafew(3, "meta-train --resume " + parts.string() + " --iterations 6", tmp.path);
  INFO(c.err);
  REQUIRE(c.code == 0);
  Result w6 = metafew("meta-train --resume " + whole.string() + " --iterations 6", tmp.path);
  REQUIRE(w6.code == 0);
  check_same_bits(params_of(whole / "last"), params_of(parts / "last"));

  // eval splits its episodes over the processes: the same figures, per-class counts and confusions as one
  // process (only the time differs); process 0 alone prints.
  const std::string ev = "eval --checkpoint " + whole.string() + " --episodes 7 --ways 3 --top-k 2 --json --no-record";
  Result e1 = metafew(ev, tmp.path);
  INFO(e1.err);
  REQUIRE(e1.code == 0);
  Result e3 = mpi_metafew(3, ev, tmp.path);
  INFO(e3.err);
  REQUIRE(e3.code == 0);
  json j1 = json::parse(e1.out), j3 = json::parse(e3.out);  // one JSON document: one process printed
  CHECK(j1["per_class"].size() > 3);
  j1.erase("seconds");
  j3.erase("seconds");
  CHECK(j1 == j3);

  // Pretraining draws one batch per iteration, which is not divided: process 1 shares only the validation,
  // and says so; the parameters are still one process's.
  const std::string pre = "meta-train --data builtin:glyphs --algo pretrain --filters 8 --batch-size 16 --iterations 3 "
                          "--val-every 3 --val-episodes 5 --threads 1 --out ";
  Result p1 = metafew(pre + (tmp.path / "pre1").string(), tmp.path);
  REQUIRE(p1.code == 0);
  Result p2 = mpi_metafew(2, pre + (tmp.path / "pre2").string(), tmp.path);
  INFO(p2.err);
  REQUIRE(p2.code == 0);
  check_same_bits(params_of(tmp.path / "pre1" / "last"), params_of(tmp.path / "pre2" / "last"));
  CHECK(p2.err.find("meta-train: warning: only 1 of the 2 processes train (pretraining draws one batch per "
                    "iteration; a task is the unit divided") != std::string::npos);

  // bench divides its meta-batches the same way and reports the communication; process 0 alone prints.
  Result bench = mpi_metafew(2, "bench --algo maml --filters 8 --meta-batch 3 --warmup 0 --repeats 2 --threads 1 --json",
                             tmp.path);
  INFO(bench.err);
  REQUIRE(bench.code == 0);
  REQUIRE(std::count(bench.out.begin(), bench.out.end(), '\n') == 1);
  const json br = json::parse(bench.out);
  CHECK(br["processes"] == 2);
  CHECK(br["comm_mb_per_iter"].get<double>() > 0);
  CHECK(br["comm_seconds_per_iter_median"].get<double>() >= 0);

  write_task_folders(tmp.path);
  Result ad = mpi_metafew(2, "adapt --checkpoint " + whole.string() + " --support " + (tmp.path / "support").string() +
                                 " --query " + (tmp.path / "query").string(),
                          tmp.path);
  CHECK(ad.code == 2);
  CHECK(ad.err.find("metafew adapt runs as one process; it was started as one of 2 (mpirun -np 2): only meta-train, "
                    "eval and bench divide their work") != std::string::npos);
  Result v = metafew("--version", tmp.path);
  CHECK(v.out.find("MPI Open MPI") != std::string::npos);
}

// Starts meta-train over 2 processes in the background, waits until it has logged 10 iterations, sends
// `sig` to process 1 (not the one that writes), and waits for mpirun's exit code; then checks that the last
// checkpoint is whole and continues in one process.
static void interrupt_one_process(int sig, const std::string& mpirun_flags, const std::vector<std::string>& expect) {
  TempDir tmp;
  const fs::path run = tmp.path / "run";
  const fs::path rc = tmp.path / "rc.txt";
  std::string launch = "(mpirun --oversubscribe " + mpirun_flags + " ";
  if (::geteuid() == 0) launch += "--allow-run-as-root ";
  launch += std::string("-np 2 ") + METAFEW_BINARY +
            " meta-train --data builtin:glyphs --algo maml --filters 8 --meta-batch 4 --iterations 1000000 "
            "--checkpoint-every 5 --val-every 1000000 --log-every 5 --threads 1 --out " + run.string() + " > " +
            (tmp.path / "out.txt").string() + " 2>&1; echo $? > " + rc.string() + ") &";
  REQUIRE(std::system(launch.c_str()) == 0);
  auto waited = [start = std::chrono::steady_clock::now()] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  auto logged = [&] {
    std::ifstream in(run / "metrics.jsonl");
    std::string line, last;
    while (std::getline(in, line)) last = line;
    return last.empty() ? int64_t{0} : json::parse(last)["iteration"].get<int64_t>();
  };
  while (logged() < 10 && waited() < 120) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  REQUIRE(logged() >= 10);
  const pid_t victim = rank_pid(run.string(), 1);
  REQUIRE(victim > 0);
  REQUIRE(::kill(victim, sig) == 0);
  while (!fs::exists(rc) && waited() < 180) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  REQUIRE(fs::exists(rc));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the line is complete
  const std::string code = slurp(rc), output = slurp(tmp.path / "out.txt");
  INFO("mpirun: " << output);
  CHECK(std::stoi(code) != 0);
  for (const std::string& e : expect) CHECK(output.find(e) != std::string::npos);
  CHECK(rank_pid(run.string(), 0) == 0);  // no process left behind
  CHECK(rank_pid(run.string(), 1) == 0);
  const int64_t at = io::load_checkpoint((run / "last").string()).header["iteration"];
  CHECK(at >= 10);
  Result r = metafew("meta-train --resume " + run.string() + " --iterations " + std::to_string(at + 2), tmp.path);
  INFO(r.err);
  CHECK(r.code == 0);
}

TEST_CASE("cli: kill -9 of one process ends the job with an error and leaves a resumable checkpoint") {
  REQUIRE(dist::built_with_mpi());
  interrupt_one_process(SIGKILL, "", {"exited on signal 9"});
}

TEST_CASE("cli: a hung process ends the job after METAFEW_COMM_TIMEOUT with the process named") {
  REQUIRE(dist::built_with_mpi());
  // SIGSTOP: process 1 neither dies nor answers; process 0 gives up after 2 s (Note [Hung processes]).
  // (Which of its messages waits depends on where process 1 stopped: the chain's send, the broadcast or
  // the stop agreement.)
  interrupt_one_process(SIGSTOP, "-x METAFEW_COMM_TIMEOUT=2",
                        {"error (process 0): ", ": process 0 waited 2 s for ",
                         ", which may have hung or died; ending the job (the last checkpoint is intact"});
}

}  // namespace metafew::testing::cli
