#include "cli/adapt.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include "cli/common.h"
#include "data/options.h"
#include "meta/registry.h"
#include "data/image.h"
#include "io/run_dir.h"

namespace metafew::cli {

namespace fs = std::filesystem;

namespace {

struct Preprocess {
  data::ImageSpec spec;
  bool invert = false;
  bool convert_channels = false;  // --convert-channels: grayscale images to a colour model and back
};

constexpr const char* kConvertChannelsHelp =
    "let a grayscale image reach a colour model (its gray replicated) or a colour image a grayscale model (its "
    "luminance); without it such an image is refused";

Preprocess preprocess_from(const io::Checkpoint& ck) {
  const json& p = ck.header.value("preprocessing", json::object());
  MF_CHECK(p.contains("channels"), "checkpoint ", ck.source,
           ": it records no image preprocessing (a regression model cannot label images)");
  return {{p["channels"].get<int64_t>(), p["height"].get<int64_t>(), p["width"].get<int64_t>()},
          p.value("invert", false)};
}

// Note [Batch norm in adapt and predict]: a user's classifier must give an image the same label whatever else is
// in the query folder. Meta-training's default batch norm (transductive) normalises the query batch with its own
// statistics, so under it a label depends on the other queries (predicting each image of a 100-image folder
// alone changed about half the labels in the ecosystem trial). adapt and predict therefore default to `support`
// for every algorithm: each layer normalises the queries with the support set's statistics, the statistics the
// adaptation itself saw, so every query is classified on its own and in one forward pass. `nontransductive`
// (support set plus that one query, one pass per query) is also independent; `transductive` is there for
// whoever wants the protocol's figures and accepts the dependence. Adaptation never depends on the mode: the
// inner loop sees the support set alone. eval keeps the run's mode, the protocol's (Note [Batch norm in
// meta-learning] in src/nn/options.h).
constexpr const char* kQueryBnDefault = "support";
constexpr const char* kQueryBnHelp =
    "batch-norm statistics for the query images: support (default: the support set's, so each image's label "
    "does not depend on the other queries), nontransductive (support set + that one image, one pass per image), "
    "transductive (the query batch's own, as meta-training's default; labels then depend on the whole batch)";

// The batch-norm mode for the queries: --bn if given, else `fallback`; written into the checkpoint's config
// so that the algorithm is built with it. Batch norm has no parameters of its own (batch statistics always),
// so any mode fits any checkpoint.
std::string set_query_bn(io::Checkpoint& ck, const cxxopts::ParseResult& args, const std::string& fallback) {
  const std::string mode = args.count("bn") ? args["bn"].as<std::string>() : fallback;
  nn::parse_bn_mode(mode);  // throws naming the accepted values
  ck.header["config"]["bn"] = mode;
  return mode;
}

// A file or class name for the one-line-per-image text output: control characters (a newline in a folder
// name would start a fake line) are written as \n, \t or \xHH. JSON output escapes them itself.
std::string printable(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20 || c == 0x7F) out += detail::concat("\\x", "0123456789abcdef"[c >> 4], "0123456789abcdef"[c & 15]);
    else out += static_cast<char>(c);
  }
  return out;
}

// What the folders of a task held besides images: warned about in one line (Note [Skipped files]).
struct Skipped {
  std::map<std::string, int64_t> by_kind;  // ".webp" -> 3, "folder" -> 1
  void add(const fs::directory_entry& e) {
    const std::string name = e.path().filename().string();
    if (!name.empty() && name[0] == '.') return;  // hidden files (.DS_Store): never images, never news
    if (e.is_directory()) {
      ++by_kind["folders inside class folders"];
    } else {
      const std::string ext = data::file_extension(name);
      ++by_kind[ext.empty() ? "without an extension" : ext];
    }
  }
  void warn(const std::string& who, const std::string& where) const {
    if (by_kind.empty()) return;
    int64_t total = 0;
    std::string kinds;
    for (const auto& [kind, n] : by_kind) {
      total += n;
      kinds += detail::concat(kinds.empty() ? "" : ", ", n, " ", kind);
    }
    std::fprintf(stderr,
                 "%s: warning: %lld entries of the %s were skipped (%s); images are read from .png, .jpg, .jpeg, "
                 ".bmp, .pgm and .ppm files directly inside each class folder\n",
                 who.c_str(), static_cast<long long>(total), where.c_str(), kinds.c_str());
  }
};

std::vector<std::string> image_files_in(const fs::path& dir, Skipped* skipped) {
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.is_regular_file() && data::has_image_extension(e.path().filename().string()))
      files.push_back(e.path().string());
    else if (skipped)
      skipped->add(e);
  }
  std::sort(files.begin(), files.end());
  return files;
}

// Note [Polarity]: Omniglot's files are dark strokes on white; metafew inverts them when it reads the
// Omniglot layout, so its models see light strokes on dark, and a user's drawing must be inverted the same
// way (adapt does, from the checkpoint's preprocessing.invert) unless it is light on dark already. The
// checkpoint records the mean brightness of the training images as the model saw them (preprocessing.mean);
// when the support set's mean lies on the other side of one half, far from it, adapt warns and names the
// --invert value that would bring the images to the model's polarity. --invert yes|no overrides the record.
void warn_polarity(const io::Checkpoint& ck, const tensor::Tensor& support, bool invert, const std::string& who) {
  const json& p = ck.header.value("preprocessing", json::object());
  if (!p.contains("mean") || !p["mean"].is_number() || support.numel() == 0) return;
  const double trained = p["mean"];
  const std::vector<double> v = support.to_vector();
  double mean = 0;
  for (double x : v) mean += x;
  mean /= static_cast<double>(v.size());
  if ((trained < 0.5) == (mean < 0.5) || std::abs(trained - mean) < 0.3) return;
  std::fprintf(stderr,
               "%s: warning: after preprocessing%s the support images are mostly %s (mean brightness %.2f) but the "
               "model was trained on mostly %s images (mean %.2f); if the images are drawn the other way round "
               "from the training data, pass --invert %s\n",
               who.c_str(), invert ? " (inverted, as the model's training images were)" : "",
               mean < 0.5 ? "dark" : "light", mean, trained < 0.5 ? "dark" : "light", trained, invert ? "no" : "yes");
}

// --invert yes|no, else the checkpoint's record.
void apply_invert_flag(Preprocess& pre, const cxxopts::ParseResult& args, const std::string& who) {
  if (!args.count("invert")) return;
  const std::string v = args["invert"].as<std::string>();
  MF_USAGE_CHECK(v == "yes" || v == "no", who, ": --invert must be yes or no, got '", v, "'");
  pre.invert = v == "yes";
}

constexpr const char* kInvertHelp =
    "invert the images (v -> 1 - v) before the model sees them: yes or no (default: as the model's training "
    "images were; Omniglot models invert, so that dark strokes on white become light on dark)";

tensor::Tensor load_images(const std::vector<std::string>& files, const Preprocess& pre) {
  const int64_t n = static_cast<int64_t>(files.size());
  tensor::Tensor x = tensor::Tensor::empty({n, pre.spec.channels, pre.spec.height, pre.spec.width});
  std::vector<uint8_t> buf(static_cast<size_t>(pre.spec.pixels()));
  float* dst = x.data<float>();
  for (int64_t i = 0; i < n; ++i) {
    const data::DecodedImage img = data::decode_image_file(files[i], pre.spec.channels);
    auto kind = [](int64_t c) { return c == 1 ? "grayscale (1 channel)" : "colour (3 channels)"; };
    MF_USAGE_CHECK(pre.convert_channels || img.source_channels == pre.spec.channels, files[i], " is a ",
                   kind(img.source_channels), " image; this model takes ", kind(pre.spec.channels),
                   " images: convert it, or pass --convert-channels");
    data::preprocess_image(img, pre.spec, pre.invert, buf.data());
    for (int64_t j = 0; j < pre.spec.pixels(); ++j) dst[i * pre.spec.pixels() + j] = buf[j] / 255.0f;
  }
  return x;
}

// Query images: a folder of images, a folder of class folders (labels known: accuracy is reported), or files.
struct Queries {
  std::vector<std::string> files;
  std::vector<std::string> true_class;  // empty when unknown
};

Queries collect_queries(const std::vector<std::string>& paths, const std::string& who) {
  Queries q;
  for (const std::string& p : paths) {
    std::error_code ec;
    MF_USAGE_CHECK(fs::exists(p, ec), who, ": query path ", p, " does not exist");
    if (fs::is_directory(p, ec)) {
      std::vector<fs::path> subdirs;
      Skipped skipped;
      for (const auto& e : fs::directory_iterator(p))
        if (e.is_directory()) subdirs.push_back(e.path());
        else if (!(e.is_regular_file() && data::has_image_extension(e.path().filename().string()))) skipped.add(e);
      std::sort(subdirs.begin(), subdirs.end());
      for (const std::string& f : image_files_in(p, nullptr)) {
        q.files.push_back(f);
        q.true_class.push_back("");
      }
      for (const auto& d : subdirs)
        for (const std::string& f : image_files_in(d, &skipped)) {
          q.files.push_back(f);
          q.true_class.push_back(d.filename().string());
        }
      skipped.warn(who, "query folder " + p);
    } else {
      MF_USAGE_CHECK(data::has_image_extension(p), who, ": query file ", p,
                     " is not an image (expected .png, .jpg, .jpeg, .bmp, .pgm or .ppm)");
      q.files.push_back(p);
      q.true_class.push_back("");
    }
  }
  MF_USAGE_CHECK(!q.files.empty(), who, ": no query images found in ", paths.empty() ? "" : paths[0]);
  return q;
}

constexpr const char* kTopKHelp =
    "also list the K most probable classes of each image, and with labelled queries the top-K accuracy";

// Note [Per-class results]: with labelled queries (class folders named as support classes) adapt and predict
// report, besides the accuracy, each class's accuracy and the confusion matrix (rows: the true class,
// columns: the predicted one, both in the support's class order), so a user sees which classes fail and what
// they are taken for; --top-k K adds each image's K most probable classes and the top-K accuracy (ties
// broken by the lower class index, as the label itself).
int label_queries(const meta::Algorithm& algo, const meta::Adapted& adapted, const std::vector<std::string>& classes,
                  const Preprocess& pre, const std::vector<std::string>& query_paths, const std::string& bn,
                  int64_t top_k, bool as_json, const std::string& out_file, const std::string& who) {
  const int64_t ways = static_cast<int64_t>(classes.size());
  MF_USAGE_CHECK(top_k >= 1 && top_k <= ways, who, ": --top-k must be from 1 to ", ways,
                 " (the number of support classes), got ", top_k);
  Queries q = collect_queries(query_paths, who);
  // Query class folders that name no support class cannot be scored: warned once each and left out of the
  // accuracy (they used to count as wrong without a word).
  std::map<std::string, int64_t> unmatched;
  for (const std::string& t : q.true_class)
    if (!t.empty() && std::find(classes.begin(), classes.end(), t) == classes.end()) ++unmatched[t];
  for (const auto& [name, n] : unmatched)
    std::fprintf(stderr, "%s: warning: query class folder '%s' matches no support class; its %lld images are labelled "
                 "but not counted in the accuracy\n",
                 who.c_str(), printable(name).c_str(), static_cast<long long>(n));
  tensor::Tensor logits = algo.predict_adapted(adapted, load_images(q.files, pre));
  const int64_t n = logits.shape()[0], c = logits.shape()[1];
  std::vector<double> l = logits.to_vector();
  MF_CHECK(c == ways, who, ": the model gives ", c, " class scores for ", ways, " support classes");
  json preds = json::array();
  int64_t known = 0, correct = 0, correct_top_k = 0;
  std::vector<std::vector<int64_t>> confusion(static_cast<size_t>(c), std::vector<int64_t>(static_cast<size_t>(c), 0));
  std::string text;
  for (int64_t i = 0; i < n; ++i) {
    double mx = -INFINITY;
    for (int64_t k = 0; k < c; ++k) mx = std::max(mx, l[i * c + k]);
    double sum = 0;
    std::vector<double> p(static_cast<size_t>(c));
    for (int64_t k = 0; k < c; ++k) sum += p[k] = std::exp(l[i * c + k] - mx);
    json probs = json::object();
    for (int64_t k = 0; k < c; ++k) {
      p[k] /= sum;
      probs[classes[k]] = p[k];
    }
    std::vector<int64_t> order(static_cast<size_t>(c));
    for (int64_t k = 0; k < c; ++k) order[k] = k;
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return p[a] > p[b]; });
    const int64_t best = order[0];
    json row{{"file", q.files[i]}, {"label", classes[best]}, {"probabilities", probs}};
    std::string line = detail::concat(printable(q.files[i]), "\t", printable(classes[best]), "\t", p[best]);
    if (top_k > 1) {
      json top = json::array();
      for (int64_t r = 0; r < top_k; ++r) top.push_back({{"label", classes[order[r]]}, {"probability", p[order[r]]}});
      row["top"] = top;
      for (int64_t r = 1; r < top_k; ++r) line += detail::concat("\t", printable(classes[order[r]]), "\t", p[order[r]]);
    }
    if (!q.true_class[i].empty() && !unmatched.count(q.true_class[i])) {
      row["true_label"] = q.true_class[i];
      const int64_t truth = std::find(classes.begin(), classes.end(), q.true_class[i]) - classes.begin();
      ++known;
      correct += truth == best;
      correct_top_k += std::find(order.begin(), order.begin() + top_k, truth) != order.begin() + top_k;
      ++confusion[truth][best];
    }
    preds.push_back(row);
    text += line + "\n";
  }
  json result{{"predictions", preds},
              {"accuracy", known > 0 ? json(static_cast<double>(correct) / known) : json(nullptr)},
              {"bn", bn}};
  if (known > 0) {
    text += detail::concat("accuracy ", static_cast<double>(correct) / known, " (", correct, "/", known, ")\n");
    if (top_k > 1) {
      result["top_k"] = top_k;
      result["top_k_accuracy"] = static_cast<double>(correct_top_k) / known;
      text += detail::concat("top-", top_k, " accuracy ", static_cast<double>(correct_top_k) / known, " (",
                             correct_top_k, "/", known, ")\n");
    }
    json per_class = json::object();
    text += "per class (accuracy, correct/queries):\n";
    for (int64_t t = 0; t < c; ++t) {
      int64_t total = 0;
      for (int64_t v : confusion[t]) total += v;
      if (total == 0) continue;  // no labelled query of this class
      const double acc = static_cast<double>(confusion[t][t]) / total;
      per_class[classes[t]] = {{"accuracy", acc}, {"correct", confusion[t][t]}, {"queries", total}};
      text += detail::concat("  ", printable(classes[t]), "\t", acc, "\t", confusion[t][t], "/", total, "\n");
    }
    result["per_class"] = per_class;
    result["confusion"] = {{"classes", classes}, {"matrix", confusion}};
    text += "confusion (rows: true class, columns: predicted, in the order above):\n";
    for (int64_t t = 0; t < c; ++t) {
      text += "  " + printable(classes[t]);
      for (int64_t v : confusion[t]) text += detail::concat("\t", v);
      text += "\n";
    }
  }
  const std::string rendered = as_json ? result.dump(2) + "\n" : text;
  if (!out_file.empty())
    io::write_file_atomic(out_file, rendered, who + " --out");
  else
    std::fputs(rendered.c_str(), stdout);
  return 0;
}

}  // namespace

int run_adapt(int argc, char** argv) {
  cxxopts::Options opts("metafew adapt",
                        "Adapt a meta-trained checkpoint to a new task (DIR/<class>/<images>) and label query "
                        "images; results on stdout (or --out), one line per image or JSON.");
  opts.set_width(100);
  add_shared_flags(opts, {SharedFlag::checkpoint, SharedFlag::threads, SharedFlag::json_output, SharedFlag::head});
  opts.add_options()(
      "support",
      "folder with one sub-folder of images per class (folder names are the labels; classes may hold different "
      "numbers of images)",
      cxxopts::value<std::string>())("query", "query images: a folder, class folders, or image files (repeatable)",
                                     cxxopts::value<std::vector<std::string>>())(
      "steps", "inner steps (default: the run's eval_steps)", cxxopts::value<int64_t>())(
      "save-adapted", "write the adapted model to this file, for `metafew predict`", cxxopts::value<std::string>())(
      "out", "write the predictions to this file instead of stdout", cxxopts::value<std::string>())(
      "bn", kQueryBnHelp, cxxopts::value<std::string>()->default_value(kQueryBnDefault))(
      "top-k", kTopKHelp, cxxopts::value<int64_t>()->default_value("1"))("convert-channels", kConvertChannelsHelp)(
      "invert", kInvertHelp, cxxopts::value<std::string>());
  auto args = parse_options(opts, argc, argv, "adapt");
  if (args.count("help")) {
    std::printf("%s\n", opts.help().c_str());
    return 0;
  }
  MF_USAGE_CHECK(args.count("checkpoint"), "adapt: --checkpoint is required");
  MF_USAGE_CHECK(args.count("support"), "adapt: --support is required (a folder of class folders)");
  MF_USAGE_CHECK(args.count("query") || args.count("save-adapted"), "adapt: give --query images to label, or --save-adapted");
  apply_threads_flag(args);

  const std::string path = resolve_checkpoint_path(args["checkpoint"].as<std::string>());
  io::Checkpoint ck = io::load_checkpoint(path);
  checkpoint_config(ck);  // throws naming the file when it is not a metafew model checkpoint
  MF_USAGE_CHECK(ck.header["kind"] == "training", "adapt: ", path,
                 " is already an adapted model; use `metafew predict --model ", path, " --query ...`");
  const std::string bn = set_query_bn(ck, args, kQueryBnDefault);
  apply_head_flags(ck, args);
  json cfg = checkpoint_config(ck);
  Preprocess pre = preprocess_from(ck);
  pre.convert_channels = args.count("convert-channels") > 0;
  apply_invert_flag(pre, args, "adapt");
  auto algo = algorithm_from_checkpoint(ck);

  // The support set: one folder per class, the same number of images in each.
  const std::string support = args["support"].as<std::string>();
  std::error_code ec;
  MF_USAGE_CHECK(fs::is_directory(support, ec), "adapt: support folder ", support, " does not exist or is not a folder");
  std::vector<fs::path> class_dirs;
  for (const auto& e : fs::directory_iterator(support))
    if (e.is_directory()) class_dirs.push_back(e.path());
  std::sort(class_dirs.begin(), class_dirs.end());
  MF_USAGE_CHECK(class_dirs.size() >= 2, "adapt: support folder ", support, " has ", class_dirs.size(),
                 " class folders; a task needs at least 2 (one folder of images per class)");
  // Note [Uneven shots]: classes may bring different numbers of images (a user rarely has exactly K of each).
  // The support set is the concatenation with its labels; ProtoNets averages each class's images into its
  // prototype, Matching Networks attends over every image, and the gradient-based algorithms take the mean
  // loss over all support images (a class with more images weighs more in the inner loop).
  std::vector<std::string> classes, files;
  std::vector<int64_t> shots;
  Skipped skipped;
  for (const auto& e : fs::directory_iterator(support))
    if (!e.is_directory()) skipped.add(e);
  for (const auto& d : class_dirs) {
    auto imgs = image_files_in(d, &skipped);
    MF_USAGE_CHECK(!imgs.empty(), "adapt: class folder ", d.string(), " has no images");
    shots.push_back(static_cast<int64_t>(imgs.size()));
    classes.push_back(d.filename().string());
    files.insert(files.end(), imgs.begin(), imgs.end());
  }
  skipped.warn("adapt", "support folder " + support);
  const int64_t ways = static_cast<int64_t>(classes.size());
  const auto [fewest, most] = std::minmax_element(shots.begin(), shots.end());
  if (*fewest != *most)
    std::fprintf(stderr, "adapt: the support classes have %lld to %lld images each (uneven shots)\n",
                 static_cast<long long>(*fewest), static_cast<long long>(*most));
  if (meta::find_algorithm(cfg["algo"]).uses_head && cfg["head"] == "own")
    MF_USAGE_CHECK(ways == cfg["ways"].get<int64_t>(), "adapt: the support folder has ", ways,
                   " classes but this ", cfg["algo"].get<std::string>(), " checkpoint has a ", cfg["ways"].get<int64_t>(),
                   "-way head");
  std::vector<int32_t> labels;
  for (int64_t c = 0; c < ways; ++c)
    for (int64_t k = 0; k < shots[static_cast<size_t>(c)]; ++k) labels.push_back(static_cast<int32_t>(c));
  meta::Task task;
  task.support_x = load_images(files, pre);
  warn_polarity(ck, task.support_x, pre.invert, "adapt");
  task.support_y = tensor::Tensor::from_indices(labels, {static_cast<int64_t>(labels.size())});
  task.ways = ways;
  task.seed = cfg["seed"];
  const int64_t steps = test_steps(cfg, args, "adapt");
  MF_USAGE_CHECK(steps >= 0, "adapt: --steps must be >= 0, got ", steps);
  meta::Adapted adapted = algo->adapt(task, steps);

  if (args.count("save-adapted")) {
    io::Checkpoint out;
    out.header = ck.header;
    out.header["kind"] = "adapted";
    out.header["preprocessing"]["invert"] = pre.invert;  // predict reads the images as adapt did
    out.header["class_names"] = classes;
    out.header["adapted_from"] = path;
    out.header["adapt_steps"] = steps;
    out.header["query_bn"] = bn;  // predict's default, so that it labels as adapt did
    out.header["adapted_weights"] = static_cast<int64_t>(adapted.weights.size());
    out.header["ways"] = ways;
    for (size_t i = 0; i < algo->parameters().size(); ++i)
      out.tensors.push_back({"param/" + algo->parameter_names()[i], algo->parameters()[i].data()});
    for (size_t i = 0; i < adapted.weights.size(); ++i)
      out.tensors.push_back({"adapted/" + std::to_string(i), adapted.weights[i]});
    out.tensors.push_back({"support_x", adapted.support_x});
    out.tensors.push_back({"support_y", adapted.support_y});
    io::save_checkpoint(args["save-adapted"].as<std::string>(), out);
    std::fprintf(stderr, "adapt: saved the adapted %lld-way model to %s\n", static_cast<long long>(ways),
                 args["save-adapted"].as<std::string>().c_str());
  }
  if (!args.count("query")) return 0;
  return label_queries(*algo, adapted, classes, pre, args["query"].as<std::vector<std::string>>(), bn,
                       args["top-k"].as<int64_t>(), args.count("json") > 0,
                       args.count("out") ? args["out"].as<std::string>() : "", "adapt");
}

int run_predict(int argc, char** argv) {
  cxxopts::Options opts("metafew predict", "Label query images with a model saved by `metafew adapt --save-adapted`.");
  opts.set_width(100);
  opts.add_options()("model", "adapted model file", cxxopts::value<std::string>())(
      "query", "query images: a folder, class folders, or image files (repeatable)",
      cxxopts::value<std::vector<std::string>>())("out", "write the predictions to this file",
                                                  cxxopts::value<std::string>())(
      "bn", std::string(kQueryBnHelp) + "; default: the mode adapt used", cxxopts::value<std::string>())(
      "top-k", kTopKHelp, cxxopts::value<int64_t>()->default_value("1"))("convert-channels", kConvertChannelsHelp)(
      "invert", kInvertHelp, cxxopts::value<std::string>());
  add_shared_flags(opts, {SharedFlag::threads, SharedFlag::json_output});
  auto args = parse_options(opts, argc, argv, "predict");
  if (args.count("help")) {
    std::printf("%s\n", opts.help().c_str());
    return 0;
  }
  MF_USAGE_CHECK(args.count("model"), "predict: --model is required (a file written by adapt --save-adapted)");
  MF_USAGE_CHECK(args.count("query"), "predict: --query is required");
  apply_threads_flag(args);
  const std::string path = args["model"].as<std::string>();
  io::Checkpoint ck = io::load_checkpoint(path);
  checkpoint_config(ck);
  MF_USAGE_CHECK(ck.header["kind"] == "adapted", "predict: ", path,
                 " is a meta-trained checkpoint, not an adapted model; run `metafew adapt --checkpoint ", path,
                 " --support DIR --query ...` (add --save-adapted FILE to keep the adapted model)");
  // Adapted models saved before query_bn existed carry only the training mode; they get adapt's default.
  const std::string bn = set_query_bn(ck, args, ck.header.value("query_bn", std::string(kQueryBnDefault)));
  auto algo = algorithm_from_checkpoint(ck);
  meta::Adapted adapted;
  for (int64_t i = 0; i < ck.header["adapted_weights"].get<int64_t>(); ++i)
    adapted.weights.push_back(io::find_tensor(ck, "adapted/" + std::to_string(i)));
  adapted.support_x = io::find_tensor(ck, "support_x");
  adapted.support_y = io::find_tensor(ck, "support_y");
  adapted.ways = ck.header["ways"];
  std::vector<std::string> classes = ck.header["class_names"];
  Preprocess pre = preprocess_from(ck);
  pre.convert_channels = args.count("convert-channels") > 0;
  apply_invert_flag(pre, args, "predict");
  return label_queries(*algo, adapted, classes, pre, args["query"].as<std::vector<std::string>>(), bn,
                       args["top-k"].as<int64_t>(), args.count("json") > 0,
                       args.count("out") ? args["out"].as<std::string>() : "", "predict");
}

}  // namespace metafew::cli
