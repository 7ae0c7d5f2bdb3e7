#pragma once
// One exception type for the whole library; its message names the operation, the offending value and
// what was expected. Only main() catches it (see ARCHITECTURE.md, decision 6).
#include <sstream>
#include <stdexcept>
#include <string>

namespace metafew {

enum class ErrorKind { runtime, usage };

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what, ErrorKind kind = ErrorKind::runtime)
      : std::runtime_error(what), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

namespace detail {
// Streams any number of arguments into one string: concat("shape ", s, " expected ", t).
template <class... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

}  // namespace metafew

// MF_CHECK(cond, "op: got ", x, ", expected ", y) throws metafew::Error when cond is false.
#define MF_CHECK(cond, ...)                                               \
  do {                                                                    \
    if (!(cond)) throw ::metafew::Error(::metafew::detail::concat(__VA_ARGS__)); \
  } while (0)

#define MF_USAGE_CHECK(cond, ...)                                                          \
  do {                                                                                     \
    if (!(cond))                                                                           \
      throw ::metafew::Error(::metafew::detail::concat(__VA_ARGS__), ::metafew::ErrorKind::usage); \
  } while (0)
