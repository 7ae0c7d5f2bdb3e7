#pragma once
// What the subcommands share: the meta-train configuration and its defaults, building the model, the
// algorithm and the task sources from a resolved configuration, and the checkpoint contents of a training
// state or an adapted model.
#include <cxxopts.hpp>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "data/augment.h"
#include "data/dataset.h"
#include "data/episode.h"
#include "io/checkpoint.h"
#include "io/settings.h"
#include "meta/algorithm.h"
#include "optim/optimizer.h"

namespace metafew::cli {

using nlohmann::json;

// Exit codes (README): 0 success, 1 runtime error, 2 usage error, 130 interrupted after saving.
inline constexpr int kExitInterrupted = 130;

// Every meta-train setting with its generic default; algorithm- and dataset-specific defaults are applied on
// top of these by resolve_config (Note [Algorithm and dataset defaults] in io/settings.cpp).
json meta_train_defaults();
// One-line help per configuration key.
const std::map<std::string, std::string>& config_help();

// Parses argv with `opts`; parse errors and stray arguments become usage errors naming `who` (stray arguments
// are left to the caller when --help was given, which then prints the help).
cxxopts::ParseResult parse_options(cxxopts::Options& opts, int argc, char** argv, const char* who);

// Flags several subcommands share, each declared once here (--threads and --data with the help and default of
// their setting's declaration), plus -h/--help.
enum class SharedFlag { checkpoint, data, threads, json_output, head };
void add_shared_flags(cxxopts::Options& opts, std::initializer_list<SharedFlag> flags);
// --head and --logreg-c (SharedFlag::head), checked as the settings are, written into the checkpoint's
// config so that the algorithm is built with them (Note [Test-time heads] in src/meta/heads.cpp).
void apply_head_flags(io::Checkpoint& ck, const cxxopts::ParseResult& args);
// The inner steps at test time: --steps, else the run's eval_steps; 0 under a test-time head (which takes
// none: --steps > 0 with one is a usage error naming `who`).
int64_t test_steps(const json& cfg, const cxxopts::ParseResult& args, const std::string& who);
// Checks --threads as the setting is checked, and applies it (set_threads).
void apply_threads_flag(const cxxopts::ParseResult& args);
// OpenMP's thread count for the rest of the process: n > 0 threads, or OpenMP's default (every core, or
// OMP_NUM_THREADS) for 0. The one place the CLI changes it.
void set_threads(int64_t n);

// Adds one cxxopts option per key of `defaults` (dashes for underscores), showing its default, in `group`.
void add_config_options(cxxopts::Options& opts, const json& defaults, const std::string& group);
// The flags given on the command line, as JSON with the defaults' types (only keys actually given).
json flags_given(const cxxopts::ParseResult& args, const json& defaults);

// defaults < algorithm/dataset defaults < config file < flags; validated (unknown keys, types, ranges).
json resolve_config(const json& file, const json& flags);

// ---- building blocks from a resolved configuration ----
// The model's head outputs for the configured algorithm and data (0: a metric method, no head).
int64_t head_outputs(const json& cfg);
// The configured dataset (nullptr for builtin:sinusoid, whose tasks are generated).
std::shared_ptr<const data::Dataset> open_data(const json& cfg);

// The non-image files of a scan by extension, most frequent first: "3 .webp, 1 .txt" (hidden files left out).
std::string non_image_kinds(const data::ScanReport& r);
// One-line warnings on stderr about what reading the dataset skipped and about colour images read as
// grayscale (Note [Skipped files] in common.cpp); channels_chosen: the user or the model fixed --channels.
void warn_about_data(const data::Dataset& ds, const std::string& who, bool channels_chosen);
// Throws a usage error naming the flags that fix it when `split` has fewer classes than `ways` (Note [Splits
// too small for the task] in common.cpp); `who` is the command ("meta-train" or "eval").
void require_split_fits(const json& cfg, const data::Dataset& ds, const std::string& split, int64_t ways,
                        const std::string& who);
// Episode i of `split` as a task: a pure function of (seed, split, i); `within` picks its classes and `augment`
// distorts its images (Note [Augmentation] in data/augment.cpp; training tasks only).
using TaskSource = std::function<meta::Task(uint64_t)>;
TaskSource task_source(const json& cfg, const std::shared_ptr<const data::Dataset>& ds, const std::string& split,
                       int64_t ways, int64_t shots, int64_t queries, uint64_t seed,
                       data::Within within = data::Within::any, data::Augment augment = data::Augment::none);
meta::Task to_task(const data::Episode& e, int64_t ways, uint64_t seed);

// ---- checkpoints ----
// kind "training": the meta-parameters, the optimizer state, the resolved config and the iteration.
io::Checkpoint training_checkpoint(const json& cfg, const meta::Algorithm& algo, const optim::Optimizer& opt,
                                   int64_t iteration, const json& extra);
// Rebuilds the algorithm of a checkpoint (training or adapted) with its parameters.
std::unique_ptr<meta::Algorithm> algorithm_from_checkpoint(const io::Checkpoint& ck);
// Replaces algo's parameters with those of `path` (Note [Initialising from a file] in common.cpp): a
// safetensors file, a metafew checkpoint or a run folder. Returns a one-line account of what was loaded,
// what started fresh and what the file held that the model lacks. Throws a usage error naming the file and
// the parameter when a backbone parameter is missing, or a name matches with another shape or dtype, or a
// value is not finite.
std::string init_parameters_from(meta::Algorithm& algo, const std::string& path);
// The config stored in a checkpoint; throws naming the file when it is not a metafew model checkpoint.
using io::checkpoint_config;
// A checkpoint path from a file or a run folder (RUN/best when present, else RUN/last).
std::string resolve_checkpoint_path(const std::string& path);

// The image preprocessing recorded for a dataset (size, channels, inversion), for `adapt` on new images.
// Pretraining's mini-batch i of `split` as a task: its images and class labels as the query set, ways = the
// split's class count, no support set (Note [Pretraining batches] in data/batch.cpp).
TaskSource batch_source(const json& cfg, const std::shared_ptr<const data::Dataset>& ds, const std::string& split,
                        uint64_t seed);
json preprocessing_of(const data::Dataset& ds);

std::string json_type_name(const json& j);

// Resident memory of this process in MiB (Linux /proc/self/status; 0 where it cannot be read): the current
// resident set (VmRSS), and its high-water mark since start or since reset_peak_resident() (VmHWM).
double resident_mb();
double peak_resident_mb();
void reset_peak_resident();

}  // namespace metafew::cli
