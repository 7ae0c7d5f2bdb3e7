// libFuzzer target: the checkpoint reader and everything that trusts a checkpoint's header (the settings
// check, building the model, loading its parameters), as eval, adapt, predict and resume do.
#include <cstddef>
#include <cstdint>

#include "cli/common.h"
#include "core/error.h"
#include "fuzz_support.h"
#include "io/checkpoint.h"
#include "io/settings.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = metafew::fuzz::write_input(data, size, "input.mfck");
  try {
    metafew::io::Checkpoint ck = metafew::io::load_checkpoint(path);
    metafew::io::checkpoint_config(ck);
    metafew::cli::algorithm_from_checkpoint(ck);
  } catch (const metafew::Error&) {
    // refused with a message: the expected outcome for damaged input
  }
  return 0;
}
