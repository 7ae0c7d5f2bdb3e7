#include "io/settings.h"

#include <unistd.h>

#include <cmath>
#include <limits>

#include "core/error.h"
#include "data/dataset.h"
#include "meta/algorithm.h"
#include "nn/model.h"
#include "optim/optimizer.h"

// Note [One check for every source]: a setting's valid values are declared beside its default, and one
// function checks a resolved configuration wherever it came from: flags and config files (after merging),
// the config.json of a run folder and the header of a checkpoint (on eval, adapt, predict, export and
// resume). A checkpoint's checksum only proves that the file is the one written; a header edited and
// re-checksummed, or written by a buggy tool, used to build a model of 2^63 filters or divide by a
// checkpoint_every of 0. The upper bounds are far above any real run (Omniglot has 1,623 characters; the
// field's images are at most a few hundred pixels a side) and exist so that no value can make a size
// computation overflow or ask for more memory than a machine has before anything is checked.

namespace metafew::io {

using nlohmann::json;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kMaxCount = 1e9;  // iterations, intervals
constexpr double kMaxSeed = 1e18;

Setting integer(const char* key, int64_t def, double min, double max, const char* help) {
  return Setting{key, def, help, min, max, {}};
}
Setting number(const char* key, double def, const char* help) { return Setting{key, def, help, 0, kInf, {}}; }
Setting boolean(const char* key, bool def, const char* help) { return Setting{key, def, help, 0, 0, {}}; }
Setting text(const char* key, const char* def, const char* help,
             std::function<void(const std::string&)> check = {}) {
  return Setting{key, def, help, 0, 0, std::move(check)};
}

void one_of(const std::string& flag, const std::string& value, std::initializer_list<const char*> accepted) {
  std::string list;
  size_t i = 0;
  for (const char* a : accepted) {
    if (value == a) return;
    list += (i == 0 ? "" : (i + 1 == accepted.size() ? " or " : ", ")) + std::string(a);
    ++i;
  }
  throw Error(detail::concat(flag, " must be ", list, ", got '", value, "'"), ErrorKind::usage);
}

std::vector<Setting> declare() {
  return {
      text("data", "builtin:glyphs",
           "dataset: a folder (Omniglot or class-per-folder layout), builtin:glyphs or builtin:sinusoid"),
      text("layout", "auto", "folder layout: auto, omniglot or folder",
           [](const std::string& v) { data::parse_layout(v); }),
      text("cache_dir", "", "decoded-image cache folder (empty: $METAFEW_CACHE_DIR or ~/.cache/metafew)"),
      text("algo", "maml", "maml, fomaml, metasgd, anil, reptile, protonet, matchingnet or paramnet",
           [](const std::string& v) {
             std::string names;
             for (const auto& n : meta::algorithm_names()) {
               if (n == v) return;
               names += (names.empty() ? "" : ", ") + n;
             }
             throw Error(detail::concat("unknown --algo '", v, "' (expected one of: ", names, ")"),
                         ErrorKind::usage);
           }),
      integer("ways", 5, 0, 10000, "classes per training task (N)"),
      integer("shots", 1, 1, 10000, "labelled examples per class in a training task (K)"),
      integer("queries", 15, 1, 10000, "query examples per class in a training task"),
      integer("test_ways", 0, 0, 10000, "classes per validation/test task (0: same as --ways)"),
      integer("test_shots", 0, 0, 10000, "shots per validation/test task (0: same as --shots)"),
      integer("test_queries", 0, 0, 10000, "queries per validation/test task (0: same as --queries)"),
      integer("meta_batch", 32, 1, 100000, "tasks per meta-iteration"),
      integer("inner_steps", 1, 0, 100000, "inner-loop steps in meta-training (Reptile: inner iterations)"),
      number("inner_lr", 0.4,
             "inner-loop learning rate, a step on the support loss averaged over the support examples "
             "(cbfinn/maml sums its loss over the classes: its rate r for N-way tasks is N x r here)"),
      integer("eval_steps", 10, 0, 100000, "inner-loop steps when adapting at validation and test time"),
      boolean("first_order", false, "drop second-order terms (MAML family, ANIL, ParamNet refinement)"),
      boolean("inner_bn", true,
              "MAML family: the inner loop adapts batch-norm parameters too (false: only convolutions and "
              "head, as MAML's code)"),
      integer("inner_batch", 10, 1, 100000, "Reptile: inner mini-batch size"),
      text("inner_optimizer", "adam", "Reptile: inner optimizer, adam (beta1 = 0) or sgd",
           [](const std::string& v) { one_of("--inner-optimizer", v, {"adam", "sgd"}); }),
      text("inner_state", "carry",
           "Reptile: inner Adam state, carry (from task to task, as supervised-reptile) or fresh (per task)",
           [](const std::string& v) { one_of("--inner-state", v, {"carry", "fresh"}); }),
      integer("refine_steps", 0, 0, 100000, "ParamNet: inner steps refining the predicted head"),
      text("matching_attention", "cosine",
           "Matching Networks: cosine (the paper) or supnorm (q.s/|s|, as the reference code)",
           [](const std::string& v) { meta::parse_matching_attention(v); }),
      text("optimizer", "adam", "outer optimizer: adam or sgd",
           [](const std::string& v) { one_of("--optimizer", v, {"adam", "sgd"}); }),
      number("outer_lr", 0.001, "outer learning rate (Reptile: meta step size)"),
      text("schedule", "constant", "outer learning-rate schedule: constant, step, cosine or linear",
           [](const std::string& v) { optim::Schedule{v, 1, 0.5, 1}.at(1.0, 0); }),  // throws naming the kinds
      integer("schedule_step", 2000, 1, kMaxCount, "step schedule: iterations between decays"),
      number("schedule_gamma", 0.5, "step schedule: decay factor"),
      integer("iterations", 1000, 1, kMaxCount, "meta-iterations"),
      integer("seed", 1, 0, kMaxSeed, "random seed (initialisation, tasks, splits)"),
      integer("threads", 0, 0, 4096, "OpenMP threads (0: all cores)"),
      text("model", "conv4", "backbone: conv4 (mlp for builtin:sinusoid)",
           [](const std::string& v) { one_of("--model", v, {"conv4", "mlp"}); }),
      integer("filters", 64, 1, 4096, "conv4 filters per block"),
      boolean("max_pool", true, "conv4 with 2x2 max-pool (false: MAML's stride-2 convolutions)"),
      text("features", "flatten",
           "conv4 head input: flatten (the last block's output) or mean (over its pixels, as MAML's Omniglot "
           "code)",
           [](const std::string& v) { nn::parse_features(v); }),
      text("head_init", "lecun",
           "head initialisation: lecun (uniform, bound sqrt(3 / inputs)) or normal (N(0, 1), as MAML's "
           "Omniglot code)",
           [](const std::string& v) { nn::parse_head_init(v); }),
      text("bn", "transductive",
           "batch norm statistics: transductive (query batch), support, or nontransductive (support + 1 query)",
           [](const std::string& v) { nn::parse_bn_mode(v); }),
      boolean("bn_scale", true,
              "conv4 batch norm with a learned scale (false: scale fixed at 1, no parameter, as MAML's code)"),
      integer("image_size", 28, 1, 1024, "images are resized to image_size x image_size"),
      integer("channels", 1, 1, 3, "image channels (1 grayscale, 3 RGB)"),
      text("train_split", "train", "split to meta-train on"),
      text("val_split", "val", "split to validate on (empty: no validation)"),
      integer("log_every", 50, 1, kMaxCount, "iterations between log lines"),
      integer("val_every", 500, 1, kMaxCount, "iterations between validations"),
      integer("val_episodes", 100, 1, 1e7, "episodes per validation"),
      integer("checkpoint_every", 500, 1, kMaxCount, "iterations between checkpoints of RUN/last"),
  };
}

std::string short_value(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  return s.size() > 60 ? s.substr(0, 57) + "..." : s;
}

// The check of one value, with the message a flag gets.
void check_one(const Setting& s, const json& v) {
  const std::string flag = flag_of(s.key);
  const json& def = s.default_value;
  if (def.is_boolean()) {
    MF_USAGE_CHECK(v.is_boolean(), flag, " must be true or false, got ", short_value(v));
  } else if (def.is_number_integer()) {
    MF_USAGE_CHECK(v.is_number_integer(), flag, " must be an integer, got ", short_value(v));
    // Compared as integers (a double would round 10^18 + 1 down); unsigned JSON integers above INT64_MAX are
    // out of every range.
    const bool representable = !v.is_number_unsigned() || v.get<uint64_t>() <= uint64_t{1} << 62;
    const int64_t x = representable ? v.get<int64_t>() : std::numeric_limits<int64_t>::max();
    const int64_t lo = static_cast<int64_t>(s.min), hi = static_cast<int64_t>(s.max);
    const std::string lower = lo == 1 ? "positive" : lo == 0 ? ">= 0" : detail::concat(">= ", lo);
    MF_USAGE_CHECK(x >= lo && x <= hi, flag, " must be ", lower, " and at most ", hi, ", got ", short_value(v));
  } else if (def.is_number()) {
    MF_USAGE_CHECK(v.is_number(), flag, " must be a number, got ", short_value(v));
    const double x = v.get<double>();
    MF_USAGE_CHECK(std::isfinite(x) && x >= s.min && x <= s.max, flag, " must be a finite number >= ", s.min,
                   ", got ", x);
  } else {
    MF_USAGE_CHECK(v.is_string(), flag, " must be a string, got ", short_value(v));
    if (s.check_choice) s.check_choice(v.get<std::string>());
  }
}

uint64_t saturating_mul(uint64_t a, uint64_t b) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) return std::numeric_limits<uint64_t>::max();
  return a * b;
}

uint64_t physical_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? saturating_mul(static_cast<uint64_t>(pages), static_cast<uint64_t>(page))
                               : std::numeric_limits<uint64_t>::max();
}

// The rules of one setting that depend on another (the dataset's kind): checked with the setting, so that a
// stored configuration's message names the key.
void check_related(const Setting& s, const json& cfg) {
  const bool regression = cfg["data"] == "builtin:sinusoid";
  // A 1-way task is classified correctly whatever the model: it would report 100%.
  if (s.key == "ways")
    MF_USAGE_CHECK(regression || cfg["ways"].get<int64_t>() >= 2,
                   "--ways must be at least 2 (a 1-way task is always 100% correct), got ", cfg["ways"]);
  if (s.key == "test_ways")
    MF_USAGE_CHECK(regression || cfg["test_ways"].get<int64_t>() != 1,
                   "--test-ways must be 0 (same as --ways) or at least 2 (a 1-way task is always 100% correct), "
                   "got 1");
  if (s.key == "channels")
    MF_USAGE_CHECK(cfg["channels"] == 1 || cfg["channels"] == 3, "--channels must be 1 or 3, got ", cfg["channels"]);
}

void check_combination(const json& cfg) {
  const bool regression = cfg["data"] == "builtin:sinusoid";
  const std::string model = cfg["model"];
  MF_USAGE_CHECK(regression == (model == "mlp"), "--model ", model, " does not fit --data ",
                 cfg["data"].get<std::string>(), " (builtin:sinusoid uses mlp, image datasets conv4)");
  MF_USAGE_CHECK(!regression || meta::algorithm_uses_head(cfg["algo"]), "--algo ", cfg["algo"].get<std::string>(),
                 " is a classification method; builtin:sinusoid is regression");
  if (regression) return;
  // One meta-batch of episodes is held in memory at once; refuse before allocating rather than be killed.
  const uint64_t need = episode_batch_bytes(cfg["meta_batch"], cfg["ways"], cfg["shots"], cfg["queries"],
                                            cfg["channels"], cfg["image_size"]);
  const uint64_t have = physical_memory_bytes();
  MF_USAGE_CHECK(need <= have, "one meta-batch (--meta-batch ", cfg["meta_batch"], " tasks of --ways ", cfg["ways"],
                 " x (--shots ", cfg["shots"], " + --queries ", cfg["queries"], ") images of --image-size ",
                 cfg["image_size"], " x ", cfg["image_size"], " x --channels ", cfg["channels"], ") needs ",
                 static_cast<double>(need) / 1e9, " GB, more than this machine's memory (",
                 static_cast<double>(have) / 1e9, " GB); lower --meta-batch, the shots or the image size");
}

}  // namespace

const std::vector<Setting>& settings() {
  static const std::vector<Setting> all = declare();
  return all;
}

const Setting* find_setting(const std::string& key) {
  for (const Setting& s : settings())
    if (s.key == key) return &s;
  return nullptr;
}

json settings_defaults() {
  json d = json::object();
  for (const Setting& s : settings()) d[s.key] = s.default_value;
  return d;
}

std::string flag_of(const std::string& key) {
  std::string f = "--" + key;
  for (char& c : f)
    if (c == '_') c = '-';
  return f;
}

void validate_settings(const json& cfg, const std::string& where) {
  const std::string prefix = where.empty() ? "" : where + ": ";
  MF_USAGE_CHECK(cfg.is_object(), prefix, "the settings are not a JSON object");
  for (const Setting& s : settings()) {
    MF_USAGE_CHECK(cfg.contains(s.key), prefix, "setting \"", s.key, "\" is missing");
    try {
      check_one(s, cfg[s.key]);
      if (cfg.contains("data") && cfg["data"].is_string()) check_related(s, cfg);
    } catch (const Error& e) {
      if (where.empty()) throw;
      throw Error(detail::concat(prefix, "setting \"", s.key, "\": ", e.what()), ErrorKind::usage);
    }
  }
  try {
    check_combination(cfg);
  } catch (const Error& e) {
    if (where.empty()) throw;
    throw Error(detail::concat(prefix, e.what()), ErrorKind::usage);
  }
}

uint64_t episode_batch_bytes(int64_t tasks, int64_t ways, int64_t shots, int64_t queries, int64_t channels,
                             int64_t image_size) {
  uint64_t b = 4;  // float32
  for (int64_t f : {tasks, ways, shots + queries, channels, image_size, image_size})
    b = saturating_mul(b, static_cast<uint64_t>(std::max<int64_t>(f, 0)));
  return b;
}

}  // namespace metafew::io
