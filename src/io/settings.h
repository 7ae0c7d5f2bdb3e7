#pragma once
// The meta-train settings, each declared once: key, generic default, help, and what a valid value is. The
// command line (flags built from these declarations), config files, run folders and checkpoint headers are
// all checked by validate_settings, so a value gets the same message wherever it comes from
// (Note [One check for every source] in settings.cpp).
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/setting.h"

namespace metafew::io {

using core::Setting;

// Every setting of meta-train, in the order --help lists them.
const std::vector<Setting>& settings();
const Setting* find_setting(const std::string& key);
// {key: generic default} for every setting: the schema io::validate_config checks files and flags against.
nlohmann::json settings_defaults();

// defaults < algorithm/dataset defaults < config file < flags (Note [Algorithm and dataset defaults]), validated
// (unknown keys, types, ranges); test_ways/test_shots/test_queries of 0 become the training values.
nlohmann::json resolve_settings(const nlohmann::json& file, const nlohmann::json& flags);

// Checks one value of a declared setting, with the message a flag gets.
void check_setting(const std::string& key, const nlohmann::json& value);

// "--key" for a config key.
std::string flag_of(const std::string& key);

// Checks a fully resolved configuration: every declared key present with its type and a value in range
// (plus the checks that involve several keys). `where` names the source for messages about a stored
// configuration ("checkpoint runs/x/last"); empty for the command line. Throws a usage error:
//   "[where: setting "filters": ]--filters must be positive (at most 4096), got 0".
void validate_settings(const nlohmann::json& cfg, const std::string& where);

struct Checkpoint;
// The settings stored in a checkpoint, with the values of settings added since it was written filled in (Note
// [Settings added later]), checked as a command line's are, and the header's own fields checked; throws a
// usage error naming the file otherwise (also when it is not a metafew model checkpoint).
nlohmann::json checkpoint_config(const Checkpoint& ck);

// The bytes one batch of `tasks` episodes of images holds (support and query images, float32), saturating
// at UINT64_MAX instead of overflowing.
uint64_t episode_batch_bytes(int64_t tasks, int64_t ways, int64_t shots, int64_t queries, int64_t channels,
                             int64_t image_size);

}  // namespace metafew::io
