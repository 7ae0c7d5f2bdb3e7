#include "cli/export_cmd.h"

#include <cstdio>
#include <filesystem>

#include "cli/common.h"

namespace metafew::cli {

int run_export(int argc, char** argv) {
  cxxopts::Options opts("metafew export",
                        "Write a meta-trained model without its optimizer state (about a third of the size): "
                        "eval and adapt read it like the original; meta-train --resume refuses it.");
  opts.set_width(100);
  add_shared_flags(opts, {SharedFlag::checkpoint, SharedFlag::json_output});
  opts.add_options()("out", "file to write", cxxopts::value<std::string>());
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
