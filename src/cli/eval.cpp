#include "cli/eval.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <cstdio>
#include <map>
#include <mutex>

#include "cli/common.h"
#include "core/dist.h"
#include "data/options.h"
#include "io/run_dir.h"
#include "meta/registry.h"
#include "meta/trainer.h"

namespace metafew::cli {

namespace {

// Note [Per-class results in eval]: besides the mean accuracy, eval counts over every query of every episode
// how often each dataset class (by name: "Greek/character05/rot90") is recognised, which classes it is taken
// for, and whether the true class is among the K most probable (--top-k). Episodes run in parallel and are
// counted under a lock; the counts are integers, so the totals do not depend on the order. With the same
// number of queries per class in every episode, the correct queries over all queries equal the mean episode
// accuracy. A confusion matrix over a test split's classes (thousands, each meeting a handful of the others)
// would be mostly empty, so eval lists the most frequent confusions instead; adapt gives the full matrix of
// its task.
struct ClassTally {
  std::mutex mutex;
  std::map<std::string, std::pair<int64_t, int64_t>> per_class;  // name -> (correct, queries)
  std::map<std::pair<std::string, std::string>, int64_t> confusions;  // (true, predicted) -> wrong queries
  int64_t queries = 0, top_k_correct = 0;

  void add(const meta::Task& t, const tensor::Tensor& outputs, int64_t top_k) {
    const int64_t q = outputs.shape()[0], c = outputs.shape()[1];
    const std::vector<double> l = outputs.to_vector();
    const std::vector<double> y = t.query_y.to_vector();
    std::lock_guard<std::mutex> lock(mutex);
    for (int64_t i = 0; i < q; ++i) {
      const auto truth = static_cast<int64_t>(y[i]);
      const double* row = l.data() + i * c;
      int64_t best = 0, rank = 0;  // rank: classes placed before the true one (ties: the lower index first)
      for (int64_t k = 0; k < c; ++k) {
        if (row[k] > row[best]) best = k;
        rank += row[k] > row[truth] || (row[k] == row[truth] && k < truth);
      }
      const std::string& name = t.class_names[static_cast<size_t>(truth)];
      auto& [correct, total] = per_class[name];
      ++total;
      correct += best == truth;
      if (best != truth) ++confusions[{name, t.class_names[static_cast<size_t>(best)]}];
      ++queries;
      top_k_correct += rank < top_k;
    }
  }

  // Over several processes each counts its own episodes; the counts are integers, so adding the processes'
  // tallies in any order gives one process's.
  json to_json() const {
    json classes = json::array(), wrong = json::array();
    for (const auto& [name, c] : per_class) classes.push_back({name, c.first, c.second});
    for (const auto& [pair, n] : confusions) wrong.push_back({pair.first, pair.second, n});
    return {{"classes", classes}, {"confusions", wrong}, {"queries", queries}, {"top_k_correct", top_k_correct}};
  }
  void add(const json& other) {
    for (const json& c : other["classes"]) {
      auto& [correct, total] = per_class[c[0].get<std::string>()];
      correct += c[1].get<int64_t>();
      total += c[2].get<int64_t>();
    }
    for (const json& w : other["confusions"]) confusions[{w[0].get<std::string>(), w[1].get<std::string>()}] += w[2].get<int64_t>();
    queries += other["queries"].get<int64_t>();
    top_k_correct += other["top_k_correct"].get<int64_t>();
  }
};

// Note [Recorded evaluations]: an evaluation of a checkpoint inside a run folder (one holding config.json
// and metrics.jsonl) is appended, as one JSON line, to that folder's evals.jsonl, so `metafew report` can
// show it beside the run's curves without the user saving eval's output. The line is eval's --json object
// plus every confusion (eval's output lists the 20 most frequent) and the checkpoint's iteration. It is
// written with one append of a whole line, so two evaluations of one run at once do not interleave; a
// folder that cannot be written (a read-only copy) gets a warning, and the evaluation's output is
// unaffected. --no-record skips it. A new run in the folder (meta-train without --resume) removes the file
// with the rest of the previous run.
void record_eval(const std::string& checkpoint, const json& record) {
  namespace fs = std::filesystem;
  const fs::path folder = fs::path(checkpoint).parent_path().empty() ? fs::path(".") : fs::path(checkpoint).parent_path();
  std::error_code ec;
  if (!fs::is_regular_file(folder / "config.json", ec) || !fs::is_regular_file(folder / "metrics.jsonl", ec)) return;
  const std::string target = (folder / "evals.jsonl").string();
  try {
    io::append_line(target, record.dump(-1, ' ', false, json::error_handler_t::replace));
  } catch (const Error& e) {
    std::fprintf(stderr, "warning: eval: not recorded for metafew report (%s)\n", e.what());
  }
}

}  // namespace

int run_eval(int argc, char** argv) {
  cxxopts::Options opts("metafew eval",
                        "Evaluate a checkpoint on test episodes: mean accuracy (or -MSE) and its 95% interval "
                        "(1.96 std / sqrt(episodes)). Without --data, the dataset it was trained on.");
  opts.set_width(100);
  add_shared_flags(opts, {SharedFlag::checkpoint, SharedFlag::data, SharedFlag::threads, SharedFlag::json_output,
                          SharedFlag::head});
  opts.add_options()(
      "split", "split to evaluate on; all: every class of the dataset (a new dataset without a test/ folder)",
      cxxopts::value<std::string>()->default_value("test"))(
      "split-file", "class splits from this file (default: the run's --split-file, else derived as in training)",
      cxxopts::value<std::string>())(
      "ways", "classes per episode (default: the run's test ways)", cxxopts::value<int64_t>())(
      "shots", "shots per class (default: the run's test shots)", cxxopts::value<int64_t>())(
      "queries", "queries per class (default: the run's test queries)", cxxopts::value<int64_t>())(
      "episodes-within",
      "classes of an episode (default: the run's test_episodes_within): any, or alphabet (Lake's trials: the "
      "characters of one Omniglot alphabet, the support drawn by one person and each query by another)",
      cxxopts::value<std::string>())(
      "episodes", "test episodes", cxxopts::value<int64_t>()->default_value("600"))(
      "steps", "inner steps at test time (default: the run's eval_steps)", cxxopts::value<int64_t>())(
      "seed", "seed of the test episodes", cxxopts::value<uint64_t>()->default_value("0"))(
      "top-k", "also report how often the true class is among the K most probable", 
      cxxopts::value<int64_t>()->default_value("1"))(
      "bn",
      "test-time batch norm (default: the run's): transductive (the query batch's statistics), support (the "
      "support set's), nontransductive (support set + one query per forward pass: supervised-reptile's "
      "default)",
      cxxopts::value<std::string>())(
      "matching-attention",
      "Matching Networks: test-time attention (default: the run's): cosine or supnorm (at 1 shot both "
      "predict the same labels)",
      cxxopts::value<std::string>())(
      "no-record", "do not append this evaluation to the run folder's evals.jsonl (read by metafew report)");
  cxxopts::ParseResult args = parse_options(opts, argc, argv, "eval");
  if (args.count("help")) {
    std::printf("%s\n", opts.help().c_str());
    return 0;
  }
  MF_USAGE_CHECK(args.count("checkpoint"), "eval: --checkpoint is required (a checkpoint file or a run folder)");
  apply_threads_flag(args);

  const std::string path = resolve_checkpoint_path(args["checkpoint"].as<std::string>());
  io::Checkpoint ck = io::load_checkpoint(path);
  checkpoint_config(ck);  // throws naming the file when it is not a metafew model checkpoint
  MF_USAGE_CHECK(ck.header["kind"] == "training", "eval: ", path,
                 " is an adapted model (made by adapt --save-adapted); evaluate the meta-trained checkpoint instead");
  if (args.count("bn")) {
    // Batch norm has no parameters of its own here (batch statistics always), so any mode fits any
    // checkpoint.
    nn::parse_bn_mode(args["bn"].as<std::string>());  // throws naming the accepted values
    ck.header["config"]["bn"] = args["bn"].as<std::string>();
  }
  if (args.count("matching-attention")) {
    // Neither attention has parameters, so either fits any Matching Networks checkpoint (Note [Matching
    // Networks attention] in src/meta/algorithm.cpp says when they predict alike).
    MF_USAGE_CHECK(meta::find_algorithm(ck.header["config"]["algo"]).reads("matching_attention"),
                   "eval: --matching-attention applies to Matching Networks checkpoints only; ", path, " is a ",
                   ck.header["config"]["algo"].get<std::string>(), " checkpoint");
    meta::parse_matching_attention(args["matching-attention"].as<std::string>());  // names the accepted values
    ck.header["config"]["matching_attention"] = args["matching-attention"].as<std::string>();
  }
  apply_head_flags(ck, args);
  json cfg = checkpoint_config(ck);
  auto algo = algorithm_from_checkpoint(ck);
  if (args.count("data")) {
    const bool model_regression = data::is_regression(cfg);
    cfg["data"] = args["data"].as<std::string>();
    MF_USAGE_CHECK(data::is_regression(cfg) == model_regression, "eval: --data ", cfg["data"].get<std::string>(), " is ",
                   data::is_regression(cfg) ? "a regression dataset" : "an image dataset", "; this checkpoint is ",
                   model_regression ? "a regression (sinusoid) model" : "an image classifier");
  }
  // The run's split file names the run's dataset's classes: another --data derives its own splits unless given
  // a --split-file too.
  if (args.count("data")) cfg["split_file"] = "";
  if (args.count("split-file")) cfg["split_file"] = args["split-file"].as<std::string>();
  const bool regression = data::is_regression(cfg);
  const int64_t ways = args.count("ways") ? args["ways"].as<int64_t>() : cfg["test_ways"].get<int64_t>();
  const int64_t shots = args.count("shots") ? args["shots"].as<int64_t>() : cfg["test_shots"].get<int64_t>();
  const int64_t queries = args.count("queries") ? args["queries"].as<int64_t>() : cfg["test_queries"].get<int64_t>();
  const int64_t steps = test_steps(cfg, args, "eval");
  const int64_t episodes = args["episodes"].as<int64_t>();
  MF_USAGE_CHECK(regression || ways >= 2, "eval: --ways must be at least 2 (a 1-way task is always 100% correct), got ",
                 ways);
  MF_USAGE_CHECK(shots >= 1, "eval: --shots must be >= 1, got ", shots);
  MF_USAGE_CHECK(queries >= 1, "eval: --queries must be >= 1, got ", queries);
  MF_USAGE_CHECK(steps >= 0, "eval: --steps must be >= 0, got ", steps);
  // Each episode's score is kept for the interval: 10^8 episodes are 800 MB of scores and days of work.
  MF_USAGE_CHECK(episodes >= 1 && episodes <= 100000000, "eval: --episodes must be positive and at most 100000000, got ",
                 episodes);
  for (const auto& [flag, v] : {std::pair{"--ways", ways}, {"--shots", shots}, {"--queries", queries}})
    MF_USAGE_CHECK(v <= 10000, "eval: ", flag, " must be at most 10000, got ", v);
  if (meta::find_algorithm(cfg["algo"]).uses_head && cfg["head"] == "own" && !regression)
    MF_USAGE_CHECK(ways == cfg["ways"].get<int64_t>(), "eval: this ", cfg["algo"].get<std::string>(),
                   " checkpoint has a ", cfg["ways"].get<int64_t>(), "-way head; --ways ", ways, " does not fit it");

  auto ds = open_data(cfg);
  const std::string split = args["split"].as<std::string>();
  if (ds) {
    if (dist::rank() == 0) warn_about_data(*ds, "eval", true);
    require_split_fits(cfg, *ds, split, ways, "eval");
  }
  const std::string within = args.count("episodes-within") ? args["episodes-within"].as<std::string>()
                                                            : cfg["test_episodes_within"].get<std::string>();
  const data::Within within_rule = data::parse_within(within);
  MF_USAGE_CHECK(!regression || within_rule == data::Within::any,
                 "eval: --episodes-within applies to image datasets; builtin:sinusoid has no classes");
  TaskSource tasks = task_source(cfg, ds, split, regression ? 0 : ways, shots, queries, args["seed"].as<uint64_t>(),
                                 within_rule);
  const int64_t top_k = args["top-k"].as<int64_t>();
  MF_USAGE_CHECK(regression || (top_k >= 1 && top_k <= ways), "eval: --top-k must be from 1 to --ways (", ways,
                 "), got ", top_k);
  ClassTally tally;
  meta::EpisodeObserver observe;
  if (!regression)
    observe = [&](int64_t, const meta::Task& t, const tensor::Tensor& outputs) { tally.add(t, outputs, top_k); };
  const auto t0 = std::chrono::steady_clock::now();
  // Over several processes (Note [Processes] in core/dist.h) each runs a block of the episodes; the scores come
  // back in episode order (the same mean and interval), the per-class counts are added on process 0, which
  // alone records and prints.
  meta::EvalResult r = meta::evaluate(*algo, tasks, episodes, steps, {}, observe);
  if (dist::active()) {
    const std::vector<std::string> tallies = dist::gather_text(tally.to_json().dump(), 0);
    if (dist::rank() != 0) return 0;
    ClassTally merged;
    for (const std::string& t : tallies) merged.add(json::parse(t));
    tally.per_class = std::move(merged.per_class);
    tally.confusions = std::move(merged.confusions);
    tally.queries = merged.queries;
    tally.top_k_correct = merged.top_k_correct;
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  json out{{"checkpoint", path},
           {"algo", cfg["algo"]},
           {"data", cfg["data"]},
           {"split", split},
           {"ways", ways},
           {"shots", shots},
           {"queries", queries},
           {"episodes_within", within},
           {"steps", steps},
           {"bn", cfg["bn"]},
           {"head", cfg["head"]},
           {"episodes", r.episodes},
           {"seed", args["seed"].as<uint64_t>()},
           {regression ? "neg_mse" : "accuracy", r.mean},
           {"ci95", r.episodes > 1 ? json(r.ci95) : json(nullptr)},  // one episode gives no interval
           {"std", r.stddev},
           {"seconds", secs}};
  if (regression) out["mse"] = -r.mean;
  std::vector<std::pair<std::string, double>> class_accuracy;  // worst first
  std::vector<std::pair<std::pair<std::string, std::string>, int64_t>> confused(tally.confusions.begin(),
                                                                                 tally.confusions.end());
  std::stable_sort(confused.begin(), confused.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  if (!regression) {
    json per_class = json::object();
    for (const auto& [name, counts] : tally.per_class) {
      const double acc = static_cast<double>(counts.first) / counts.second;
      per_class[name] = {{"accuracy", acc}, {"correct", counts.first}, {"queries", counts.second}};
      class_accuracy.push_back({name, acc});
    }
    std::stable_sort(class_accuracy.begin(), class_accuracy.end(),
                     [](const auto& a, const auto& b) { return a.second < b.second; });
    out["per_class"] = per_class;
    json most = json::array();
    for (size_t i = 0; i < confused.size() && i < 20; ++i)
      most.push_back({{"true", confused[i].first.first}, {"predicted", confused[i].first.second}, {"count", confused[i].second}});
    out["most_confused"] = most;
    if (top_k > 1) {
      out["top_k"] = top_k;
      out["top_k_accuracy"] = static_cast<double>(tally.top_k_correct) / static_cast<double>(tally.queries);
    }
  }
  if (meta::find_algorithm(cfg["algo"]).reads("matching_attention")) out["matching_attention"] = cfg["matching_attention"];
  if (!args.count("no-record")) {
    json record = out;
    json all = json::array();  // every confusion, for the report's matrix (stdout keeps the top 20)
    for (const auto& [pair, count] : confused) all.push_back({pair.first, pair.second, count});
    if (!regression) record["confusions"] = all;
    record["checkpoint_iteration"] = ck.header.value("iteration", json(nullptr));
    record_eval(path, record);
  }
  if (args.count("json")) {
    std::printf("%s\n", out.dump().c_str());
  } else {
    char ci[64];
    std::snprintf(ci, sizeof ci, regression ? " +- %.4f (95%%)" : " +- %.2f%% (95%%)",
                  regression ? r.ci95 : 100 * r.ci95);
    const std::string interval = r.episodes > 1 ? ci : " (no interval from one episode)";
    char value[64];
    std::snprintf(value, sizeof value, regression ? "MSE %.4f" : "accuracy %.2f%%", regression ? -r.mean : 100 * r.mean);
    if (regression)
      std::printf("%s %s, %lld-shot, %lld episodes, %lld steps: %s%s\n", cfg["algo"].get<std::string>().c_str(),
                  split.c_str(), static_cast<long long>(shots), static_cast<long long>(episodes),
                  static_cast<long long>(steps), value, interval.c_str());
    else
      std::printf("%s%s %s, %lld-way %lld-shot, %lld episodes, %lld steps, %s batch norm: %s%s\n",
                  cfg["algo"].get<std::string>().c_str(),
                  cfg["head"] == "own" ? "" : (" + " + cfg["head"].get<std::string>() + " head").c_str(),
                  split.c_str(), static_cast<long long>(ways),
                  static_cast<long long>(shots), static_cast<long long>(episodes), static_cast<long long>(steps),
                  cfg["bn"].get<std::string>().c_str(), value, interval.c_str());
    if (!regression) {
      if (top_k > 1)
        std::printf("top-%lld accuracy %.2f%%\n", static_cast<long long>(top_k),
                    100.0 * static_cast<double>(tally.top_k_correct) / static_cast<double>(tally.queries));
      std::printf("%zu classes met; the least recognised:", class_accuracy.size());
      for (size_t i = 0; i < class_accuracy.size() && i < 5; ++i)
        std::printf("%s %s %.1f%%", i ? "," : "", class_accuracy[i].first.c_str(), 100 * class_accuracy[i].second);
      std::printf("\n");
      if (!confused.empty()) {
        std::printf("most confused (true -> predicted, queries):");
        for (size_t i = 0; i < confused.size() && i < 5; ++i)
          std::printf("%s %s -> %s %lld", i ? "," : "", confused[i].first.first.c_str(),
                      confused[i].first.second.c_str(), static_cast<long long>(confused[i].second));
        std::printf("\n");
      }
    }
  }
  return 0;
}

}  // namespace metafew::cli
