#include "core/setting.h"

#include "core/error.h"

namespace metafew::core {

void require_one_of(const std::string& flag, const std::string& value, const std::vector<std::string>& accepted) {
  std::string list;
  for (size_t i = 0; i < accepted.size(); ++i) {
    if (value == accepted[i]) return;
    list += (i == 0 ? "" : (i + 1 == accepted.size() ? " or " : ", ")) + accepted[i];
  }
  throw Error(detail::concat(flag, " must be ", list, ", got '", value, "'"), ErrorKind::usage);
}

std::string join(const std::vector<std::string>& names) {
  std::string s;
  for (const std::string& n : names) s += (s.empty() ? "" : ", ") + n;
  return s;
}

}  // namespace metafew::core
