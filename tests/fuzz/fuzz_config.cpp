// libFuzzer target: a --config file through the reader, the schema check and the settings' one check.
#include <cstddef>
#include <cstdint>

#include "cli/common.h"
#include "core/error.h"
#include "fuzz_support.h"
#include "io/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = metafew::fuzz::write_input(data, size, "settings.json");
  try {
    const nlohmann::json file = metafew::io::read_config_file(path);
    metafew::cli::resolve_config(file, nlohmann::json::object());
  } catch (const metafew::Error&) {
  }
  return 0;
}
