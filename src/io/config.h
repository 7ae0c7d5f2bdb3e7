#pragma once
// Settings from three sources with one precedence: defaults < config file < command-line flags. Generic:
// a command describes its settings as a JSON object of defaults and passes the other two sources through
// the same functions (Note [Config precedence] in config.cpp).
//
//   json defaults = {{"ways", 5}, {"inner_lr", 0.4}, {"model", {{"filters", 64}}}};
//   json file = read_config_file(path);
//   validate_config(file, defaults, "config file " + path);
//   validate_config(flags, defaults, "command line");
//   json config = merge_config(defaults, file, flags);
#include <nlohmann/json.hpp>
#include <string>

#include "core/error.h"

namespace metafew::io {

// Merges JSON objects: later sources override earlier ones key by key; where both sides hold an object
// under the same key, the two are merged recursively; anything else (arrays included) is replaced whole.
// requires: each argument is an object or null (null: the source is absent, e.g. no config file).
// ensures:  the result is an object holding every key of the three; the arguments are unchanged.
nlohmann::json merge_config(const nlohmann::json& defaults, const nlohmann::json& file,
                            const nlohmann::json& flags);

// Reads a config file: a JSON object, with // and /* */ comments allowed.
// Throws metafew::Error "config file <path>: ..." when it is missing, a folder, not valid JSON (with line
// and column), not an object at the top level, or gives one key twice in the same object.
nlohmann::json read_config_file(const std::string& path);

// Checks `config` (an object or null) against the keys and types of `defaults` (an object), recursively.
// Throws metafew::Error "<source>: ..." for
//   - a key that `defaults` lacks (a typo): names it, suggests the closest known key, lists the known ones;
//   - a value of another type than the default's: names the key, the expected and the given type.
// Types follow the default's JSON type: a float default accepts any number, an integer default only
// integers, a bool default only true/false, a string only strings, an array only arrays (whose elements
// must match the default's first element, when it has one), an object only objects (checked key by key,
// except that an empty object default accepts any keys). A null default accepts any value: use it for
// settings that have no default. Only a null default accepts null.
void validate_config(const nlohmann::json& config, const nlohmann::json& defaults, const std::string& source);

// Levenshtein distance after folding case and '-' to '_' ("Inner-LR" is 0 from "inner_lr"): the measure of
// "did you mean" for config keys and command-line flags.
size_t key_distance(const std::string& a, const std::string& b);

}  // namespace metafew::io
