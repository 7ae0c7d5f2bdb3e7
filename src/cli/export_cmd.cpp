#include "cli/export_cmd.h"

#include <cstdio>
#include <filesystem>

#include "cli/common.h"
#include "core/version.h"
#include "io/safetensors.h"

namespace metafew::cli {

namespace {

// Note [Exported parameter names]: a safetensors export holds the model's parameters and nothing else,
// under the names metafew gives them (the backbone's "block1.conv.weight", ..., the head's "head.weight"
// and "head.bias", Meta-SGD's per-parameter rates "lr.<name>", ParamNet's "paramnet.a" and "paramnet.s"),
// which are the attribute paths of the PyTorch module the README shows, so load_state_dict takes them as
// they are. Batch norm keeps no running statistics (metafew normalises with batch statistics in every
// mode), so there are none to export. The optimizer state and Reptile's carried inner state stay behind:
// they continue a run, which only the metafew format can do. The metadata (strings, by the format) name the
// algorithm and model (backbone) and hold the resolved settings and the image preprocessing as JSON, so a reader
// knows the input size, channels and polarity.
int export_safetensors(const io::Checkpoint& ck, const std::string& path, const std::string& out, bool as_json) {
  auto algo = algorithm_from_checkpoint(ck);  // validates the parameters (names, shapes, finite)
  std::vector<io::NamedTensor> tensors;
  for (size_t i = 0; i < algo->parameters().size(); ++i)
    tensors.push_back({algo->parameter_names()[i], algo->parameters()[i].data()});
  const json cfg = checkpoint_config(ck);
  const std::map<std::string, std::string> metadata{
      {"format", "pt"},
      {"metafew_version", kVersion},
      {"metafew_algo", cfg["algo"].get<std::string>()},
      {"metafew_model", cfg["model"].get<std::string>()},
      {"metafew_iteration", ck.header["iteration"].dump()},
      {"metafew_config", cfg.dump()},
      {"metafew_preprocessing", ck.header.value("preprocessing", json::object()).dump()}};
  io::save_safetensors(out, tensors, metadata);
  const io::SafetensorsFile back = io::load_safetensors(out);  // the written file reads back
  MF_CHECK(back.tensors.size() == tensors.size(), "export: ", out, " read back with ", back.tensors.size(),
           " tensors, ", tensors.size(), " were written");
  const auto bytes = static_cast<int64_t>(std::filesystem::file_size(out));
  if (as_json) {
    std::printf("%s\n", json{{"checkpoint", path},
                             {"out", out},
                             {"format", "safetensors"},
                             {"algo", cfg["algo"]},
                             {"iteration", ck.header["iteration"]},
                             {"tensors", tensors.size()},
                             {"bytes", bytes}}
                            .dump()
                            .c_str());
  } else {
    std::printf("export: %s (iteration %s) -> %s, safetensors, %zu tensors, %lld bytes\n", path.c_str(),
                ck.header["iteration"].dump().c_str(), out.c_str(), tensors.size(), static_cast<long long>(bytes));
  }
  return 0;
}

}  // namespace

int run_export(int argc, char** argv) {
  cxxopts::Options opts("metafew export",
                        "Write a meta-trained model without its optimizer state. --format metafew (about a third of "
                        "the size): eval and adapt read it like the original; meta-train --resume refuses it. "
                        "--format safetensors: the parameters under their names, for PyTorch and other tools "
                        "(README, \"Weights in and out\"), and for meta-train --init-from.");
  opts.set_width(100);
  add_shared_flags(opts, {SharedFlag::checkpoint, SharedFlag::json_output});
  opts.add_options()("out", "file to write", cxxopts::value<std::string>())(
      "format", "metafew or safetensors (default: safetensors when --out ends in .safetensors, else metafew)",
      cxxopts::value<std::string>());
  cxxopts::ParseResult args = parse_options(opts, argc, argv, "export");
  if (args.count("help")) {
    std::printf("%s\n", opts.help().c_str());
    return 0;
  }
  MF_USAGE_CHECK(args.count("checkpoint"), "export: --checkpoint is required (a checkpoint file or a run folder)");
  MF_USAGE_CHECK(args.count("out"), "export: --out is required (the file to write)");
  const std::string path = resolve_checkpoint_path(args["checkpoint"].as<std::string>());
  const std::string out = args["out"].as<std::string>();
  io::Checkpoint ck = io::load_checkpoint(path);
  checkpoint_config(ck);  // throws naming the file when it is not a metafew model checkpoint
  MF_USAGE_CHECK(ck.header["kind"] == "training", "export: ", path,
                 " is not a meta-trained checkpoint (kind '", ck.header["kind"].dump(),
                 "'); export takes the best or last checkpoint of a meta-train run");
  std::error_code ec;
  const auto parent = std::filesystem::absolute(out, ec).parent_path();
  MF_USAGE_CHECK(std::filesystem::is_directory(parent, ec), "export: the folder of --out ", out,
                 " does not exist");

  std::string format = args.count("format") ? args["format"].as<std::string>() : "";
  if (format.empty()) {
    const std::string ext = ".safetensors";
    format = out.size() >= ext.size() && out.compare(out.size() - ext.size(), ext.size(), ext) == 0 ? "safetensors"
                                                                                                     : "metafew";
  }
  core::require_one_of("--format", format, {"metafew", "safetensors"});
  if (format == "safetensors") return export_safetensors(ck, path, out, args.count("json") > 0);

  io::Checkpoint slim;
  slim.header = ck.header;
  slim.header["optimizer_state"] = 0;
  slim.header["exported_from"] = json{{"file", path}, {"optimizer_state_dropped", ck.header["optimizer_state"]}};
  int64_t dropped_bytes = 0;
  for (const io::NamedTensor& t : ck.tensors) {
    if (t.name.rfind("optimizer/", 0) == 0)
      dropped_bytes += t.tensor.numel() * static_cast<int64_t>(tensor::dtype_size(t.tensor.dtype()));
    else
      slim.tensors.push_back(t);
  }
  io::save_checkpoint(out, slim);
  algorithm_from_checkpoint(io::load_checkpoint(out));  // the written model loads back
  const auto bytes = static_cast<int64_t>(std::filesystem::file_size(out));
  if (args.count("json")) {
    std::printf("%s\n", json{{"checkpoint", path},
                             {"out", out},
                             {"algo", ck.header["algo"]},
                             {"iteration", ck.header["iteration"]},
                             {"bytes", bytes},
                             {"optimizer_bytes_dropped", dropped_bytes}}
                            .dump()
                            .c_str());
  } else {
    std::printf("export: %s (iteration %s) -> %s, %lld bytes (optimizer state of %lld bytes dropped)\n", path.c_str(),
                ck.header["iteration"].dump().c_str(), out.c_str(), static_cast<long long>(bytes),
                static_cast<long long>(dropped_bytes));
  }
  return 0;
}

}  // namespace metafew::cli
