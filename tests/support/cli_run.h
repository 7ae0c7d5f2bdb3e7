#pragma once
// What the end-to-end tests of the metafew binary share (tests/cli/): running it with captured output, a
// small fast configuration, task folders of glyph images, and reading checkpoints and metrics back.
#include <doctest/doctest.h>
#include <stb/stb_image_write.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <cstring>
#include <thread>

#include "data/dataset.h"
#include "io/checkpoint.h"


namespace metafew::testing::cli {

namespace fs = std::filesystem;
using nlohmann::json;

struct Result {
  int code = -1;
  std::string out, err;
};

inline std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("metafew_cli_" + std::to_string(::getpid()) + "_" +
                                        std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// Runs `<launcher>metafew <args>` with its stdout and stderr captured (launcher: "" or "mpirun ... ").
inline Result metafew_via(const std::string& launcher, const std::string& args, const fs::path& dir) {
  const fs::path out = dir / "stdout.txt", err = dir / "stderr.txt";
  const std::string cmd =
      launcher + std::string(METAFEW_BINARY) + " " + args + " > " + out.string() + " 2> " + err.string();
  const int status = std::system(cmd.c_str());
  Result r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

// Runs `metafew <args>` with its stdout and stderr captured.
inline Result metafew(const std::string& args, const fs::path& dir) { return metafew_via("", args, dir); }

// A small, fast training configuration on builtin:glyphs.
inline const char* kSmall =
    "--data builtin:glyphs --ways 5 --shots 1 --queries 5 --meta-batch 4 --filters 16 --inner-lr 0.4 "
    "--eval-steps 5 --val-episodes 20 --log-every 20 --threads 2";

// kSmall with `extra` appended; a flag of kSmall that `extra` sets again is left out (a flag given twice is
// refused).
inline std::string small(const std::string& extra) {
  std::istringstream words(kSmall);
  std::string out, flag, value;
  while (words >> flag >> value)
    if (extra.find(flag + " ") == std::string::npos && extra.find(flag + "=") == std::string::npos)
      out += flag + " " + value + " ";
  return out + extra;
}

inline void write_png(const fs::path& file, const float* pixels, int side) {
  std::vector<unsigned char> bytes(static_cast<size_t>(side * side));
  // Glyph images are strokes 1.0 on 0.0, stored as they are (no inversion for the built-in dataset).
  for (int i = 0; i < side * side; ++i) bytes[i] = static_cast<unsigned char>(std::lround(pixels[i] * 255.0f));
  REQUIRE(stbi_write_png(file.string().c_str(), side, side, 1, bytes.data(), side) != 0);
}

// A 5-way 1-shot task from the glyph test split as folders: support/<class>/0.png, query/<class>/{0..2}.png.
inline void write_task_folders(const fs::path& dir) {
  auto ds = data::open_dataset("builtin:glyphs", {});
  const data::Split& test = ds->split("test");
  std::vector<float> img(28 * 28);
  for (int c = 0; c < 5; ++c) {
    const data::SplitClass& sc = test.classes[static_cast<size_t>(c * 7)];
    const int64_t first = ds->base_class(sc.base_class).first_image;
    const std::string name = "class" + std::to_string(c);
    fs::create_directories(dir / "support" / name);
    fs::create_directories(dir / "query" / name);
    ds->read_image(first, sc.quarter_turns, img.data());
    write_png(dir / "support" / name / "0.png", img.data(), 28);
    for (int q = 0; q < 3; ++q) {
      ds->read_image(first + 1 + q, sc.quarter_turns, img.data());
      write_png(dir / "query" / name / (std::to_string(q) + ".png"), img.data(), 28);
    }
  }
}


inline void expect_error(const Result& r, int code, const std::string& fragment) {
  INFO("stderr: " << r.err);
  CHECK(r.code == code);
  // Progress lines may come first; the error is the line that starts with "error: ".
  CHECK((r.err.rfind("error: ", 0) == 0 || r.err.find("\nerror: ") != std::string::npos));
  CHECK(r.err.find(fragment) != std::string::npos);
}

// The tensors of a checkpoint whose names start with `prefix` (the parameters by default), in order.
inline std::vector<tensor::Tensor> params_of(const fs::path& ckpt, const std::string& prefix = "param/") {
  io::Checkpoint ck = io::load_checkpoint(ckpt.string());
  std::vector<tensor::Tensor> out;
  for (const auto& t : ck.tensors)
    if (t.name.rfind(prefix, 0) == 0) out.push_back(t.tensor);
  return out;
}

inline void check_same_bits(const std::vector<tensor::Tensor>& pa, const std::vector<tensor::Tensor>& pb) {
  REQUIRE(pa.size() == pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    REQUIRE(pa[i].shape() == pb[i].shape());
    REQUIRE(pa[i].dtype() == pb[i].dtype());
    CHECK(std::memcmp(pa[i].raw_data(), pb[i].raw_data(),
                      static_cast<size_t>(pa[i].numel()) * tensor::dtype_size(pa[i].dtype())) == 0);
  }
}

// The iterations of metrics.jsonl's lines, in file order (every line must be a JSON object).
inline std::vector<int64_t> metric_iterations(const fs::path& run) {
  std::vector<int64_t> its;
  std::ifstream f(run / "metrics.jsonl");
  for (std::string line; std::getline(f, line);) {
    json j = json::parse(line, nullptr, false);
    INFO("line: ", line);
    REQUIRE(!j.is_discarded());
    its.push_back(j["iteration"].get<int64_t>());
  }
  return its;
}


inline bool all_finite(const fs::path& ckpt) {
  for (const io::NamedTensor& nt : io::load_checkpoint(ckpt.string()).tensors) {
    if (nt.tensor.dtype() == tensor::DType::i32) continue;
    for (double v : nt.tensor.to_vector())
      if (!std::isfinite(v)) return false;
  }
  return true;
}

}  // namespace metafew::testing::cli
