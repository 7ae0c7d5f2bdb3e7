#include "io/settings.h"

#include <unistd.h>

#include <cmath>
#include <limits>

#include "core/error.h"
#include "data/options.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "meta/options.h"
#include "meta/registry.h"
#include "meta/training.h"
#include "nn/backbone.h"
#include "nn/options.h"
#include "optim/options.h"

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
    const std::string lower = lo == 1 ? "positive" : lo == 0 ? ">= 0" : ::metafew::detail::concat(">= ", lo);
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
  const bool regression = data::is_regression(cfg);
  // A 1-way task is classified correctly whatever the model: it would report 100%.
  if (s.key == "ways")
    MF_USAGE_CHECK(regression || cfg["ways"].get<int64_t>() >= 2,
                   "--ways must be at least 2 (a 1-way task is always 100% correct), got ", cfg["ways"]);
  if (s.key == "test_ways")
    MF_USAGE_CHECK(regression || cfg["test_ways"].get<int64_t>() != 1,
                   "--test-ways must be 0 (same as --ways) or at least 2 (a 1-way task is always 100% correct), "
                   "got 1");
  if (s.key == "augment" && regression)
    MF_USAGE_CHECK(cfg["augment"] == "none", "--augment ", cfg["augment"].get<std::string>(),
                   " applies to image datasets; ", cfg["data"].get<std::string>(), " has no images");
  if ((s.key == "episodes_within" || s.key == "test_episodes_within") && regression)
    MF_USAGE_CHECK(cfg[s.key] != "alphabet", flag_of(s.key), " alphabet applies to image datasets; ",
                   cfg["data"].get<std::string>(), " has no classes");
  if (s.key == "channels")
    MF_USAGE_CHECK(cfg["channels"] == 1 || cfg["channels"] == 3, "--channels must be 1 or 3, got ", cfg["channels"]);
  if (s.key == "drop_rate") {
    MF_USAGE_CHECK(cfg["drop_rate"].get<double>() < 1, "--drop-rate must be below 1 (the fraction of activations ",
                   "dropped), got ", cfg["drop_rate"]);
    MF_USAGE_CHECK(cfg["drop_rate"].get<double>() == 0 || cfg["model"] == "resnet12", "--drop-rate applies to ",
                   "--model resnet12 (RFS's dropout and DropBlock), not ", cfg["model"].get<std::string>());
  }
  // Note [Input normalisation] in nn/options.cpp.
  if (s.key == "normalize" && regression)
    MF_USAGE_CHECK(cfg["normalize"] != "channel", "--normalize channel applies to image datasets; ",
                   cfg["data"].get<std::string>(), " has no images");
  if ((s.key == "input_mean" || s.key == "input_std") && !cfg[s.key].get<std::string>().empty()) {
    const std::vector<float> v = nn::parse_channel_values(cfg[s.key], flag_of(s.key), s.key == "input_std");
    MF_USAGE_CHECK(!regression, flag_of(s.key), " applies to image datasets; ", cfg["data"].get<std::string>(),
                   " has no images");
    MF_USAGE_CHECK(!cfg["channels"].is_number_integer() || static_cast<int64_t>(v.size()) == cfg["channels"].get<int64_t>(),
                   flag_of(s.key), " gives ", v.size(), " value", v.size() == 1 ? "" : "s", " ('",
                   cfg[s.key].get<std::string>(), "') but the images have --channels ", cfg["channels"],
                   ": give one per channel");
    MF_USAGE_CHECK(cfg["normalize"] != "none", flag_of(s.key), " is given but --normalize is none: pass --normalize "
                   "channel to normalise with it, or leave it out");
  }
  if (s.key == "input_std")
    MF_USAGE_CHECK(cfg["input_mean"].get<std::string>().empty() == cfg["input_std"].get<std::string>().empty(),
                   "--input-mean and --input-std go together: give both (one value per channel each) or neither "
                   "(meta-train then takes the training split's)");
}

void check_combination(const json& cfg) {
  const bool regression = data::is_regression(cfg);
  const std::string model = cfg["model"];
  MF_USAGE_CHECK(regression != nn::find_backbone(model).image_input, "--model ", model, " does not fit --data ",
                 cfg["data"].get<std::string>(), " (builtin:sinusoid takes a vector backbone such as mlp, image ",
                 "datasets an image backbone such as conv4)");
  MF_USAGE_CHECK(!regression || meta::find_algorithm(cfg["algo"]).uses_head, "--algo ",
                 cfg["algo"].get<std::string>(), " is a classification method; builtin:sinusoid is regression");
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
  // Each layer declares its own (Note [One check for every source]); --help lists them in this order.
  static const std::vector<Setting> all = [] {
    std::vector<Setting> v;
    for (auto part : {data::data_settings(), meta::algorithm_settings(), meta::training_settings(),
                      optim::optimizer_settings(), nn::model_settings()})
      v.insert(v.end(), part.begin(), part.end());
    return v;
  }();
  return all;
}

// Note [Algorithm and dataset defaults] (a layer of Note [Config precedence] in config.cpp): generic defaults
// < defaults of the chosen algorithm (its registry entry), dataset (data::dataset_defaults) and backbone (its
// registry entry) < config file < flags. The algorithm, dataset and backbone are read from the file and flags
// first, so that `--algo reptile` brings Reptile's own outer loop (SGD, step size 1 annealed linearly) and
// `--model resnet12` its Winograd convolutions unless the user sets those keys. The resolved values are what
// a run folder's config and its checkpoints record.
json resolve_settings(const json& file, const json& flags) {
  json base = settings_defaults();
  validate_config(file, base, "config file");
  validate_config(flags, base, "command line");
  json chosen = merge_config(base, file, flags);
  // The names are checked before their defaults are looked up, with the message a flag gets.
  for (const char* key : {"algo", "data", "model"}) check_one(*find_setting(key), chosen[key]);
  json specific = meta::find_algorithm(chosen["algo"]).defaults;
  specific.update(data::dataset_defaults(chosen["data"]));
  specific.update(nn::find_backbone(chosen["model"]).defaults);
  json resolved = merge_config(merge_config(base, specific, json::object()), file, flags);

  validate_settings(resolved, "");  // ranges, choices and combinations (Note [One check for every source])
  for (const char* k : {"test_ways", "test_shots", "test_queries"}) {
    const std::string train_key = std::string(k).substr(5);
    if (resolved[k].get<int64_t>() == 0) resolved[k] = resolved[train_key];
  }
  if (resolved["test_episodes_within"] == "") resolved["test_episodes_within"] = resolved["episodes_within"];
  return resolved;
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

void check_setting(const std::string& key, const json& value) {
  const Setting* s = find_setting(key);
  MF_CHECK(s, "no setting \"", key, "\" is declared");
  check_one(*s, value);
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
      throw Error(::metafew::detail::concat(prefix, "setting \"", s.key, "\": ", e.what()), ErrorKind::usage);
    }
  }
  try {
    check_combination(cfg);
  } catch (const Error& e) {
    if (where.empty()) throw;
    throw Error(::metafew::detail::concat(prefix, e.what()), ErrorKind::usage);
  }
}

uint64_t episode_batch_bytes(int64_t tasks, int64_t ways, int64_t shots, int64_t queries, int64_t channels,
                             int64_t image_size) {
  uint64_t b = 4;  // float32
  for (int64_t f : {tasks, ways, shots + queries, channels, image_size, image_size})
    b = saturating_mul(b, static_cast<uint64_t>(std::max<int64_t>(f, 0)));
  return b;
}

json checkpoint_config(const io::Checkpoint& ck) {
  MF_CHECK(ck.header.is_object() && ck.header.contains("kind") && ck.header.contains("config") &&
               ck.header["config"].is_object(),
           "checkpoint ", ck.source, ": it is not a metafew model checkpoint (no model configuration in its header)");
  json cfg = ck.header["config"];
  // Note [Settings added later]: a checkpoint written before a setting existed was trained with the behaviour
  // the setting's old value names, so it loads with that value: Reptile's fresh inner optimiser per task (and
  // no carried state), Matching Networks' cosine attention, conv4's flattened head input, LeCun head and
  // learned batch-norm scale, the MAML family's inner loop over every parameter, a fresh initialisation and
  // derived class splits, cross-alphabet episodes and no augmentation.
  if (!cfg.contains("inner_state")) cfg["inner_state"] = "fresh";
  if (!cfg.contains("matching_attention")) cfg["matching_attention"] = "cosine";
  if (!cfg.contains("features")) cfg["features"] = "flatten";
  if (!cfg.contains("head_init")) cfg["head_init"] = "lecun";
  if (!cfg.contains("bn_scale")) cfg["bn_scale"] = true;
  if (!cfg.contains("inner_bn")) cfg["inner_bn"] = true;
  if (!cfg.contains("widths")) cfg["widths"] = nn::widths_name(nn::ModelConfig{}.widths);  // resnet12 came later
  if (!cfg.contains("conv_algorithm")) cfg["conv_algorithm"] = "direct";  // Winograd came later
  if (!cfg.contains("init_from")) cfg["init_from"] = "";                   // so did --init-from
  if (!cfg.contains("split_file")) cfg["split_file"] = "";                 // and --split-file
  if (!cfg.contains("batch_size")) cfg["batch_size"] = 64;               // and pretraining
  if (!cfg.contains("pretrain_classes")) cfg["pretrain_classes"] = 0;
  if (!cfg.contains("head")) cfg["head"] = "own";                       // test-time heads later still
  if (!cfg.contains("logreg_c")) cfg["logreg_c"] = 1.0;
  if (!cfg.contains("momentum")) cfg["momentum"] = 0.0;                 // plain SGD before momentum
  if (!cfg.contains("weight_decay")) cfg["weight_decay"] = 0.0;
  if (!cfg.contains("distance")) cfg["distance"] = "euclidean";         // ProtoNets before Meta-Baseline's
  if (!cfg.contains("episodes_within")) cfg["episodes_within"] = "any";  // Lake's trials came later
  if (!cfg.contains("test_episodes_within")) cfg["test_episodes_within"] = cfg["episodes_within"];
  if (!cfg.contains("augment")) cfg["augment"] = "none";                // and augmentation
  if (!cfg.contains("drop_rate")) cfg["drop_rate"] = 0.0;               // and DropBlock
  if (!cfg.contains("dropblock_size")) cfg["dropblock_size"] = 5;
  if (!cfg.contains("normalize")) cfg["normalize"] = "none";            // and input normalisation
  if (!cfg.contains("input_mean")) cfg["input_mean"] = "";
  if (!cfg.contains("input_std")) cfg["input_std"] = "";
  const std::string where = "checkpoint " + ck.source;
  io::validate_settings(cfg, where);
  // A trained model normalises with recorded values (meta-train fills them in): without them it would see
  // other inputs than it was trained on.
  MF_USAGE_CHECK(nn::parse_normalize(cfg["normalize"]) == nn::Normalize::none || !cfg["input_mean"].get<std::string>().empty(),
                 where, ": setting \"normalize\" is ", cfg["normalize"].get<std::string>(),
                 " but \"input_mean\" and \"input_std\" are empty; the values the model was trained with are "
                 "missing (the file is damaged or its header was edited)");
  // The header's own fields that size or index something (Note [One check for every source]).
  auto header_int = [&](const char* key, int64_t min, int64_t max) {
    if (!ck.header.contains(key)) return;
    const json& v = ck.header[key];
    MF_USAGE_CHECK(v.is_number_integer() && v.get<int64_t>() >= min && v.get<int64_t>() <= max, where,
                   ": header field \"", key, "\" must be an integer from ", min, " to ", max, ", got ",
                   v.dump(-1, ' ', false, json::error_handler_t::replace).substr(0, 60));
  };
  header_int("iteration", 0, cfg["iterations"].get<int64_t>());
  header_int("optimizer_steps", 0, cfg["iterations"].get<int64_t>());
  // An adapted model keeps its source's header (optimizer_state included) without the optimizer tensors.
  if (ck.header["kind"] == "training") header_int("optimizer_state", 0, static_cast<int64_t>(ck.tensors.size()));
  header_int("adapted_weights", 0, static_cast<int64_t>(ck.tensors.size()));
  header_int("ways", 1, 10000);
  header_int("adapt_steps", 0, 100000);
  MF_USAGE_CHECK(ck.header["kind"] == "training" || ck.header["kind"] == "adapted", where,
                 ": header field \"kind\" must be \"training\" or \"adapted\", got ", ck.header["kind"].dump());
  for (const char* flag : {"validation_pending"})
    if (ck.header.contains(flag))
      MF_USAGE_CHECK(ck.header[flag].is_boolean(), where, ": header field \"", flag, "\" must be true or false, got ",
                     ck.header[flag].dump().substr(0, 60));
  if (ck.header.contains("best_score"))
    MF_USAGE_CHECK(ck.header["best_score"].is_null() || ck.header["best_score"].is_number(), where,
                   ": header field \"best_score\" must be a number or null");
  if (ck.header.contains("preprocessing") && ck.header["preprocessing"].contains("channels")) {
    const json& p = ck.header["preprocessing"];
    MF_USAGE_CHECK(p["channels"] == cfg["channels"] && p.value("height", json()) == cfg["image_size"] &&
                       p.value("width", json()) == cfg["image_size"] && (!p.contains("invert") || p["invert"].is_boolean()),
                   where, ": header field \"preprocessing\" (", p.dump().substr(0, 120),
                   ") does not match its settings channels = ", cfg["channels"], ", image_size = ", cfg["image_size"]);
  }
  if (ck.header["kind"] == "adapted") {
    MF_USAGE_CHECK(ck.header.contains("class_names") && ck.header["class_names"].is_array() &&
                       ck.header.contains("ways") && ck.header["class_names"].size() == ck.header["ways"].get<size_t>(),
                   where, ": an adapted model needs \"class_names\", one per class of \"ways\"");
    for (const json& n : ck.header["class_names"])
      MF_USAGE_CHECK(n.is_string(), where, ": header field \"class_names\" must hold strings, got ", n.dump());
  }
  return cfg;
}


}  // namespace metafew::io
