// Every setting is checked the same way wherever it comes from (Note [One check for every source]): here
// a checkpoint header, edited and saved with a valid checksum, gets the message a flag would get, naming the
// file and the key, for each bad value: zero, negative, out of range, absurdly large, wrong type.
#include <doctest/doctest.h>

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>

#include "cli/common.h"
#include "core/error.h"
#include "core/rng.h"
#include "io/checkpoint.h"
#include "io/settings.h"
#include "meta/registry.h"
#include "nn/options.h"
#include "optim/options.h"
#include "support/temp_dir.h"

namespace metafew::testing {
namespace {

using nlohmann::json;

// A small valid training checkpoint (conv4, 8 filters, 5-way MAML) made in memory.
io::Checkpoint small_checkpoint() {
  json cfg = cli::resolve_config(json::object(), json{{"filters", 8}, {"ways", 5}});
  core::Rng rng(1);
  auto algo = meta::make_algorithm(nn::Model(nn::model_config(cfg, 5)), meta::algo_config(cfg), rng);
  auto opt = optim::make_optimizer(cfg);
  json extra{{"preprocessing", {{"channels", 1}, {"height", 28}, {"width", 28}, {"invert", false}}}};
  return cli::training_checkpoint(cfg, *algo, *opt, 0, extra);
}

// Saves `ck` with `edit` applied to its config and loads it back as eval, adapt and resume do.
std::string load_error(const io::Checkpoint& ck, const std::string& key, const json& value, const TempDir& tmp) {
  io::Checkpoint bad = ck;
  bad.header["config"][key] = value;
  const std::string path = (tmp.path() / "edited.mfck").string();
  io::save_checkpoint(path, bad);
  try {
    io::Checkpoint loaded = io::load_checkpoint(path);
    cli::algorithm_from_checkpoint(loaded);
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::usage);
    return e.what();
  }
  return "";
}

TEST_CASE("settings: a checkpoint header with a bad value is refused with the flag's message, naming file and key") {
  TempDir tmp;
  const io::Checkpoint ck = small_checkpoint();
  const json valid = ck.header["config"];
  int integer_settings = 0;
  for (const io::Setting& s : io::settings()) {
    CAPTURE(s.key);
    const json& def = s.default_value;
    std::vector<json> bad;
    if (def.is_number_integer()) {
      ++integer_settings;
      bad = {json(static_cast<int64_t>(s.min) - 1), json(static_cast<int64_t>(s.max) + 1),
             json(std::numeric_limits<int64_t>::max()), json(std::numeric_limits<uint64_t>::max()),
             json(std::int64_t{1} << 62), json(std::numeric_limits<int64_t>::min()), json("x"), json(1.5),
             json(nullptr)};
      if (s.min > 0) bad.push_back(json(0));
    } else if (def.is_number()) {
      bad = {json(-1.0), json(-1e300), json("0.1"), json(true)};
    } else if (def.is_boolean()) {
      bad = {json(1), json("true"), json(nullptr)};
    } else {
      bad = {json(7), json::array()};
      if (s.check_choice) bad.push_back(json("no-such-value"));
    }
    for (const json& v : bad) {
      CAPTURE(v.dump());
      const std::string msg = load_error(ck, s.key, v, tmp);
      CHECK(msg.find("edited.mfck") != std::string::npos);
      CHECK(msg.find("\"" + s.key + "\"") != std::string::npos);
      if (s.key != "algo") CHECK(msg.find(io::flag_of(s.key)) != std::string::npos);
    }
  }
  CHECK(integer_settings > 15);
  // The header before editing loads.
  CHECK(load_error(ck, "filters", valid["filters"], tmp).empty());
  // The reproductions of issue 25, with their exact messages.
  CHECK(load_error(ck, "filters", std::numeric_limits<int64_t>::max(), tmp).find(
            "--filters must be positive and at most 4096, got 9223372036854775807") != std::string::npos);
  CHECK(load_error(ck, "checkpoint_every", 0, tmp).find("--checkpoint-every must be positive") != std::string::npos);
  CHECK(load_error(ck, "log_every", 0, tmp).find("--log-every must be positive") != std::string::npos);
  CHECK(load_error(ck, "ways", "five", tmp).find("--ways must be an integer, got \"five\"") != std::string::npos);
}

TEST_CASE("settings: a header without a setting, or with fields that size things, is refused by name") {
  TempDir tmp;
  const std::string path = (tmp.path() / "h.mfck").string();
  auto error_of = [&](const io::Checkpoint& c) -> std::string {
    io::save_checkpoint(path, c);
    try {
      cli::algorithm_from_checkpoint(io::load_checkpoint(path));
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  io::Checkpoint ck = small_checkpoint();
  io::Checkpoint missing = ck;
  missing.header["config"].erase("filters");
  CHECK(error_of(missing).find("setting \"filters\" is missing") != std::string::npos);
  io::Checkpoint it = ck;
  it.header["iteration"] = -3;
  CHECK(error_of(it).find("header field \"iteration\" must be an integer from 0 to") != std::string::npos);
  io::Checkpoint pre = ck;
  pre.header["preprocessing"]["height"] = std::numeric_limits<int64_t>::max();
  CHECK(error_of(pre).find("header field \"preprocessing\"") != std::string::npos);
  io::Checkpoint kind = ck;
  kind.header["kind"] = 3;
  CHECK(error_of(kind).find("header field \"kind\"") != std::string::npos);
}

TEST_CASE("settings: one meta-batch larger than the machine's memory is refused before anything is allocated") {
  CHECK(io::episode_batch_bytes(100000, 10000, 10000, 10000, 3, 1024) == std::numeric_limits<uint64_t>::max());
  CHECK(io::episode_batch_bytes(32, 5, 1, 15, 1, 28) == 32ull * 5 * 16 * 28 * 28 * 4);
  try {
    cli::resolve_config(json::object(), json{{"meta_batch", 100000}, {"ways", 10000}, {"image_size", 1024}});
    FAIL("accepted");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("more than this machine's memory") != std::string::npos);
    CHECK(std::string(e.what()).find("--meta-batch 100000") != std::string::npos);
  }
}

// Note [Input normalisation]: the default, the combinations refused (by flag, with what was expected), and
// checkpoints: one from before the setting loads without normalisation, one whose header says channel but lost
// its values is refused.
TEST_CASE("settings: input normalisation is off unless asked for and refuses values that do not fit") {
  auto resolved = [](const json& flags) { return cli::resolve_config(json::object(), flags); };
  CHECK(resolved(json::object())["normalize"] == "none");
  CHECK(resolved({{"channels", 3}})["normalize"] == "none");
  CHECK(resolved({{"channels", 3}, {"normalize", "channel"}})["input_mean"] == "");  // meta-train fills it in
  CHECK(resolved({{"normalize", "channel"}, {"input_mean", "0.5"}, {"input_std", "0.25"}})["input_std"] == "0.25");
  auto error_of = [&](const json& flags) -> std::string {
    try {
      resolved(flags);
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::usage);
      return e.what();
    }
    return "";
  };
  const auto npos = std::string::npos;
  CHECK(error_of({{"channels", 3}, {"normalize", "channel"}, {"input_mean", "0.5,0.5"}, {"input_std", "0.2,0.2"}})
            .find("--input-mean gives 2 values ('0.5,0.5') but the images have --channels 3") != npos);
  CHECK(error_of({{"normalize", "channel"}, {"input_mean", "0.5"}}).find("--input-mean and --input-std go together") !=
        npos);
  CHECK(error_of({{"normalize", "none"}, {"input_mean", "0.5"}, {"input_std", "0.2"}})
            .find("--input-mean is given but --normalize is none") != npos);
  for (const char* bad : {"0", "-1", "nan", "inf", "0.2,", "x", " 0.2", "1,2,3,4"})
    CHECK(error_of({{"normalize", "channel"}, {"input_mean", "0.5"}, {"input_std", bad}})
              .find("--input-std must be 1 to 3 comma-separated") != npos);
  CHECK(error_of({{"normalize", "per-pixel"}}).find("--normalize must be none or channel") != npos);
  CHECK(error_of({{"input_mean", "0.5"}, {"input_std", "0.25"}}).find("--input-mean is given but --normalize is none") !=
        npos);
  CHECK(error_of({{"data", "builtin:sinusoid"}, {"normalize", "channel"}})
            .find("--normalize channel applies to image datasets; builtin:sinusoid has no images") != npos);
  // The values as written are read back exactly.
  const std::vector<float> v{0.1f, 1.0f / 3.0f, 0.7071068f};
  CHECK(nn::parse_channel_values(nn::channel_values_name(v), "--input-mean", false) == v);

  TempDir tmp;
  io::Checkpoint old = small_checkpoint();
  for (const char* key : {"normalize", "input_mean", "input_std"}) old.header["config"].erase(key);
  CHECK(load_error(old, "filters", 8, tmp).empty());
  CHECK(nn::model_config(io::checkpoint_config(old), 5).input_mean.empty());
  CHECK(load_error(small_checkpoint(), "normalize", "channel", tmp)
            .find("setting \"normalize\" is channel but \"input_mean\" and \"input_std\" are empty") != npos);
  io::Checkpoint given = small_checkpoint();
  given.header["config"]["input_mean"] = "0.25";
  given.header["config"]["input_std"] = "0.5";
  given.header["config"]["normalize"] = "channel";
  const nn::ModelConfig mc = nn::model_config(io::checkpoint_config(given), 5);
  CHECK(mc.input_mean == std::vector<float>{0.25f});
  CHECK(mc.input_std == std::vector<float>{0.5f});
}

// Note [Training noise]: RFS's dropout and DropBlock belong to ResNet-12; a rate of 1 would drop everything.
TEST_CASE("settings: --drop-rate is refused for other backbones and at 1 or more") {
  auto error_of = [](const json& flags) -> std::string {
    try {
      cli::resolve_config(json::object(), flags);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  CHECK(error_of({{"model", "resnet12"}, {"drop_rate", 0.1}, {"dropblock_size", 5}}).empty());
  CHECK(error_of({{"drop_rate", 0.1}}).find("--drop-rate applies to --model resnet12") != std::string::npos);
  CHECK(error_of({{"model", "resnet12"}, {"drop_rate", 1.0}}).find("--drop-rate must be below 1") != std::string::npos);
  CHECK(error_of({{"model", "resnet12"}, {"dropblock_size", 0}}).find("--dropblock-size") != std::string::npos);
  io::Checkpoint old = small_checkpoint();
  for (const char* key : {"drop_rate", "dropblock_size"}) old.header["config"].erase(key);
  CHECK(io::checkpoint_config(old)["drop_rate"] == 0.0);
}

// Issue 26, item 5: the settings of one backbone over another's parameters (an edited or mixed-up header) are
// refused by name, never built into a model that reads the wrong tensors.
TEST_CASE("settings: a checkpoint whose header names another backbone or other widths is refused by parameter") {
  TempDir tmp;
  const io::Checkpoint conv4 = small_checkpoint();
  CHECK_THROWS_WITH_AS(
      [&] {
        io::Checkpoint bad = conv4;
        bad.header["config"]["model"] = "resnet12";
        bad.header["config"]["widths"] = "8,8,8,8";
        const std::string path = (tmp.path() / "mixed.mfck").string();
        io::save_checkpoint(path, bad);
        cli::algorithm_from_checkpoint(io::load_checkpoint(path));
      }(),
      doctest::Contains("param/block1.conv1.weight"), Error);
  // A ResNet-12 checkpoint read with other widths: the first parameter's shape is named with both shapes.
  json cfg = cli::resolve_config(json::object(), json{{"model", "resnet12"}, {"widths", "4,4"}, {"ways", 5}});
  core::Rng rng(1);
  auto algo = meta::make_algorithm(nn::Model(nn::model_config(cfg, 5)), meta::algo_config(cfg), rng);
  auto opt = optim::make_optimizer(cfg);
  json extra{{"preprocessing", {{"channels", 1}, {"height", 28}, {"width", 28}, {"invert", false}}}};
  io::Checkpoint resnet = cli::training_checkpoint(cfg, *algo, *opt, 0, extra);
  resnet.header["config"]["widths"] = "8,4";
  const std::string path = (tmp.path() / "widths.mfck").string();
  io::save_checkpoint(path, resnet);
  CHECK_THROWS_WITH_AS(cli::algorithm_from_checkpoint(io::load_checkpoint(path)),
                       doctest::Contains("parameter block1.conv1.weight has shape [4, 1, 3, 3], the model expects "
                                         "[8, 1, 3, 3]"),
                       Error);
}

}  // namespace
}  // namespace metafew::testing
