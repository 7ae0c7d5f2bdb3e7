#pragma once
// The declaration of one setting (Note [One check for every source] in io/settings.cpp): the layer that owns
// a setting declares it next to the typed options it fills (nn/options.cpp, optim/options.cpp,
// data/options.cpp, meta/options.cpp), taking the default from that options struct, so each default is
// written once; io/ gathers the declarations and checks every source of settings against them.
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace metafew::core {

struct Setting {
  std::string key;               // config key; its flag is --key with '-' for '_'
  nlohmann::json default_value;  // its JSON type is the setting's type
  std::string help;
  // Integers and numbers: the valid range, inclusive. Numbers must also be finite.
  double min = 0, max = 0;
  // Strings with a fixed set of values: throws a usage error naming the accepted values (the owner's own
  // parser, e.g. nn::parse_bn_mode, so the list of values lives in one place). Empty: any string.
  std::function<void(const std::string&)> check_choice;
};

inline constexpr double kMaxCount = 1e9;  // iterations, intervals: far above any run, far below overflow

inline Setting integer_setting(const char* key, int64_t def, double min, double max, const std::string& help) {
  return Setting{key, def, help, min, max, {}};
}
// A finite number >= 0.
inline Setting number_setting(const char* key, double def, const std::string& help) {
  return Setting{key, def, help, 0, std::numeric_limits<double>::infinity(), {}};
}
inline Setting boolean_setting(const char* key, bool def, const std::string& help) { return Setting{key, def, help, 0, 0, {}}; }
inline Setting text_setting(const char* key, const std::string& def, const std::string& help,
                            std::function<void(const std::string&)> check = {}) {
  return Setting{key, def, help, 0, 0, std::move(check)};
}

// Throws a usage error "FLAG must be a, b or c, got 'VALUE'" unless value is one of `accepted`.
void require_one_of(const std::string& flag, const std::string& value, const std::vector<std::string>& accepted);

// The names of a registry's entries (anything with a `name`), in order.
template <class Entry>
std::vector<std::string> names_of(const std::vector<Entry>& entries) {
  std::vector<std::string> names;
  for (const Entry& e : entries) names.emplace_back(e.name);
  return names;
}
// "a, b, c".
std::string join(const std::vector<std::string>& names);

// The entry called `name`; otherwise the usage error of require_one_of for `flag`.
template <class Entry>
const Entry& find_named(const std::vector<Entry>& entries, const std::string& name, const std::string& flag) {
  for (const Entry& e : entries)
    if (name == e.name) return e;
  require_one_of(flag, name, names_of(entries));
  return entries.front();  // not reached: require_one_of threw
}

}  // namespace metafew::core
