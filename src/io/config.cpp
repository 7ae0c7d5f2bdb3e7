#include "io/config.h"

#include "io/run_dir.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <system_error>
#include <vector>

#include "core/error.h"

// Note [Config precedence]
// A setting comes from the command's defaults, then the config file, then the flags, each overriding the
// one before key by key. Objects merge recursively, so a file that sets only model.filters keeps the
// default model.arch; arrays and scalars are replaced whole, because a list (say, the learning-rate
// milestones) is one setting, not a set of them. Validation is separate from merging and runs on each
// source on its own, so that a typo is reported against the source that holds it ("config file run.json:
// unknown key ..." or "command line: ..."); the defaults are the schema, which keeps the set of settings,
// their types and their default values in one place (the command's options struct) instead of three.
// The resolved object is what a run writes to RUN/config.json and stores in its checkpoints.

namespace metafew::io {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

void merge_into(json& base, const json& over) {
  for (auto it = over.begin(); it != over.end(); ++it) {
    json& slot = base[it.key()];
    if (slot.is_object() && it->is_object()) {
      merge_into(slot, *it);
    } else {
      slot = *it;
    }
  }
}

// "an integer", "a string", ... for messages.
std::string a_type(const json& j) {
  switch (j.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::object:
      return "an object";
    case json::value_t::array:
      return "an array";
    case json::value_t::string:
      return "a string";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return "an integer";
    case json::value_t::number_float:
      return "a floating-point number";
    default:
      return std::string("a ") + j.type_name();
  }
}

// The value as JSON, cut short for messages.
std::string short_dump(const json& j) {
  std::string s = j.dump(-1, ' ', false, json::error_handler_t::replace);
  constexpr size_t kMax = 60;
  if (s.size() > kMax) s = s.substr(0, kMax - 3) + "...";
  return s;
}

[[noreturn]] void unknown_key(const std::string& key, const std::string& full_key, const json& known,
                              const std::string& prefix, const std::string& source) {
  std::string suggestion, list;
  size_t best = std::max<size_t>(1, key.size() / 3) + 1;
  for (auto it = known.begin(); it != known.end(); ++it) {
    list += (list.empty() ? "" : ", ") + it.key();
    const size_t d = key_distance(key, it.key());
    if (d < best) {
      best = d;
      suggestion = it.key();
    }
  }
  const std::string hint = suggestion.empty() ? "" : " (did you mean \"" + suggestion + "\"?)";
  const std::string where = prefix.empty() ? "" : " in \"" + prefix + "\"";
  throw Error(metafew::detail::concat(source, ": unknown key \"", full_key, "\"", hint, "; known keys", where,
                                      ": ", list.empty() ? "none" : list));
}

void check_value(const json& value, const json& def, const std::string& key, const std::string& source);

void check_object(const json& config, const json& defaults, const std::string& prefix,
                  const std::string& source) {
  for (auto it = config.begin(); it != config.end(); ++it) {
    const std::string full_key = prefix.empty() ? it.key() : prefix + "." + it.key();
    auto d = defaults.find(it.key());
    if (d == defaults.end()) unknown_key(it.key(), full_key, defaults, prefix, source);
    check_value(*it, *d, full_key, source);
  }
}

void check_value(const json& value, const json& def, const std::string& key, const std::string& source) {
  bool ok = true;
  const char* expected = "";
  switch (def.type()) {
    case json::value_t::null:
      return;  // no default: any value
    case json::value_t::number_float:
      ok = value.is_number();
      expected = "a number";
      break;
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      ok = value.is_number_integer();
      expected = "an integer";
      break;
    case json::value_t::boolean:
      ok = value.is_boolean();
      expected = "true or false";
      break;
    case json::value_t::string:
      ok = value.is_string();
      expected = "a string";
      break;
    case json::value_t::array:
      ok = value.is_array();
      expected = "an array";
      break;
    case json::value_t::object:
      ok = value.is_object();
      expected = "an object";
      break;
    default:
      ok = value.type() == def.type();
      expected = def.type_name();
      break;
  }
  MF_CHECK(ok, source, ": \"", key, "\" expects ", expected, ", got ", a_type(value),
           value.is_null() ? "" : " (" + short_dump(value) + ")");
  if (def.is_object() && !def.empty()) check_object(value, def, key, source);
  if (def.is_array() && !def.empty())
    for (size_t i = 0; i < value.size(); ++i)
      check_value(value[i], def[0], metafew::detail::concat(key, "[", i, "]"), source);
}

// 1-based line and column of the 0-based byte `pos` in `text`.
std::pair<size_t, size_t> line_column(const std::string& text, size_t pos) {
  pos = std::min(pos, text.size());
  size_t line = 1, line_start = 0;
  for (size_t i = 0; i < pos; ++i)
    if (text[i] == '\n') {
      ++line;
      line_start = i + 1;
    }
  return {line, pos - line_start + 1};
}

// nlohmann's reason without its "[json.exception.parse_error.101] parse error at line 1, column 2: " prefix.
std::string parse_reason(const json::parse_error& e) {
  std::string s = e.what();
  const size_t tag = s.find("] ");
  if (tag != std::string::npos) s = s.substr(tag + 2);
  if (s.rfind("parse error", 0) == 0) {
    const size_t colon = s.find(": ");
    if (colon != std::string::npos) s = s.substr(colon + 2);
  }
  return s;
}

}  // namespace

json merge_config(const json& defaults, const json& file, const json& flags) {
  auto require_object = [](const json& j, const char* what) {
    MF_CHECK(j.is_object() || j.is_null(), "merge_config: the ", what,
             " must be a JSON object (or null when absent), got ", a_type(j));
  };
  require_object(defaults, "defaults");
  require_object(file, "config file");
  require_object(flags, "flags");
  json out = defaults.is_object() ? defaults : json::object();
  if (file.is_object()) merge_into(out, file);
  if (flags.is_object()) merge_into(out, flags);
  return out;
}

// Levenshtein distance after folding case and '-' to '_' (so "Inner-LR" is 0 from "inner_lr").
size_t key_distance(const std::string& a, const std::string& b) {
  auto fold = [](char c) {
    return c == '-' ? '_' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  };
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t subst = prev[j - 1] + (fold(a[i - 1]) == fold(b[j - 1]) ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, subst});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

json read_config_file(const std::string& path) {
  const std::string ctx = "config file " + path + ": ";
  MF_CHECK(!require_existing_path(path, ctx), ctx, "is a folder, expected a JSON file");
  // A device or pipe (/dev/zero) would be read until memory runs out; a settings file is a few kB.
  constexpr size_t kMaxBytes = size_t{1} << 20;
  std::error_code ec;
  MF_CHECK(fs::is_regular_file(path, ec), ctx, "is not a regular file (a device, pipe or socket); expected a JSON file");
  const uintmax_t bytes = fs::file_size(path, ec);
  MF_CHECK(!ec && bytes <= kMaxBytes, ctx, "is larger than 1 MiB; a settings file is a small JSON object");
  std::ifstream in(path, std::ios::binary);
  MF_CHECK(in.good(), ctx, "cannot open it for reading");
  std::string text(static_cast<size_t>(bytes), '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  MF_CHECK(!in.bad(), ctx, "cannot read it");
  text.resize(static_cast<size_t>(in.gcount()));  // a file that shrank meanwhile
  MF_CHECK(text.find_first_not_of(" \t\r\n") != std::string::npos, ctx, "is empty, expected a JSON object");

  // nlohmann keeps the last of repeated keys silently; in a config file a repeat is a mistake.
  std::vector<std::set<std::string>> open_objects;
  json::parser_callback_t on_event = [&](int, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        open_objects.emplace_back();
        break;
      case json::parse_event_t::object_end:
        open_objects.pop_back();
        break;
      case json::parse_event_t::key: {
        const std::string& key = parsed.get_ref<const std::string&>();
        MF_CHECK(open_objects.back().insert(key).second, ctx, "the key \"", key,
                 "\" appears twice in the same object; give each setting once");
        break;
      }
      default:
        break;
    }
    return true;
  };

  json j;
  try {
    j = json::parse(text, on_event, /*allow_exceptions=*/true, /*ignore_comments=*/true);
  } catch (const json::parse_error& e) {
    const auto [line, column] = line_column(text, e.byte > 0 ? e.byte - 1 : 0);
    throw Error(metafew::detail::concat(ctx, "is not valid JSON: line ", line, ", column ", column, ": ",
                                        parse_reason(e)));
  } catch (const json::out_of_range& e) {
    // A number too large for a double ("1E999"): nlohmann reports it as out_of_range, without a position.
    const std::string what = e.what();
    throw Error(metafew::detail::concat(ctx, "is not valid JSON: ", what.substr(what.find("] ") + 2)));
  }
  MF_CHECK(j.is_object(), ctx, "expected a JSON object of settings at the top level, got ", a_type(j));
  return j;
}

void validate_config(const json& config, const json& defaults, const std::string& source) {
  MF_CHECK(defaults.is_object(), "validate_config: the defaults for ", source, " must be a JSON object, got ",
           a_type(defaults));
  if (config.is_null()) return;
  MF_CHECK(config.is_object(), source, ": expected a JSON object of settings, got ", a_type(config), " (",
           short_dump(config), ")");
  check_object(config, defaults, "", source);
}

}  // namespace metafew::io
