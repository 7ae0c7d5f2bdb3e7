// Weights out and in: metafew export --format safetensors read by an independent parser (Python's json and
// struct, tests/io/read_safetensors.py) with the documented names and shapes, and --init-from taking the
// export back bit for bit (Note [Initialising from a file] in src/cli/common.cpp).
#include <doctest/doctest.h>

#include <cstring>

#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "support/cli_run.h"

namespace metafew::testing::cli {
namespace {

// `command`'s stdout (stderr to the test's output), and its exit code.
Result run_command(const std::string& command, const fs::path& dir) {
  const fs::path out = dir / "cmd_stdout.txt";
  const int status = std::system((command + " > " + out.string()).c_str());
  Result r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(out);
  return r;
}

TEST_CASE("cli: export --format safetensors is read by an independent parser; --init-from takes it back bit for bit") {
  TempDir tmp;
  const fs::path run = tmp.path / "maml";
  Result train = metafew("meta-train " + small("--algo maml --iterations 4 --val-every 4 --out ") + run.string(), tmp.path);
  INFO(train.err);
  REQUIRE(train.code == 0);
  const fs::path st = tmp.path / "maml.safetensors";
  Result ex = metafew("export --checkpoint " + run.string() + " --out " + st.string() + " --json", tmp.path);
  INFO(ex.err);
  REQUIRE(ex.code == 0);
  CHECK(json::parse(ex.out)["format"] == "safetensors");

  // The checkpoint's parameters, by name: what every reader must find in the export.
  const io::Checkpoint ck = io::load_checkpoint((run / "best").string());
  std::map<std::string, tensor::Tensor> params;
  for (const io::NamedTensor& t : ck.tensors)
    if (t.name.rfind("param/", 0) == 0) params[t.name.substr(6)] = t.tensor;
  REQUIRE(params.size() == 18);  // conv-4: 4 x (conv weight, bias, bn weight, bias), head weight and bias

  Result py = run_command("python3 " + std::string(METAFEW_SOURCE_DIR) + "/tests/io/read_safetensors.py " + st.string(),
                          tmp.path);
  REQUIRE(py.code == 0);
  const json parsed = json::parse(py.out);
  CHECK(parsed["metadata"]["format"] == "pt");
  CHECK(parsed["metadata"]["metafew_algo"] == "maml");
  CHECK(json::parse(parsed["metadata"]["metafew_config"].get<std::string>())["filters"] == 16);
  CHECK(json::parse(parsed["metadata"]["metafew_preprocessing"].get<std::string>())["height"] == 28);
  REQUIRE(parsed["tensors"].size() == params.size());
  CHECK(parsed["tensors"]["block1.conv.weight"]["shape"] == json::array({16, 1, 3, 3}));
  CHECK(parsed["tensors"]["head.weight"]["shape"] == json::array({5, 16}));
  for (const auto& entry : params) {
    const std::string& name = entry.first;
    const tensor::Tensor& t = entry.second;
    INFO(name);  // (clang 14 cannot capture a structured binding in INFO's lambda)
    REQUIRE(parsed["tensors"].contains(name));
    const json& p = parsed["tensors"][name];
    CHECK(p["dtype"] == "F32");
    CHECK(p["shape"] == json(t.shape()));
    const std::vector<double> v = t.to_vector();
    double sum = 0;
    for (double x : v) sum += x;  // float64, in file order, as the parser sums
    CHECK(p["first"].get<double>() == v.front());
    CHECK(p["last"].get<double>() == v.back());
    CHECK(p["sum"].get<double>() == sum);
  }

  // --init-from: a ProtoNets run started from the MAML export holds its backbone exactly (outer-lr 0: the one
  // step leaves it as it was) and ignores the head it has no use for.
  const fs::path proto = tmp.path / "proto";
  Result init = metafew("meta-train " + small("--algo protonet --iterations 1 --outer-lr 0 --val-every 1 --init-from ") +
                            st.string() + " --out " + proto.string(),
                        tmp.path);
  INFO(init.err);
  REQUIRE(init.code == 0);
  CHECK(init.err.find("16 of 16 parameters") != std::string::npos);
  CHECK(init.err.find("ignored: head.bias, head.weight") != std::string::npos);
  const io::Checkpoint started = io::load_checkpoint((proto / "last").string());
  int64_t compared = 0;
  for (const io::NamedTensor& t : started.tensors) {
    if (t.name.rfind("param/", 0) != 0) continue;
    const tensor::Tensor& want = params.at(t.name.substr(6));
    REQUIRE(t.tensor.shape() == want.shape());
    CHECK(std::memcmp(t.tensor.raw_data(), want.raw_data(), static_cast<size_t>(want.numel()) * 4) == 0);
    ++compared;
  }
  CHECK(compared == 16);
  CHECK(json::parse(slurp(proto / "config.json"))["init_from"] == st.string());

  // The other way round: MAML from the ProtoNets run folder keeps a fresh head; a metafew checkpoint works as
  // the source as well as a safetensors file.
  Result back = metafew("meta-train " + small("--algo maml --iterations 1 --val-every 1 --init-from ") + proto.string() +
                            " --out " + (tmp.path / "maml2").string(),
                        tmp.path);
  INFO(back.err);
  REQUIRE(back.code == 0);
  CHECK(back.err.find("16 of 18 parameters") != std::string::npos);
  CHECK(back.err.find("fresh: head.weight, head.bias") != std::string::npos);
}

TEST_CASE("cli: --init-from refuses another backbone, a missing file and a file of another kind") {
  TempDir tmp;
  const fs::path st = tmp.path / "w.safetensors";
  io::save_safetensors(st.string(), {{"block1.conv.weight", tensor::Tensor::zeros({32, 1, 3, 3})}}, {});
  struct Case {
    std::string file, expected;
  };
  const fs::path text = tmp.path / "notes.txt";
  std::ofstream(text) << "hello\n";
  for (const Case& c : std::vector<Case>{
           {st.string(), "parameter block1.conv.weight has shape [32, 1, 3, 3], this model's is [16, 1, 3, 3]"},
           {(tmp.path / "none.safetensors").string(), "no such file"},
           {text.string(), "is neither a safetensors file nor a metafew checkpoint"}}) {
    Result r = metafew("meta-train " + small("--algo protonet --iterations 1 --init-from ") + c.file + " --out " +
                           (tmp.path / "run").string(),
                       tmp.path);
    INFO(r.err);
    CHECK(r.code == 2);
    CHECK(r.err.find("--init-from " + c.file + ": " + c.expected) != std::string::npos);
  }
  // A file with the right first layer but none of the rest: the missing parameter is named.
  io::save_safetensors(st.string(), {{"block1.conv.weight", tensor::Tensor::zeros({16, 1, 3, 3})}}, {});
  Result r = metafew("meta-train " + small("--algo protonet --iterations 1 --init-from ") + st.string() + " --out " +
                         (tmp.path / "run").string(),
                     tmp.path);
  CHECK(r.code == 2);
  CHECK(r.err.find("holds no parameter block1.conv.bias") != std::string::npos);
}

}  // namespace
}  // namespace metafew::testing::cli
