#include "cli/common.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>

#include "data/episode.h"
#include "data/sinusoid.h"
#include "io/config.h"

namespace metafew::cli {

namespace fs = std::filesystem;

json meta_train_defaults() {
  return json{
      {"data", "builtin:glyphs"},
      {"layout", "auto"},
      {"cache_dir", ""},
      {"algo", "maml"},
      {"ways", 5},
      {"shots", 1},
      {"queries", 15},
      {"test_ways", 0},
      {"test_shots", 0},
      {"test_queries", 0},
      {"meta_batch", 32},
      {"inner_steps", 1},
      {"inner_lr", 0.4},
      {"eval_steps", 10},
      {"first_order", false},
      {"inner_bn", true},
      {"inner_batch", 10},
      {"inner_optimizer", "adam"},
      {"inner_state", "carry"},
      {"refine_steps", 0},
      {"matching_attention", "cosine"},
      {"optimizer", "adam"},
      {"outer_lr", 0.001},
      {"schedule", "constant"},
      {"schedule_step", 2000},
      {"schedule_gamma", 0.5},
      {"iterations", 1000},
      {"seed", 1},
      {"threads", 0},
      {"model", "conv4"},
      {"filters", 64},
      {"max_pool", true},
      {"features", "flatten"},
      {"head_init", "lecun"},
      {"bn", "transductive"},
      {"bn_scale", true},
      {"image_size", 28},
      {"channels", 1},
      {"train_split", "train"},
      {"val_split", "val"},
      {"log_every", 50},
      {"val_every", 500},
      {"val_episodes", 100},
      {"checkpoint_every", 500},
  };
}

const std::map<std::string, std::string>& config_help() {
  static const std::map<std::string, std::string> help{
      {"data", "dataset: a folder (Omniglot or class-per-folder layout), builtin:glyphs or builtin:sinusoid"},
      {"layout", "folder layout: auto, omniglot or folder"},
      {"cache_dir", "decoded-image cache folder (empty: $METAFEW_CACHE_DIR or ~/.cache/metafew)"},
      {"algo", "maml, fomaml, metasgd, anil, reptile, protonet, matchingnet or paramnet"},
      {"ways", "classes per training task (N)"},
      {"shots", "labelled examples per class in a training task (K)"},
      {"queries", "query examples per class in a training task"},
      {"test_ways", "classes per validation/test task (0: same as --ways)"},
      {"test_shots", "shots per validation/test task (0: same as --shots)"},
      {"test_queries", "queries per validation/test task (0: same as --queries)"},
      {"meta_batch", "tasks per meta-iteration"},
      {"inner_steps", "inner-loop steps in meta-training (Reptile: inner iterations)"},
      {"inner_lr",
       "inner-loop learning rate, a step on the support loss averaged over the support examples (cbfinn/maml "
       "sums its loss over the classes: its rate r for N-way tasks is N x r here)"},
      {"eval_steps", "inner-loop steps when adapting at validation and test time"},
      {"first_order", "drop second-order terms (MAML family, ANIL, ParamNet refinement)"},
      {"inner_bn",
       "MAML family: the inner loop adapts batch-norm parameters too (false: only convolutions and head, as "
       "MAML's code)"},
      {"inner_batch", "Reptile: inner mini-batch size"},
      {"inner_optimizer", "Reptile: inner optimizer, adam (beta1 = 0) or sgd"},
      {"inner_state",
       "Reptile: inner Adam state, carry (from task to task, as supervised-reptile) or fresh (per task)"},
      {"refine_steps", "ParamNet: inner steps refining the predicted head"},
      {"matching_attention",
       "Matching Networks: cosine (the paper) or supnorm (q.s/|s|, as the reference code)"},
      {"optimizer", "outer optimizer: adam or sgd"},
      {"outer_lr", "outer learning rate (Reptile: meta step size)"},
      {"schedule", "outer learning-rate schedule: constant, step, cosine or linear"},
      {"schedule_step", "step schedule: iterations between decays"},
      {"schedule_gamma", "step schedule: decay factor"},
      {"iterations", "meta-iterations"},
      {"seed", "random seed (initialisation, tasks, splits)"},
      {"threads", "OpenMP threads (0: all cores)"},
      {"model", "backbone: conv4 (mlp for builtin:sinusoid)"},
      {"filters", "conv4 filters per block"},
      {"max_pool", "conv4 with 2x2 max-pool (false: MAML's stride-2 convolutions)"},
      {"features", "conv4 head input: flatten (the last block's output) or mean (over its pixels, as MAML's Omniglot code)"},
      {"head_init", "head initialisation: lecun (uniform, bound sqrt(3 / inputs)) or normal (N(0, 1), as MAML's Omniglot code)"},
      {"bn",
       "batch norm statistics: transductive (query batch), support, or nontransductive (support + 1 query)"},
      {"bn_scale",
       "conv4 batch norm with a learned scale (false: scale fixed at 1, no parameter, as MAML's code)"},
      {"image_size", "images are resized to image_size x image_size"},
      {"channels", "image channels (1 grayscale, 3 RGB)"},
      {"train_split", "split to meta-train on"},
      {"val_split", "split to validate on (empty: no validation)"},
      {"log_every", "iterations between log lines"},
      {"val_every", "iterations between validations"},
      {"val_episodes", "episodes per validation"},
      {"checkpoint_every", "iterations between checkpoints of RUN/last"},
  };
  return help;
}

std::string json_type_name(const json& j) {
  if (j.is_boolean()) return "boolean";
  if (j.is_number_integer()) return "integer";
  if (j.is_number()) return "number";
  if (j.is_string()) return "string";
  return j.type_name();
}

namespace {
std::string flag_name(const std::string& key) {
  std::string f = key;
  for (char& c : f)
    if (c == '_') c = '-';
  return f;
}
}  // namespace

cxxopts::ParseResult parse_options(cxxopts::Options& opts, int argc, char** argv, const char* who) {
  cxxopts::ParseResult args;
  try {
    args = opts.parse(argc, argv);
  } catch (const cxxopts::exceptions::exception& e) {
    throw Error(detail::concat(who, ": ", e.what()), ErrorKind::usage);
  }
  if (!args.count("help") && !args.unmatched().empty()) {
    const std::string& a = args.unmatched()[0];
    // A boolean flag alone means true, so "--max-pool false" leaves "false" over.
    const bool boolean = a == "true" || a == "false";
    throw Error(detail::concat(who, ": unexpected argument '", a, "'",
                               boolean ? " (a boolean flag takes its value after '=', e.g. --max-pool=false)" : ""),
                ErrorKind::usage);
  }
  return args;
}

void add_config_options(cxxopts::Options& opts, const json& defaults, const std::string& group) {
  auto adder = opts.add_options(group);
  for (auto it = defaults.begin(); it != defaults.end(); ++it) {
    const std::string name = flag_name(it.key());
    auto h = config_help().find(it.key());
    const std::string help = h != config_help().end() ? h->second : it.key();
    const json& v = it.value();
    if (v.is_boolean())
      adder(name, help, cxxopts::value<bool>()->default_value(v.get<bool>() ? "true" : "false")->implicit_value("true"));
    else if (v.is_number_integer())
      adder(name, help, cxxopts::value<int64_t>()->default_value(std::to_string(v.get<int64_t>())));
    else if (v.is_number())
      adder(name, help, cxxopts::value<double>()->default_value(v.dump()));
    else
      adder(name, help, cxxopts::value<std::string>()->default_value(v.get<std::string>()));
  }
}

json flags_given(const cxxopts::ParseResult& args, const json& defaults) {
  json flags = json::object();
  for (auto it = defaults.begin(); it != defaults.end(); ++it) {
    const std::string name = flag_name(it.key());
    if (!args.count(name)) continue;
    const json& v = it.value();
    if (v.is_boolean())
      flags[it.key()] = args[name].as<bool>();
    else if (v.is_number_integer())
      flags[it.key()] = args[name].as<int64_t>();
    else if (v.is_number())
      flags[it.key()] = args[name].as<double>();
    else
      flags[it.key()] = args[name].as<std::string>();
  }
  return flags;
}

// Note [Config precedence]: generic defaults < defaults of the chosen algorithm and dataset < config file <
// flags. The algorithm and dataset are read from the file and flags first, so that `--algo reptile` brings
// Reptile's own outer loop (SGD, step size 1 annealed linearly) unless the user sets those keys.
json resolve_config(const json& file, const json& flags) {
  json base = meta_train_defaults();
  io::validate_config(file, base, "config file");
  io::validate_config(flags, base, "command line");
  json chosen = io::merge_config(base, file, flags);
  const std::string algo = chosen["algo"];
  const std::string data = chosen["data"];
  json specific = json::object();
  if (algo == "reptile") {
    specific = {{"optimizer", "sgd"}, {"outer_lr", 1.0},      {"schedule", "linear"}, {"inner_steps", 5},
                {"inner_lr", 0.001},  {"meta_batch", 5},      {"eval_steps", 50},     {"shots", 10},
                {"queries", 5},       {"test_shots", 1},      {"test_queries", 15}};
  } else if (algo == "protonet" || algo == "matchingnet" || algo == "paramnet") {
    specific = {{"meta_batch", 1}, {"eval_steps", 0}};
  }
  if (data == "builtin:sinusoid") {
    specific.update(json{{"model", "mlp"}, {"ways", 0}, {"shots", 10}, {"queries", 10}, {"meta_batch", 25},
                         {"inner_lr", 0.01}, {"eval_steps", 1}, {"val_split", "val"}});
    if (algo == "reptile") specific.update(json{{"test_shots", 10}, {"test_queries", 10}});
  }
  json resolved = io::merge_config(io::merge_config(base, specific, json::object()), file, flags);

  auto positive = [&](const char* key) {
    MF_USAGE_CHECK(resolved[key].get<int64_t>() > 0, "--", flag_name(key), " must be positive, got ", resolved[key]);
  };
  auto non_negative = [&](const char* key) {
    MF_USAGE_CHECK(resolved[key].get<int64_t>() >= 0, "--", flag_name(key), " must be >= 0, got ", resolved[key]);
  };
  const bool regression = resolved["data"] == "builtin:sinusoid";
  if (!regression) positive("ways");
  for (const char* k : {"shots", "meta_batch", "iterations", "log_every", "val_every", "val_episodes",
                        "checkpoint_every", "filters", "image_size", "channels", "inner_batch", "schedule_step"})
    positive(k);
  for (const char* k : {"queries", "test_ways", "test_shots", "test_queries", "inner_steps", "eval_steps",
                        "refine_steps", "threads", "seed"})
    non_negative(k);
  MF_USAGE_CHECK(resolved["queries"].get<int64_t>() > 0, "--queries must be positive: the query set gives the meta-loss");
  for (const char* k : {"inner_lr", "outer_lr", "schedule_gamma"}) {
    const double v = resolved[k].get<double>();
    MF_USAGE_CHECK(std::isfinite(v) && v >= 0, "--", flag_name(k), " must be a finite number >= 0, got ", v);
  }
  MF_USAGE_CHECK(resolved["channels"] == 1 || resolved["channels"] == 3, "--channels must be 1 or 3, got ",
                 resolved["channels"]);
  nn::parse_bn_mode(resolved["bn"]);                               // throws naming the accepted values
  nn::parse_features(resolved["features"]);                        // likewise
  nn::parse_head_init(resolved["head_init"]);                      // likewise
  meta::parse_matching_attention(resolved["matching_attention"]);  // likewise
  const std::string inner_state = resolved["inner_state"];
  MF_USAGE_CHECK(inner_state == "carry" || inner_state == "fresh",
                 "--inner-state must be carry or fresh, got '", inner_state, "'");
  const std::string inner_opt = resolved["inner_optimizer"];
  MF_USAGE_CHECK(inner_opt == "adam" || inner_opt == "sgd", "--inner-optimizer must be adam or sgd, got '",
                 inner_opt, "'");
  const std::string opt = resolved["optimizer"];
  MF_USAGE_CHECK(opt == "adam" || opt == "sgd", "--optimizer must be adam or sgd, got '", opt, "'");
  const std::string model = resolved["model"];
  MF_USAGE_CHECK(model == "conv4" || model == "mlp", "--model must be conv4 or mlp, got '", model, "'");
  MF_USAGE_CHECK(regression == (model == "mlp"), "--model ", model, " does not fit --data ",
                 resolved["data"].get<std::string>(), " (builtin:sinusoid uses mlp, image datasets conv4)");
  bool known = false;
  for (const auto& n : meta::algorithm_names()) known = known || n == resolved["algo"];
  std::string names;
  for (const auto& n : meta::algorithm_names()) names += (names.empty() ? "" : ", ") + n;
  MF_USAGE_CHECK(known, "unknown --algo '", resolved["algo"].get<std::string>(), "' (expected one of: ", names, ")");
  MF_USAGE_CHECK(!regression || meta::algorithm_uses_head(resolved["algo"]), "--algo ",
                 resolved["algo"].get<std::string>(), " is a classification method; builtin:sinusoid is regression");
  optim::Schedule{resolved["schedule"], 1, 0.5, 1}.at(1.0, 0);  // validates the schedule's name
  for (const char* k : {"test_ways", "test_shots", "test_queries"}) {
    const std::string train_key = std::string(k).substr(5);
    if (resolved[k].get<int64_t>() == 0) resolved[k] = resolved[train_key];
  }
  return resolved;
}

bool is_regression(const json& cfg) { return cfg["data"] == "builtin:sinusoid"; }

nn::ModelConfig model_config(const json& cfg, int64_t outputs) {
  nn::ModelConfig m;
  m.arch = cfg["model"];
  if (m.arch == "mlp") {
    m.in_features = 1;
    m.hidden = {40, 40};
  } else {
    m.in_channels = cfg["channels"];
    m.height = m.width = cfg["image_size"];
    m.filters = cfg["filters"];
    m.max_pool = cfg["max_pool"];
    m.features = nn::parse_features(cfg["features"]);
    m.bn_scale = cfg["bn_scale"];
  }
  m.bn = nn::parse_bn_mode(cfg["bn"]);
  m.head_init = nn::parse_head_init(cfg["head_init"]);
  m.outputs = outputs;
  return m;
}

meta::AlgoConfig algo_config(const json& cfg) {
  meta::AlgoConfig a;
  a.algo = cfg["algo"];
  a.inner_steps = cfg["inner_steps"];
  a.inner_lr = cfg["inner_lr"];
  a.first_order = cfg["first_order"];
  a.inner_bn = cfg["inner_bn"];
  a.inner_batch = cfg["inner_batch"];
  a.inner_optimizer = cfg["inner_optimizer"];
  a.carry_inner_state = cfg["inner_state"] == "carry";
  a.refine_steps = cfg["refine_steps"];
  a.matching_attention = meta::parse_matching_attention(cfg["matching_attention"]);
  return a;
}

std::unique_ptr<optim::Optimizer> make_optimizer(const json& cfg) {
  optim::Schedule s;
  s.kind = cfg["schedule"];
  s.step_size = cfg["schedule_step"];
  s.gamma = cfg["schedule_gamma"];
  s.total = cfg["iterations"];
  if (cfg["optimizer"] == "sgd") return std::make_unique<optim::Sgd>(cfg["outer_lr"].get<double>(), s);
  return std::make_unique<optim::Adam>(cfg["outer_lr"].get<double>(), s);
}

std::shared_ptr<const data::Dataset> open_data(const json& cfg) {
  if (is_regression(cfg)) return nullptr;
  data::OpenOptions o;
  o.layout = data::parse_layout(cfg["layout"]);
  o.image.channels = cfg["channels"];
  o.image.height = o.image.width = cfg["image_size"];
  o.cache_dir = cfg["cache_dir"];
  o.split_seed = 1;  // the documented split seed of the built-in and Omniglot splits, independent of --seed
  return data::open_dataset(cfg["data"], o);
}

meta::Task to_task(const data::Episode& e, int64_t ways, uint64_t seed) {
  meta::Task t;
  t.support_x = e.support_x;
  t.support_y = e.support_y;
  t.query_x = e.query_x;
  t.query_y = e.query_y;
  t.ways = ways;
  t.seed = seed;
  return t;
}

TaskSource task_source(const json& cfg, const std::shared_ptr<const data::Dataset>& ds, const std::string& split,
                       int64_t ways, int64_t shots, int64_t queries, uint64_t seed) {
  if (is_regression(cfg)) {
    return [=](uint64_t i) {
      data::RegressionTask r = data::sinusoid_task(seed, split, i, shots, queries);
      meta::Task t;
      t.support_x = r.support_x;
      t.support_y = r.support_y;
      t.query_x = r.query_x;
      t.query_y = r.query_y;
      t.ways = 0;
      t.seed = core::derive_key(seed, {i, 0x7461736bULL});
      return t;
    };
  }
  auto sampler = std::make_shared<data::EpisodeSampler>(ds, split, data::EpisodeSpec{ways, shots, queries}, seed);
  return [sampler, ways, seed](uint64_t i) {
    return to_task(sampler->episode(i), ways, core::derive_key(seed, {i, 0x7461736bULL}));
  };
}

json preprocessing_of(const data::Dataset& ds) {
  return json{{"channels", ds.image_spec().channels},
              {"height", ds.image_spec().height},
              {"width", ds.image_spec().width},
              {"invert", ds.layout() == data::Layout::omniglot},
              {"description", ds.preprocessing()}};
}

io::Checkpoint training_checkpoint(const json& cfg, const meta::Algorithm& algo, const optim::Optimizer& opt,
                                   int64_t iteration, const json& extra) {
  io::Checkpoint ck;
  ck.header = extra;
  ck.header["kind"] = "training";
  ck.header["algo"] = algo.name();
  ck.header["config"] = cfg;
  ck.header["iteration"] = iteration;
  ck.header["optimizer_steps"] = opt.steps();
  ck.header["parameter_names"] = algo.parameter_names();
  for (size_t i = 0; i < algo.parameters().size(); ++i)
    ck.tensors.push_back({"param/" + algo.parameter_names()[i], algo.parameters()[i].data()});
  const auto state = opt.state();
  ck.header["optimizer_state"] = static_cast<int64_t>(state.size());
  for (size_t i = 0; i < state.size(); ++i) ck.tensors.push_back({"optimizer/" + std::to_string(i), state[i]});
  // The algorithm's carried state (Reptile's inner Adam state) is part of the model: export keeps it.
  ck.header["state_names"] = algo.state_names();
  for (size_t i = 0; i < algo.state().size(); ++i)
    ck.tensors.push_back({"state/" + algo.state_names()[i], algo.state()[i]});
  return ck;
}

json checkpoint_config(const io::Checkpoint& ck) {
  MF_CHECK(ck.header.is_object() && ck.header.contains("kind") && ck.header.contains("config") &&
               ck.header["config"].is_object(),
           "checkpoint ", ck.source, ": it is not a metafew model checkpoint (no model configuration in its header)");
  json cfg = ck.header["config"];
  // Note [Settings added later]: a checkpoint written before a setting existed was trained with the behaviour
  // the setting's old value names, so it loads with that value: Reptile's fresh inner optimiser per task (and
  // no carried state), Matching Networks' cosine attention, conv4's flattened head input, LeCun head and
  // learned batch-norm scale, and the MAML family's inner loop over every parameter.
  if (!cfg.contains("inner_state")) cfg["inner_state"] = "fresh";
  if (!cfg.contains("matching_attention")) cfg["matching_attention"] = "cosine";
  if (!cfg.contains("features")) cfg["features"] = "flatten";
  if (!cfg.contains("head_init")) cfg["head_init"] = "lecun";
  if (!cfg.contains("bn_scale")) cfg["bn_scale"] = true;
  if (!cfg.contains("inner_bn")) cfg["inner_bn"] = true;
  return cfg;
}

std::unique_ptr<meta::Algorithm> algorithm_from_checkpoint(const io::Checkpoint& ck) {
  json cfg = checkpoint_config(ck);
  const int64_t outputs = meta::algorithm_uses_head(cfg["algo"]) ? (is_regression(cfg) ? 1 : cfg["ways"].get<int64_t>()) : 0;
  core::Rng rng(0);
  auto algo = meta::make_algorithm(nn::Model(model_config(cfg, outputs)), algo_config(cfg), rng);
  const auto& names = algo->parameter_names();
  for (size_t i = 0; i < names.size(); ++i) {
    const tensor::Tensor& t = io::find_tensor(ck, "param/" + names[i]);
    MF_CHECK(t.shape() == algo->parameters()[i].shape() && t.dtype() == tensor::DType::f32, "checkpoint ", ck.source,
             ": parameter ", names[i], " has shape ", tensor::to_string(t.shape()), ", the model expects ",
             tensor::to_string(algo->parameters()[i].shape()));
    algo->parameters()[i] = autograd::Variable(t.clone(), true);
  }
  // A parameter the configured model lacks (e.g. a batch-norm scale under bn_scale = false) means the header and
  // the tensors disagree: refused rather than silently dropped.
  for (const io::NamedTensor& nt : ck.tensors) {
    if (nt.name.rfind("param/", 0) != 0) continue;
    const std::string name = nt.name.substr(6);
    MF_CHECK(std::find(names.begin(), names.end(), name) != names.end(), "checkpoint ", ck.source,
             ": holds parameter ", name, ", which the model its header configures does not have (",
             names.size(), " parameters); the file is damaged or its header was edited");
  }
  if (!algo->state_names().empty() && ck.header["kind"] == "training") {
    // Adapted models (adapt --save-adapted) need no carried state: prediction uses the adapted weights.
    std::vector<tensor::Tensor> state;
    for (const std::string& name : algo->state_names()) state.push_back(io::find_tensor(ck, "state/" + name));
    algo->set_state(state);
  }
  return algo;
}

std::string resolve_checkpoint_path(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    for (const char* name : {"best", "last"}) {
      fs::path p = fs::path(path) / name;
      if (fs::is_regular_file(p, ec)) return p.string();
    }
    throw Error(detail::concat("checkpoint ", path, ": the folder has neither 'best' nor 'last' (is it a run folder?)"));
  }
  return path;
}

namespace {
double status_mb(const char* field) {
  std::ifstream f("/proc/self/status");
  const std::string key = field;
  for (std::string line; std::getline(f, line);) {
    if (line.rfind(key, 0) == 0) return std::stod(line.substr(key.size())) / 1024.0;  // "<kB> kB"
  }
  return 0;
}
}  // namespace

double resident_mb() { return status_mb("VmRSS:"); }
double peak_resident_mb() { return status_mb("VmHWM:"); }
void reset_peak_resident() { std::ofstream("/proc/self/clear_refs") << "5"; }

}  // namespace metafew::cli
