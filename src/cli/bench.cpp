// metafew bench: seconds per meta-iteration (median and spread over repetitions after warm-up), tasks per
// second, analytic GFLOP per iteration (bench/README.md), achieved GFLOP/s, its share of the machine's peak
// (a bare oneDNN convolution of the dominant shape, and an FMA micro-kernel, both measured in the same run),
// peak resident memory, and thread scaling. Tasks come from builtin:glyphs and are built before timing.
#include "cli/bench.h"

#include <malloc.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "backend/dnnl/bare.h"
#include "backend/dnnl/context.h"
#include "cli/common.h"
#include "core/dist.h"
#include "core/peak.h"
#include "core/version.h"
#include "io/settings.h"
#include "meta/registry.h"
#include "nn/backbone.h"
#include "nn/model.h"
#include "nn/options.h"
#include "meta/trainer.h"
#include "optim/options.h"
#include "tensor/storage.h"

namespace metafew::cli {

namespace {

struct Setting {
  std::string algo;
  int64_t ways, shots, queries, meta_batch, inner_steps;
  double inner_lr;
  // Pretraining (batch_training algorithms): images per mini-batch; `ways` is then the classifier's classes.
  int64_t batch = 0;
};

// Note [Benchmarking pretraining]: one iteration of --algo pretrain is one mini-batch of --batch-size images
// over --pretrain-classes classes (default 64 and 64: miniImageNet's training classes), cross-entropy and an
// SGD step with momentum 0.9 and weight decay 5e-4 (RFS's optimiser), as the PyTorch reference's `--algo
// pretrain` times it. The images are B / C per class (at least 1) from C glyph classes, the first B kept,
// as the reference draws them; the rate is images per second.
meta::Task pretrain_batch(const data::Episode& e, int64_t classes, int64_t batch, uint64_t seed) {
  meta::Task t;
  const int64_t n = std::min(batch, e.query_x.shape()[0]);
  tensor::Shape shape = e.query_x.shape();
  shape[0] = n;
  t.query_x = tensor::Tensor::empty(shape);
  const int64_t per_image = e.query_x.numel() / e.query_x.shape()[0];
  std::copy_n(e.query_x.data<float>(), n * per_image, t.query_x.data<float>());
  std::vector<int32_t> labels(e.query_y.data<int32_t>(), e.query_y.data<int32_t>() + n);
  t.query_y = tensor::Tensor::from_indices(labels, {n});
  t.ways = classes;
  t.seed = seed;
  return t;
}

// The table of issue 6 (PyTorch reference measured on this machine): 5-way 1-shot, 15 queries, meta-batch 32,
// 1 inner step at lr 0.4 (the generic defaults); 20-way 1-shot, 5 queries, meta-batch 16, 5 inner steps at lr
// 0.1. An algorithm with its own recipe (Reptile: meta-batch 5, 5 inner Adam steps on batches of 10 drawn from
// 10 shots per class) keeps it at both widths, with 1 query (its meta-gradient uses none).
std::vector<Setting> standard_matrix(const std::vector<std::string>& algos) {
  const json d = io::settings_defaults();
  std::vector<Setting> rows;
  for (int wide = 0; wide < 2; ++wide)
    for (const std::string& a : algos) {
      const meta::AlgorithmEntry& entry = meta::find_algorithm(a);
      if (entry.own_bench_recipe) {
        json r = d;
        r.update(entry.defaults);
        rows.push_back({a, wide ? 20 : 5, r["shots"], 1, r["meta_batch"], r["inner_steps"], r["inner_lr"]});
      } else if (wide) {
        rows.push_back({a, 20, 1, 5, 16, 5, 0.1});
      } else {
        rows.push_back({a, d["ways"], d["shots"], d["queries"], d["meta_batch"], d["inner_steps"], d["inner_lr"]});
      }
    }
  return rows;
}

// Analytic FLOP of one meta-iteration: the algorithm's count per task (meta/registry.cpp) times the tasks.
double analytic_gflop(const Setting& s, const nn::Model& model, int64_t inner_batch) {
  meta::FlopShape shape;
  shape.forward = 2.0 * model.forward_macs(1);
  shape.support = static_cast<double>(s.ways * s.shots);
  shape.query = static_cast<double>(s.batch > 0 ? s.batch : s.ways * s.queries);
  shape.steps = static_cast<double>(s.inner_steps);
  shape.inner_batch = static_cast<double>(inner_batch);
  return meta::find_algorithm(s.algo).task_flop(shape) * static_cast<double>(s.meta_batch) / 1e9;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::string git_hash() { return kGitHash; }

}  // namespace

int run_bench(int argc, char** argv) {
  cxxopts::Options opts("metafew bench",
                        "Measured speed of meta-iterations on this CPU. Without --algo: the standard matrix "
                        "(maml, fomaml, metasgd, anil, protonet, reptile at 5-way 1-shot and 20-way 1-shot).");
  opts.set_width(100);
  opts.add_options()("algo",
                     "algorithms to measure (repeatable); with it, the settings below apply. A setting not "
                     "given is the standard matrix's for the algorithm: its 20-way row from 20 ways up, its "
                     "5-way row otherwise (e.g. reptile: 10 shots, meta-batch 5, 5 Adam steps at lr 0.001)",
                     cxxopts::value<std::vector<std::string>>())(
      "ways", "classes per task (20 or more: the standard 20-way row)",
      cxxopts::value<int64_t>()->default_value(io::settings_defaults()["ways"].dump()))(
      "shots", "shots per class (default: standard row)", cxxopts::value<int64_t>())(
      "queries", "queries per class (default: standard row)", cxxopts::value<int64_t>())(
      "meta-batch", "tasks per meta-iteration (default: standard row)", cxxopts::value<int64_t>())(
      "inner-steps", "inner steps (default: standard row)", cxxopts::value<int64_t>())(
      "inner-lr", "inner learning rate (default: standard row)", cxxopts::value<double>())(
      "model", io::find_setting("model")->help, cxxopts::value<std::string>()->default_value(nn::ModelConfig{}.arch))(
      "filters", "conv-4 filters", cxxopts::value<int64_t>()->default_value(std::to_string(nn::ModelConfig{}.filters)))(
      "widths", io::find_setting("widths")->help,
      cxxopts::value<std::string>()->default_value(nn::widths_name(nn::ModelConfig{}.widths)))(
      "conv-algorithm", io::find_setting("conv_algorithm")->help, cxxopts::value<std::string>())(
      "image-size", "image side (tasks from builtin:glyphs resized to it)",
      cxxopts::value<int64_t>()->default_value(io::settings_defaults()["image_size"].dump()))(
      "channels", "image channels (1, or 3: the glyphs replicated)",
      cxxopts::value<int64_t>()->default_value(io::settings_defaults()["channels"].dump()))(
      "batch-size", "pretrain: images per mini-batch", cxxopts::value<int64_t>()->default_value("64"))(
      "pretrain-classes", "pretrain: classes of the classifier (miniImageNet: 64)",
      cxxopts::value<int64_t>()->default_value("64"))(
      "scaling", "also measure every thread count from 1 to --threads")(
      "warmup", "untimed meta-iterations first", cxxopts::value<int>()->default_value("2"))(
      "repeats", "timed meta-iterations", cxxopts::value<int>()->default_value("5"));
  add_shared_flags(opts, {SharedFlag::threads, SharedFlag::json_output});
  cxxopts::ParseResult args = parse_options(opts, argc, argv, "bench");
  if (args.count("help")) {
    std::printf("%s\n", opts.help().c_str());
    return 0;
  }
  io::check_setting("threads", args["threads"].as<int64_t>());
  // --threads: the thread count measured, or with --scaling the largest of them.
  const int max_threads =
      args["threads"].as<int64_t>() > 0 ? static_cast<int>(args["threads"].as<int64_t>()) : omp_get_num_procs();
  const int warmup = args["warmup"].as<int>(), repeats = args["repeats"].as<int>();
  const int64_t filters = args["filters"].as<int64_t>();
  const int64_t inner_batch = meta::AlgoConfig{}.inner_batch;
  MF_USAGE_CHECK(warmup >= 0 && repeats >= 1, "bench: --warmup must be >= 0 and --repeats >= 1");
  // The model: the settings' checks and parsers, so a flag gets the message meta-train's would.
  json model_cfg = io::settings_defaults();
  model_cfg["model"] = args["model"].as<std::string>();
  model_cfg["filters"] = filters;
  model_cfg["widths"] = args["widths"].as<std::string>();
  model_cfg["image_size"] = args["image-size"].as<int64_t>();
  model_cfg["channels"] = args["channels"].as<int64_t>();
  io::check_setting("model", model_cfg["model"]);
  model_cfg.update(nn::find_backbone(model_cfg["model"]).defaults);
  if (args.count("conv-algorithm")) model_cfg["conv_algorithm"] = args["conv-algorithm"].as<std::string>();
  for (const char* key : {"filters", "widths", "image_size", "channels", "conv_algorithm"})
    io::check_setting(key, model_cfg[key]);
  MF_USAGE_CHECK(nn::find_backbone(model_cfg["model"]).image_input, "bench: --model ",
                 model_cfg["model"].get<std::string>(), " takes vectors; bench measures image tasks");

  std::vector<Setting> rows;
  if (args.count("algo")) {
    for (const std::string& a : args["algo"].as<std::vector<std::string>>()) {
      if (meta::find_algorithm(a).batch_training) {  // Note [Benchmarking pretraining]
        const int64_t batch = args["batch-size"].as<int64_t>(), classes = args["pretrain-classes"].as<int64_t>();
        io::check_setting("batch_size", batch);
        MF_USAGE_CHECK(classes >= 2 && classes <= 960, "bench: --pretrain-classes must be from 2 to 960 (the glyph "
                       "training classes it draws from), got ", classes);
        rows.push_back({a, classes, 0, std::max<int64_t>(1, batch / classes), 1, 0, 0.0, batch});
        continue;
      }
      // The standard row of this algorithm at this width, then the settings given.
      const int64_t ways = args["ways"].as<int64_t>();
      const std::vector<Setting> standard = standard_matrix({a});
      Setting s = standard[ways >= 20 ? 1 : 0];
      s.ways = ways;
      if (args.count("shots")) s.shots = args["shots"].as<int64_t>();
      if (args.count("queries")) s.queries = args["queries"].as<int64_t>();
      if (args.count("meta-batch")) s.meta_batch = args["meta-batch"].as<int64_t>();
      if (args.count("inner-steps")) s.inner_steps = args["inner-steps"].as<int64_t>();
      if (args.count("inner-lr")) s.inner_lr = args["inner-lr"].as<double>();
      rows.push_back(s);
      MF_USAGE_CHECK(s.ways >= 1 && s.shots >= 1 && s.queries >= 1 && s.meta_batch >= 1 && s.inner_steps >= 0,
                     "bench: --ways, --shots, --queries, --meta-batch must be >= 1 and --inner-steps >= 0");
    }
  } else {
    std::vector<std::string> standard;
    for (const meta::AlgorithmEntry& a : meta::algorithms())
      if (a.standard_bench) standard.push_back(a.name);
    rows = standard_matrix(standard);
  }
  std::vector<int> thread_counts;
  if (args.count("scaling") || !args.count("algo"))
    for (int t = 1; t <= max_threads; t = t < max_threads && t * 2 > max_threads ? max_threads : t * 2)
      thread_counts.push_back(t);
  else
    thread_counts.push_back(max_threads);

  data::OpenOptions glyphs;
  glyphs.image.channels = model_cfg["channels"];
  glyphs.image.height = glyphs.image.width = model_cfg["image_size"];
  auto ds = data::open_dataset("builtin:glyphs", glyphs);
  const json machine{{"onednn", backend::dnnl_backend::onednn_version()},
                     {"isa", backend::dnnl_backend::onednn_isa()},
                     {"fma_isa", core::fma_isa()},
                     {"git", git_hash()},
                     {"cpus", omp_get_num_procs()}};
  const bool as_json = args.count("json") > 0;
  if (!as_json && dist::rank() == 0)
    std::printf("%-11s %-8s %-6s %3s %7s %9s %9s %8s %8s %8s %9s %7s %7s %7s %8s\n", "algo", "model", "task", "thr",
                "batch", "s/iter", "spread", "tasks/s", "GFLOP", "GFLOP/s", "convGF/s", "of conv", "of step", "of FMA",
                "RSS MB");

  for (int threads : thread_counts) {
    omp_set_num_threads(threads);
    const double fma_peak = core::fma_peak_gflops(threads);
    struct Ceiling {
      double forward = 0, step = 0;  // GFLOP/s
    };
    std::map<int64_t, Ceiling> conv_ceiling;  // per batch
    for (const Setting& s : rows) {
      // Note [Bare conv of the model's layers]: the ceilings a row is compared with are bare oneDNN primitives
      // (backend/dnnl/bare.h) of each of the model's convolutions on one task's query set (Reptile: an inner
      // batch; pretraining: the mini-batch), one task per thread, combined as a pass over the model would
      // spend its time: sum of FLOP / sum of seconds. `forward` runs the forward primitives alone; `step` the
      // three kernels a training step runs for every layer (forward, backward data, backward weights, equal
      // FLOP each, as gflop_per_iter counts them). A training row can reach neither, but `step` is the one
      // that does the same kinds of work: oneDNN's kernels differ in rate (e.g. Winograd on ResNet-12's
      // 640->640 layer at 4x4, batch 64: forward 155, backward data 130 GFLOP/s-equivalent on one thread).
      const int64_t n = s.batch > 0 ? s.batch
                                    : s.ways * (meta::find_algorithm(s.algo).own_bench_recipe ? inner_batch : s.queries);
      if (!conv_ceiling.count(n)) {
        using backend::dnnl_backend::ConvKernel;
        double flop = 0, forward_seconds = 0, step_seconds = 0;
        for (const tensor::ConvShape& cs : nn::Model(nn::model_config(model_cfg, 0)).conv_layers(n)) {
          const double f = 2.0 * static_cast<double>(cs.macs());
          flop += f;
          const double fwd = f / (1e9 * backend::dnnl_backend::bare_conv_gflops(cs, ConvKernel::forward, threads, 0.2));
          forward_seconds += fwd;
          step_seconds += fwd;
          for (ConvKernel k : {ConvKernel::backward_data, ConvKernel::backward_weights})
            step_seconds += f / (1e9 * backend::dnnl_backend::bare_conv_gflops(cs, k, threads, 0.2));
        }
        conv_ceiling[n] = {flop / forward_seconds / 1e9, 3 * flop / step_seconds / 1e9};
      }
      const double procs = dist::size();
      const Ceiling ceiling{conv_ceiling[n].forward * procs, conv_ceiling[n].step * procs};  // the job's
      // Each row's peak memory is its own: hand every cached and freed buffer back to the system first.
      tensor::release_cached_buffers();
      malloc_trim(0);
      reset_peak_resident();
      const nn::ModelConfig mc = nn::model_config(model_cfg, meta::find_algorithm(s.algo).uses_head ? s.ways : 0);
      meta::AlgoConfig ac;
      ac.algo = s.algo;
      ac.inner_steps = s.inner_steps;
      ac.inner_lr = s.inner_lr;
      if (s.batch > 0) {
        ac.batch_size = s.batch;
        ac.pretrain_classes = s.ways;
      }
      core::Rng init(1);
      nn::Model model(mc);
      auto algo = meta::make_algorithm(model, ac, init);
      std::unique_ptr<optim::Optimizer> opt;
      json outer = io::settings_defaults();
      outer.update(meta::find_algorithm(s.algo).defaults);
      outer["iterations"] = warmup + repeats;
      if (s.batch > 0) outer.update({{"optimizer", "sgd"}, {"outer_lr", 0.05}, {"momentum", 0.9}, {"weight_decay", 5e-4}});
      opt = optim::make_optimizer(outer);
      data::EpisodeSampler sampler(ds, "train", {s.ways, std::max<int64_t>(s.shots, 1), s.queries}, 1);
      // Over several processes (Note [Processes] in core/dist.h) each holds its block of every meta-batch, as
      // meta-train does; the steps start together and process 0 times them and reports.
      const auto [first, end] = dist::block(s.meta_batch, dist::rank(), dist::size());
      std::vector<std::vector<meta::Task>> batches(static_cast<size_t>(warmup + repeats));
      for (size_t b = 0; b < batches.size(); ++b)
        for (int64_t t = first; t < end; ++t) {
          const uint64_t i = b * static_cast<uint64_t>(s.meta_batch) + static_cast<uint64_t>(t);
          batches[b].push_back(s.batch > 0 ? pretrain_batch(sampler.episode(i), s.ways, s.batch, i)
                                           : to_task(sampler.episode(i), s.ways, i));
        }
      std::vector<double> times, comm_seconds, comm_mb;
      for (size_t b = 0; b < batches.size(); ++b) {
        dist::any(false);  // every process starts the step together
        dist::take_stats();
        const auto t0 = std::chrono::steady_clock::now();
        meta::meta_step(*algo, batches[b], first, s.meta_batch, *opt);
        const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const dist::Stats c = dist::take_stats();
        if (static_cast<int>(b) >= warmup) {
          times.push_back(dt);
          comm_seconds.push_back(c.seconds);
          comm_mb.push_back(static_cast<double>(c.bytes) / 1e6);
        }
      }
      if (dist::rank() != 0) continue;
      const double med = median(times);
      const double spread = *std::max_element(times.begin(), times.end()) - *std::min_element(times.begin(), times.end());
      const double gflop = analytic_gflop(s, model, inner_batch);
      const double gflops = gflop / med;
      json row{{"algo", s.algo},
               {"ways", s.ways},
               {"shots", s.shots},
               {"queries", s.queries},
               {"meta_batch", s.meta_batch},
               {"inner_steps", s.inner_steps},
               {"inner_lr", s.inner_lr},
               {"model", model_cfg["model"]},
               {"filters", filters},
               {"widths", model_cfg["widths"]},
               {"conv_algorithm", model_cfg["conv_algorithm"]},
               {"image_size", model_cfg["image_size"]},
               {"channels", model_cfg["channels"]},
               {"threads", threads},
               {"warmup", warmup},
               {"repeats", repeats},
               {"seconds_per_iter_median", med},
               {"seconds_per_iter_min", *std::min_element(times.begin(), times.end())},
               {"seconds_per_iter_max", *std::max_element(times.begin(), times.end())},
               {"tasks_per_second", static_cast<double>(s.meta_batch) / med},
               {"images_per_second", s.batch > 0 ? json(static_cast<double>(s.batch) / med) : json(nullptr)},
               {"batch_size", s.batch > 0 ? json(s.batch) : json(nullptr)},
               {"gflop_per_iter", gflop},
               {"gflops", gflops},
               {"bare_conv_gflops", ceiling.forward},
               {"bare_step_conv_gflops", ceiling.step},
               {"fma_peak_gflops", fma_peak * procs},
               {"peak_fraction", gflops / ceiling.forward},
               {"step_peak_fraction", gflops / ceiling.step},
               {"fma_peak_fraction", gflops / (fma_peak * procs)},
               {"peak_rss_mb", peak_resident_mb()}};
      row.update(machine);
      if (dist::active()) {
        // The job's ceilings are every process's (above); memory is process 0's.
        row["processes"] = dist::size();
        row["comm_seconds_per_iter_median"] = median(comm_seconds);
        row["comm_mb_per_iter"] = median(comm_mb);
      }
      if (as_json) {
        std::printf("%s\n", row.dump().c_str());
      } else {
        // Pretraining: "64c" (classes); its batch column is images per mini-batch and tasks/s images/s.
        const std::string task = s.batch > 0 ? std::to_string(s.ways) + "c"
                                             : std::to_string(s.ways) + "w" + std::to_string(s.shots) + "s";
        const int64_t per_iter = s.batch > 0 ? s.batch : s.meta_batch;
        std::printf("%-11s %-8s %-6s %3d %7lld %9.3f %9.3f %8.1f %8.1f %8.1f %9.1f %6.0f%% %6.0f%% %6.0f%% %8.0f\n",
                    s.algo.c_str(), model_cfg["model"].get<std::string>().c_str(), task.c_str(), threads,
                    static_cast<long long>(per_iter), med, spread, static_cast<double>(per_iter) / med, gflop,
                    gflops, ceiling.forward, 100 * gflops / ceiling.forward, 100 * gflops / ceiling.step,
                    100 * gflops / (fma_peak * procs), peak_resident_mb());
        if (dist::active())
          std::printf("%-11s %d processes x %d threads: communication %.4f s and %.3f MB per iteration (median)\n",
                      "", dist::size(), threads, median(comm_seconds), median(comm_mb));
      }
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace metafew::cli
