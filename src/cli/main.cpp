// metafew entry point: dispatches the subcommands (meta-train, eval, adapt, predict, export, report, bench, data, demo)
// and --version / --help.
#include <omp.h>

#include <cstdio>
#include <cstring>
#include <new>
#include <string>

#include "backend/dnnl/context.h"
#include "cli/adapt.h"
#include "cli/bench.h"
#include "cli/data_cmd.h"
#include "cli/demo.h"
#include "cli/eval.h"
#include "cli/export_cmd.h"
#include "cli/meta_train.h"
#include "cli/report.h"
#include "core/dist.h"
#include "core/error.h"
#include "core/version.h"

namespace {

void print_usage(FILE* to) {
  std::fprintf(to,
               "usage: metafew <command> [options]\n\n"
               "commands:\n"
               "  meta-train  meta-train on a dataset (MAML, FOMAML, Meta-SGD, ANIL, Reptile, ProtoNets, ...)\n"
               "  eval        test episodes of a checkpoint: mean accuracy and 95%% interval\n"
               "  adapt       adapt a checkpoint to a new task from image folders and label query images\n"
               "  predict     label images with a model saved by adapt --save-adapted\n"
               "  export      a trained model without its optimizer state (smaller, for sharing)\n"
               "  report      an HTML page of runs: curves overlaid, settings side by side, evaluations\n"
               "  bench       measured speed: seconds per meta-iteration, GFLOP/s, share of peak, memory\n"
               "  demo        second-order MAML on sinusoid regression: a smoke demo of the engine\n"
               "  data        show a dataset's layout, splits, counts and cache (--data PATH|builtin:glyphs)\n\n"
               "options:\n"
               "  --version   version, oneDNN version and ISA, thread count\n"
               "  --help      this text\n\n"
               "run 'metafew <command> --help' for the options of a command and their defaults\n");
}

}  // namespace

namespace {

// The command line's exit code; errors are printed here (in a job of several processes, with the process
// that met them named: the others are silent).
int run(int argc, char** argv) {
  // The subcommand whose --help a usage error points to.
  const std::string sub = argc >= 2 && argv[1][0] != '-' ? argv[1] : "";
  const auto error_prefix = [] {
    return metafew::dist::active() ? "error (process " + std::to_string(metafew::dist::rank()) + "): "
                                   : std::string("error: ");
  };
  try {
    metafew::dist::init(&argc, &argv);
    if (argc < 2) {
      print_usage(stderr);
      return 2;
    }
    const std::string cmd = argv[1];
    if (cmd == "--help" || cmd == "-h" || cmd == "help") {
      print_usage(stdout);
      return 0;
    }
    if (cmd == "--version") {
      std::printf("metafew %s (%s)\noneDNN %s, ISA %s\nthreads %d\nMPI %s\n", metafew::kVersion, metafew::kGitHash,
                  metafew::backend::dnnl_backend::onednn_version().c_str(),
                  metafew::backend::dnnl_backend::onednn_isa().c_str(), omp_get_max_threads(),
                  metafew::dist::library_version().c_str());
      return 0;
    }
    // meta-train, eval and bench divide their work over several processes; any other command would run P
    // copies.
    MF_USAGE_CHECK(!metafew::dist::active() || cmd == "meta-train" || cmd == "eval" || cmd == "bench", "metafew ",
                   cmd, " runs as one process; it was started as one of ", metafew::dist::size(), " (mpirun -np ",
                   metafew::dist::size(), "): only meta-train, eval and bench divide their work over several "
                   "processes; run ", cmd, " without mpirun");
    if (cmd == "meta-train") return metafew::cli::run_meta_train(argc - 1, argv + 1);
    if (cmd == "eval") return metafew::cli::run_eval(argc - 1, argv + 1);
    if (cmd == "adapt") return metafew::cli::run_adapt(argc - 1, argv + 1);
    if (cmd == "predict") return metafew::cli::run_predict(argc - 1, argv + 1);
    if (cmd == "export") return metafew::cli::run_export(argc - 1, argv + 1);
    if (cmd == "report") return metafew::cli::run_report(argc - 1, argv + 1);
    if (cmd == "bench") return metafew::cli::run_bench(argc - 1, argv + 1);
    if (cmd == "demo") return metafew::cli::run_demo(argc - 1, argv + 1);
    if (cmd == "data") return metafew::cli::run_data(argc - 1, argv + 1);
    std::fprintf(stderr, "error: unknown command '%s'\nhint: run 'metafew --help' for the list of commands\n",
                 cmd.c_str());
    return 2;
  } catch (const metafew::Error& e) {
    std::fprintf(stderr, "%s%s\n", error_prefix().c_str(), e.what());
    if (e.kind() == metafew::ErrorKind::usage) {
      if (sub.empty())
        std::fprintf(stderr, "hint: run 'metafew --help'\n");
      else
        std::fprintf(stderr, "hint: run 'metafew %s --help'\n", sub.c_str());
      return 2;
    }
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr,
                 "%sout of memory: the settings ask for more memory than this machine can give (lower the "
                 "meta-batch, episodes, shots, image size or filters)\n", error_prefix().c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s%s\n", error_prefix().c_str(), e.what());
    return 1;
  }
}

}  // namespace

int main(int argc, char** argv) {
  const int code = run(argc, argv);
  // A process that failed ends the whole job: the others would wait for it in their next collective.
  if (code != 0 && code != 130) {
    std::fflush(stderr);
    metafew::dist::abort_job(code);
  }
  metafew::dist::finalize();
  return code;
}
