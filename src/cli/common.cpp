#include "cli/common.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>

#include "data/batch.h"
#include "data/episode.h"
#include "data/sinusoid.h"
#include "io/config.h"
#include "data/options.h"
#include "io/safetensors.h"
#include "io/settings.h"
#include "meta/registry.h"
#include "meta/trainer.h"
#include "nn/options.h"

namespace metafew::cli {

namespace fs = std::filesystem;

json meta_train_defaults() { return io::settings_defaults(); }

const std::map<std::string, std::string>& config_help() {
  static const std::map<std::string, std::string> help = [] {
    std::map<std::string, std::string> h;
    for (const io::Setting& s : io::settings()) h[s.key] = s.help;
    return h;
  }();
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

namespace {

struct FlagInfo {
  std::string name;
  bool container = false;
  std::string default_value;  // as cxxopts shows it; "" when none
};

std::vector<FlagInfo> flags_of(const cxxopts::Options& opts) {
  std::vector<FlagInfo> flags;
  for (const std::string& g : opts.groups())
    for (const auto& o : opts.group_help(g).options)
      for (const std::string& l : o.l) flags.push_back({l, o.is_container, o.has_default ? o.default_value : ""});
  return flags;
}

// The flag of a command-line word: "--ways=5" and "--ways" give "ways"; anything else "".
std::string flag_in(const std::string& word) {
  if (word.size() < 3 || word.compare(0, 2, "--") != 0) return "";
  return word.substr(2, word.find('=') == std::string::npos ? std::string::npos : word.find('=') - 2);
}

// What a flag's value must be, from its setting's declaration when it has one, else from its default.
std::string expected_value(const std::string& flag, const std::vector<FlagInfo>& known) {
  std::string key = flag;
  for (char& c : key)
    if (c == '-') c = '_';
  if (const io::Setting* s = io::find_setting(key)) {
    if (s->default_value.is_boolean()) return "true or false (after '=')";
    if (s->default_value.is_number_integer()) return "an integer";
    if (s->default_value.is_number()) return "a finite number";
  }
  for (const FlagInfo& k : known) {
    if (k.name != flag || k.default_value.empty()) continue;
    const json d = json::parse(k.default_value, nullptr, false);
    if (d.is_number_integer()) return "an integer";
    if (d.is_number()) return "a number";
  }
  return "another kind of value";
}

}  // namespace

cxxopts::ParseResult parse_options(cxxopts::Options& opts, int argc, char** argv, const char* who) {
  const std::vector<FlagInfo> known = flags_of(opts);
  cxxopts::ParseResult args;
  try {
    args = opts.parse(argc, argv);
  } catch (const cxxopts::exceptions::no_such_option&) {
    // Name the unknown flag and the nearest known one (cxxopts names it without the dashes' context).
    for (int i = 1; i < argc; ++i) {
      const std::string f = flag_in(argv[i]);
      if (f.empty() || std::any_of(known.begin(), known.end(), [&](const FlagInfo& k) { return k.name == f; }))
        continue;
      std::string best;
      size_t best_d = std::max<size_t>(2, f.size() / 3) + 1;
      for (const FlagInfo& k : known) {
        const size_t d = io::key_distance(f, k.name);
        if (d < best_d) best_d = d, best = k.name;
      }
      throw Error(detail::concat(who, ": unknown flag --", f, best.empty() ? "" : " (did you mean --" + best + "?)"),
                  ErrorKind::usage);
    }
    throw;
  } catch (const cxxopts::exceptions::incorrect_argument_type& e) {
    // Find the flag whose value failed: "--ways five" or "--ways=five".
    for (int i = 1; i < argc; ++i) {
      const std::string word = argv[i], f = flag_in(word);
      if (f.empty()) continue;
      std::string value;
      if (word.find('=') != std::string::npos)
        value = word.substr(word.find('=') + 1);
      else if (i + 1 < argc)
        value = argv[i + 1];
      if (std::string(e.what()).find("'" + value + "'") == std::string::npos &&
          std::string(e.what()).find("\u2018" + value) == std::string::npos)
        continue;
      throw Error(detail::concat(who, ": --", f, " expects ", expected_value(f, known), ", got '", value, "'"),
                  ErrorKind::usage);
    }
    throw Error(detail::concat(who, ": ", e.what()), ErrorKind::usage);
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
  // A flag given twice would silently take its last value.
  for (const FlagInfo& k : known)
    MF_USAGE_CHECK(k.container || args.count(k.name) <= 1, who, ": --", k.name, " is given ", args.count(k.name),
                   " times; give it once");
  return args;
}

void add_shared_flags(cxxopts::Options& opts, std::initializer_list<SharedFlag> flags) {
  auto adder = opts.add_options();
  for (SharedFlag f : flags) {
    switch (f) {
      case SharedFlag::checkpoint:
        adder("checkpoint", "checkpoint file, or a run folder (its best, else its last)", cxxopts::value<std::string>());
        break;
      case SharedFlag::data:
        adder("data", io::find_setting("data")->help, cxxopts::value<std::string>());
        break;
      case SharedFlag::threads: {
        const io::Setting& t = *io::find_setting("threads");
        adder("threads", t.help, cxxopts::value<int64_t>()->default_value(t.default_value.dump()));
        break;
      }
      case SharedFlag::json_output:
        adder("json", "print the result as JSON");
        break;
      case SharedFlag::head:
        adder("head", io::find_setting("head")->help + " (default: the run's)", cxxopts::value<std::string>());
        adder("logreg-c", io::find_setting("logreg_c")->help + " (default: the run's)", cxxopts::value<double>());
        break;
    }
  }
  adder("h,help", "show this help");
}

int64_t test_steps(const json& cfg, const cxxopts::ParseResult& args, const std::string& who) {
  const bool given = args.count("steps") > 0;
  if (cfg["head"] != "own") {
    MF_USAGE_CHECK(!given || args["steps"].as<int64_t>() == 0, who, ": --steps applies to the algorithm's own head; the ",
                   cfg["head"].get<std::string>(), " head classifies the frozen backbone's features (no inner steps)");
    return 0;
  }
  return given ? args["steps"].as<int64_t>() : cfg["eval_steps"].get<int64_t>();
}

void apply_head_flags(io::Checkpoint& ck, const cxxopts::ParseResult& args) {
  if (args.count("head")) {
    const json head = args["head"].as<std::string>();
    io::check_setting("head", head);
    ck.header["config"]["head"] = head;
  }
  if (args.count("logreg-c")) {
    const json c = args["logreg-c"].as<double>();
    io::check_setting("logreg_c", c);
    ck.header["config"]["logreg_c"] = c;
  }
}

void apply_threads_flag(const cxxopts::ParseResult& args) {
  const json threads = args["threads"].as<int64_t>();
  io::check_setting("threads", threads);
  set_threads(threads.get<int64_t>());
}

void set_threads(int64_t n) {
  if (n > 0) omp_set_num_threads(static_cast<int>(n));
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

json resolve_config(const json& file, const json& flags) { return io::resolve_settings(file, flags); }

int64_t head_outputs(const json& cfg) {
  if (!meta::find_algorithm(cfg["algo"]).uses_head) return 0;
  return data::is_regression(cfg) ? 1 : cfg["ways"].get<int64_t>();
}

std::shared_ptr<const data::Dataset> open_data(const json& cfg) {
  if (data::is_regression(cfg)) return nullptr;
  return data::open_dataset(cfg["data"], data::open_options(cfg));
}

meta::Task to_task(const data::Episode& e, int64_t ways, uint64_t seed) {
  meta::Task t;
  t.support_x = e.support_x;
  t.support_y = e.support_y;
  t.query_x = e.query_x;
  t.query_y = e.query_y;
  t.ways = ways;
  t.seed = seed;
  t.class_names = e.class_names;
  return t;
}

// Note [Skipped files]: `metafew data` lists what a scan skipped; the other commands say it in one line, so
// .webp files or images one folder too deep are not lost without a word. Hidden files (.DS_Store) are left
// out of the warning. The colour warning follows Note [Colour read as grayscale] (dataset.cpp).
std::string non_image_kinds(const data::ScanReport& r) {
  std::vector<std::pair<std::string, int64_t>> kinds(r.non_image_extensions.begin(), r.non_image_extensions.end());
  std::stable_sort(kinds.begin(), kinds.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  std::string out;
  for (const auto& [ext, n] : kinds)
    out += detail::concat(out.empty() ? "" : ", ", n, " ", ext.empty() ? "without an extension" : ext);
  return out;
}

void warn_about_data(const data::Dataset& ds, const std::string& who, bool channels_chosen) {
  const data::ScanReport& r = ds.scan_report();
  int64_t skipped = r.skipped_links + r.skipped_other;
  for (const auto& kind : r.non_image_extensions) skipped += kind.second;
  std::string kinds = non_image_kinds(r);
  if (r.skipped_other > 0)
    kinds += detail::concat(kinds.empty() ? "" : ", ", r.skipped_other,
                            " folders inside class folders or images outside them");
  if (r.skipped_links > 0) kinds += detail::concat(kinds.empty() ? "" : ", ", r.skipped_links, " links");
  if (skipped > 0)
    std::fprintf(stderr,
                 "%s: warning: %lld files of %s were skipped (%s); `metafew data --data %s` lists them\n",
                 who.c_str(), static_cast<long long>(skipped), ds.source().c_str(), kinds.c_str(), ds.source().c_str());
  if (r.colour_found > 0)
    std::fprintf(stderr,
                 "%s: warning: %s holds colour images (%lld of %lld sampled) and they are read as grayscale%s\n",
                 who.c_str(), ds.source().c_str(), static_cast<long long>(r.colour_found),
                 static_cast<long long>(r.colour_sampled),
                 channels_chosen ? " (this model takes 1 channel)" : " (--channels 1, the default); pass --channels 3 to keep the colour");
}

// Note [Splits too small for the task]: a user's folder of ten classes is cut 64/16/20% into 6/2/2 classes
// (Note [Ratio split]), so the default 5-way validation cannot be drawn from it. The sampler's own check
// says only that; this one says which flags make the run work, for the command at hand: fewer ways (the
// most every split allows), no validation, every class for eval, or the user's own split file.
void require_split_fits(const json& cfg, const data::Dataset& ds, const std::string& split, int64_t ways,
                        const std::string& who) {
  std::string sizes;
  int64_t smallest = INT64_MAX;
  for (const data::Split& s : ds.splits()) {
    sizes += detail::concat(sizes.empty() ? "" : ", ", s.name, " ", s.classes.size());
    smallest = std::min<int64_t>(smallest, static_cast<int64_t>(s.classes.size()));
  }
  const std::string data = cfg["data"];
  const std::string own_split = detail::concat("your own split: metafew data --data ", data,
                                               " --write-split splits.txt, move class lines between its [train] [val] "
                                               "[test] sections, then --split-file splits.txt");
  if (!ds.has_split(split)) {
    // A folder with train/ and test/ only, or a split file without [val]: say which flag names another.
    const bool validation = who != "eval" && split == cfg.value("val_split", std::string());
    const std::string fixes =
        who == "eval" ? detail::concat("--split NAME (one of: ", sizes, "), or --split all (every class of the dataset: ",
                                       ds.base_class_count(), ")")
        : validation  ? detail::concat("--val-split '' (train without validation), or ", own_split)
                      : detail::concat("--train-split NAME (one of: ", sizes, "), or ", own_split);
    throw Error(detail::concat(who, ": ", data, " has no split '", split, "' (its splits: ", sizes, "). Use ", fixes),
                ErrorKind::usage);
  }
  if (ways <= 0 || ds.class_count(split) >= ways) return;
  const bool ratio = ds.layout() == data::Layout::folder && cfg.value("split_file", std::string()).empty() &&
                     ds.has_split("train") && !ds.splits().empty() &&
                     std::all_of(ds.splits().begin(), ds.splits().end(), [](const data::Split& s) {
                       return s.name == "train" || s.name == "val" || s.name == "test";
                     });
  std::string fixes;
  if (who == "eval") {
    fixes = detail::concat("--ways ", ds.class_count(split), " or fewer");
    if (split != "all") fixes += detail::concat(", or --split all (every class of the dataset: ", ds.base_class_count(), ")");
  } else {
    const bool validation = split == cfg.value("val_split", std::string()) && split != cfg.value("train_split", std::string());
    if (smallest >= 2) fixes = detail::concat("--ways ", smallest, " --test-ways ", smallest, " (every split has ", smallest, " or more)");
    if (validation) fixes += detail::concat(fixes.empty() ? "" : ", or ", "--val-split '' (train without validation)");
    fixes += detail::concat(fixes.empty() ? "" : ", or ", own_split);
  }
  throw Error(detail::concat(who, ": split '", split, "' of ", data, " has ", ds.class_count(split), " classes, fewer than the ",
                             ways, " of a ", ways, "-way task (the splits: ", sizes,
                             ratio ? detail::concat("; a folder without train/val/test folders is split 64/16/20% by class")
                                   : std::string(),
                             "). Use ", fixes),
              ErrorKind::usage);
}

// "augment": the key of a training task's distortions (Note [Augmentation] in data/augment.cpp).
constexpr uint64_t kAugmentTag = 0x6175676d656e74ULL;

TaskSource task_source(const json& cfg, const std::shared_ptr<const data::Dataset>& ds, const std::string& split,
                       int64_t ways, int64_t shots, int64_t queries, uint64_t seed, data::Within within,
                       data::Augment augment) {
  if (data::is_regression(cfg)) {
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
  auto sampler = std::make_shared<data::EpisodeSampler>(ds, split, data::EpisodeSpec{ways, shots, queries}, seed,
                                                        within);
  return [sampler, ways, seed, augment](uint64_t i) {
    meta::Task t = to_task(sampler->episode(i), ways, core::derive_key(seed, {i, 0x7461736bULL}));
    if (augment != data::Augment::none) {
      const uint64_t key = core::derive_key(seed, {i, kAugmentTag});
      data::augment_images(t.support_x, augment, key);
      data::augment_images(t.query_x, augment, key, static_cast<uint64_t>(t.support_x.size(0)));
    }
    return t;
  };
}

TaskSource batch_source(const json& cfg, const std::shared_ptr<const data::Dataset>& ds, const std::string& split,
                        uint64_t seed) {
  auto sampler = std::make_shared<data::BatchSampler>(ds, split, cfg["batch_size"].get<int64_t>(), seed);
  const int64_t classes = sampler->classes();
  const data::Augment augment = data::parse_augment(cfg["augment"]);
  return [sampler, classes, seed, augment](uint64_t i) {
    data::Batch b = sampler->batch(i);
    data::augment_images(b.x, augment, core::derive_key(seed, {i, kAugmentTag}));
    meta::Task t;
    t.query_x = b.x;
    t.query_y = b.y;
    t.ways = classes;
    t.seed = core::derive_key(seed, {i, 0x7461736bULL});
    return t;
  };
}

json preprocessing_of(const data::Dataset& ds) {
  // The mean brightness of the images as the model sees them (after any inversion), for adapt's polarity
  // check (Note [Polarity] in adapt.cpp): every stored pixel, in a fixed order, so it is the same each save.
  uint64_t sum = 0;
  const int64_t bytes = ds.base_image_count() * ds.image_spec().pixels();
  const uint8_t* px = bytes > 0 ? ds.image_u8(0) : nullptr;
  for (int64_t i = 0; i < bytes; ++i) sum += px[i];
  json p{{"channels", ds.image_spec().channels},
         {"height", ds.image_spec().height},
         {"width", ds.image_spec().width},
         {"invert", ds.layout() == data::Layout::omniglot},
         {"description", ds.preprocessing()}};
  if (bytes > 0) p["mean"] = static_cast<double>(sum) / (255.0 * static_cast<double>(bytes));
  return p;
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

std::unique_ptr<meta::Algorithm> algorithm_from_checkpoint(const io::Checkpoint& ck) {
  json cfg = checkpoint_config(ck);
  core::Rng rng(0);
  auto algo = meta::make_algorithm(nn::Model(nn::model_config(cfg, head_outputs(cfg))), meta::algo_config(cfg), rng);
  const auto& names = algo->parameter_names();
  for (size_t i = 0; i < names.size(); ++i) {
    const tensor::Tensor& t = io::find_tensor(ck, "param/" + names[i]);
    MF_CHECK(t.shape() == algo->parameters()[i].shape() && t.dtype() == tensor::DType::f32, "checkpoint ", ck.source,
             ": parameter ", names[i], " has shape ", tensor::to_string(t.shape()), ", the model expects ",
             tensor::to_string(algo->parameters()[i].shape()));
    algo->parameters()[i] = autograd::Variable(t.clone(), true);
  }
  // Files from before Note [No NaN in a checkpoint] (src/meta/trainer.cpp) may hold a diverged model, which
  // would evaluate at chance and label everything alike.
  const std::string bad = meta::first_non_finite(*algo);
  MF_CHECK(bad.empty(), "checkpoint ", ck.source, ": ", bad,
           " (the run had diverged when this was saved); use an earlier checkpoint");
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

// Note [Initialising from a file]: --init-from starts a run from trained parameters: a safetensors file (metafew
// export --format safetensors, or one a PyTorch user saved from the module the README shows), a metafew
// checkpoint (a run's, an exported or an adapted one) or a run folder (its best, else its last). Parameters
// are matched by name (Note [Exported parameter names] in export_cmd.cpp). The backbone is what is being
// transferred, so each of its parameters must be in the file with the model's shape: a missing one or
// another shape means another backbone or width, and is refused naming it. The rest (the head, Meta-SGD's
// rates, ParamNet's predictor) is taken when the file has it with the same shape and otherwise keeps its
// fresh initialisation, so a ProtoNets backbone can start a MAML run whose head it never had. Tensors the
// model lacks are listed, not refused (a MAML export's head under ProtoNets). Values are checked finite, so a
// run never starts from a diverged model. The file's format is told by its first bytes, not its name.
std::string init_parameters_from(meta::Algorithm& algo, const std::string& path_or_run) {
  std::error_code ec;
  const std::string path = fs::is_directory(path_or_run, ec) ? resolve_checkpoint_path(path_or_run) : path_or_run;
  const std::string ctx = "--init-from " + path + ": ";
  MF_USAGE_CHECK(fs::is_regular_file(path, ec), ctx, "no such file");
  unsigned char first[9] = {};
  size_t got = 0;
  if (std::FILE* f = std::fopen(path.c_str(), "rb")) {
    got = std::fread(first, 1, sizeof(first), f);
    std::fclose(f);
  }
  std::vector<io::NamedTensor> tensors;
  std::string format;
  if (got >= 8 && std::memcmp(first, "METAFEW", 8) == 0) {
    const io::Checkpoint ck = io::load_checkpoint(path);
    checkpoint_config(ck);  // a metafew model checkpoint, not some other file of the format
    for (const io::NamedTensor& t : ck.tensors)
      if (t.name.rfind("param/", 0) == 0) tensors.push_back({t.name.substr(6), t.tensor});
    format = "metafew checkpoint";
  } else if (io::looks_like_safetensors(first, got)) {
    tensors = io::load_safetensors(path).tensors;
    format = "safetensors";
  } else {
    throw Error(ctx + "is neither a safetensors file nor a metafew checkpoint", ErrorKind::usage);
  }

  std::map<std::string, const tensor::Tensor*> by_name;
  for (const io::NamedTensor& t : tensors) by_name[t.name] = &t.tensor;
  const auto& specs = algo.model().specs();
  std::set<std::string> backbone;
  for (size_t i = 0; i < algo.model().head_begin(); ++i) backbone.insert(specs[i].name);
  const auto& names = algo.parameter_names();
  std::vector<std::string> fresh;
  int64_t loaded = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    auto it = by_name.find(names[i]);
    if (it == by_name.end()) {
      MF_USAGE_CHECK(!backbone.count(names[i]), ctx, "holds no parameter ", names[i], " (a ",
                     tensor::to_string(algo.parameters()[i].shape()), " tensor of this model's backbone); it has ",
                     tensors.size(), " tensors, so it is another backbone or model settings (--model, --filters, "
                     "--widths, --bn-scale)");
      fresh.push_back(names[i]);
      continue;
    }
    const tensor::Tensor& t = *it->second;
    MF_USAGE_CHECK(t.dtype() == tensor::DType::f32, ctx, "parameter ", names[i], " is ", tensor::dtype_name(t.dtype()),
                   "; metafew's parameters are f32 (convert it, e.g. tensor.float() in PyTorch)");
    MF_USAGE_CHECK(t.shape() == algo.parameters()[i].shape(), ctx, "parameter ", names[i], " has shape ",
                   tensor::to_string(t.shape()), ", this model's is ", tensor::to_string(algo.parameters()[i].shape()),
                   " (another width, image size or number of ways?)");
    const float* v = t.data<float>();
    for (int64_t k = 0; k < t.numel(); ++k)
      MF_USAGE_CHECK(std::isfinite(v[k]), ctx, "parameter ", names[i], " holds a non-finite value (", v[k],
                     " at element ", k, "); the model it comes from had diverged");
    algo.parameters()[i] = autograd::Variable(t.clone(), true);
    by_name.erase(it);
    ++loaded;
  }
  std::string report = detail::concat(loaded, " of ", names.size(), " parameters from ", path, " (", format, ")");
  if (!fresh.empty()) report += "; fresh: " + core::join(fresh);
  if (!by_name.empty()) {
    std::vector<std::string> ignored;
    for (const auto& [name, t] : by_name) ignored.push_back(name);
    report += "; not in this model, ignored: " + core::join(ignored);
  }
  return report;
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
