// Config precedence (defaults < file < flags), validation against the defaults, config files with their
// errors, and the run directory (config.json, metrics.jsonl).
#include <doctest/doctest.h>

#include "support/temp_dir.h"
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "io/config.h"
#include "io/run_dir.h"

namespace metafew::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;


void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  REQUIRE(out.good());
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The message `fn` throws as metafew::Error, or "" when it does not throw.
template <class Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

json sample_defaults() {
  return {{"ways", 5},
          {"shots", 1},
          {"iterations", 60000},
          {"inner_lr", 0.4},
          {"algo", "maml"},
          {"second_order", true},
          {"milestones", {20000, 40000}},
          {"model", {{"arch", "conv4"}, {"filters", 64}, {"hidden", json::array()}}},
          {"extra", json::object()},
          {"resume", nullptr}};
}

}  // namespace

TEST_CASE("io: config precedence is defaults < file < flags") {
  const json defaults = sample_defaults();
  const json file = {{"ways", 20}, {"shots", 5}, {"inner_lr", 0.1}};
  const json flags = {{"shots", 1}, {"algo", "fomaml"}};
  const json c = io::merge_config(defaults, file, flags);
  CHECK(c["ways"] == 20);           // file over default
  CHECK(c["shots"] == 1);           // flag over file
  CHECK(c["inner_lr"] == 0.1);      // file over default
  CHECK(c["algo"] == "fomaml");     // flag over default
  CHECK(c["iterations"] == 60000);  // default kept
  CHECK(c.size() == defaults.size());

  // Absent sources are null; the arguments are left as they were.
  CHECK(io::merge_config(defaults, nullptr, nullptr) == defaults);
  CHECK(io::merge_config(defaults, file, json::object())["ways"] == 20);
  CHECK(file.size() == 3);
  CHECK_THROWS_AS(io::merge_config(defaults, json::array({1}), nullptr), Error);
}

TEST_CASE("io: config objects merge recursively, arrays and scalars are replaced whole") {
  const json defaults = sample_defaults();
  const json file = {{"model", {{"filters", 32}}}, {"milestones", {100}}};
  const json flags = {{"model", {{"arch", "resnet12"}}}};
  const json c = io::merge_config(defaults, file, flags);
  CHECK(c["model"] == json{{"arch", "resnet12"}, {"filters", 32}, {"hidden", json::array()}});
  CHECK(c["milestones"] == json::array({100}));
}

TEST_CASE("io: config validation refuses unknown keys, naming them and the known ones") {
  const json defaults = sample_defaults();
  std::string msg = error_of([&] {
    io::validate_config({{"ietrations", 10}}, defaults, "config file run.json");
  });
  CHECK(msg ==
        "config file run.json: unknown key \"ietrations\" (did you mean \"iterations\"?); known keys: algo, "
        "extra, "
        "inner_lr, iterations, milestones, model, resume, second_order, shots, ways");

  msg = error_of([&] { io::validate_config({{"model", {{"filtres", 32}}}}, defaults, "command line"); });
  CHECK(msg ==
        "command line: unknown key \"model.filtres\" (did you mean \"filters\"?); known keys in \"model\": "
        "arch, "
        "filters, hidden");

  msg = error_of([&] { io::validate_config({{"inner-lr", 0.1}}, defaults, "command line"); });
  CHECK(contains(msg, "(did you mean \"inner_lr\"?)"));
  msg = error_of([&] { io::validate_config({{"zzzzzz", 1}}, defaults, "command line"); });
  CHECK(contains(msg, "unknown key \"zzzzzz\"; known keys: "));

  // An empty object default takes any keys; a null default any value.
  CHECK_NOTHROW(
      io::validate_config({{"extra", {{"anything", {1, 2}}}}, {"resume", "runs/a"}}, defaults, "x"));
  CHECK_NOTHROW(io::validate_config(nullptr, defaults, "no config file"));
  CHECK(error_of([&] { io::validate_config(json::array(), defaults, "config file a.json"); }) ==
        "config file a.json: expected a JSON object of settings, got an array ([])");
}

TEST_CASE("io: config validation refuses type mismatches and accepts an integer for a float") {
  const json defaults = sample_defaults();
  auto error_for = [&](const json& config) {
    return error_of([&] { io::validate_config(config, defaults, "config file run.json"); });
  };
  CHECK(error_for({{"inner_lr", "0.1"}}) ==
        "config file run.json: \"inner_lr\" expects a number, got a string (\"0.1\")");
  CHECK(error_for({{"ways", 2.5}}) ==
        "config file run.json: \"ways\" expects an integer, got a floating-point number (2.5)");
  CHECK(error_for({{"second_order", 1}}) ==
        "config file run.json: \"second_order\" expects true or false, got an integer (1)");
  CHECK(error_for({{"algo", nullptr}}) == "config file run.json: \"algo\" expects a string, got null");
  CHECK(error_for({{"model", "conv4"}}) ==
        "config file run.json: \"model\" expects an object, got a string (\"conv4\")");
  CHECK(error_for({{"model", {{"filters", "many"}}}}) ==
        "config file run.json: \"model.filters\" expects an integer, got a string (\"many\")");
  CHECK(error_for({{"milestones", {100, "x"}}}) ==
        "config file run.json: \"milestones[1]\" expects an integer, got a string (\"x\")");

  CHECK_NOTHROW(io::validate_config({{"inner_lr", 1}}, defaults, "flags"));
  CHECK_NOTHROW(
      io::validate_config({{"inner_lr", -3}, {"ways", 20}, {"milestones", json::array()}}, defaults, "f"));
  CHECK_NOTHROW(io::validate_config({{"model", {{"hidden", {64, "wide", true}}}}}, defaults, "f"));
}

TEST_CASE("io: config files: comments allowed, and missing, malformed, repeated keys and non-objects refused") {
  TempDir dir("metafew-io-config");
  const std::string good = dir.file("run.json");
  write_text(good, "{\n  // five-way\n  \"ways\": 5,\n  \"model\": {\"filters\": 32} /* small */\n}\n");
  const json j = io::read_config_file(good);
  CHECK(j == json{{"ways", 5}, {"model", {{"filters", 32}}}});

  const std::string bad = dir.file("bad.json");
  write_text(bad, "{\n  \"ways\": 5,\n  \"shots\": one\n}\n");
  const std::string msg = error_of([&] { (void)io::read_config_file(bad); });
  INFO(msg);
  CHECK(msg.rfind("config file " + bad + ": is not valid JSON: line 3, column 12: ", 0) == 0);
  CHECK(contains(msg, "invalid literal"));

  write_text(bad, "{\"ways\": 5,}");
  CHECK(
      contains(error_of([&] { (void)io::read_config_file(bad); }), "is not valid JSON: line 1, column 12: "));

  write_text(bad, "{\"ways\": 5, \"model\": {\"filters\": 1, \"filters\": 2}}");
  CHECK(error_of([&] { (void)io::read_config_file(bad); }) ==
        "config file " + bad +
            ": the key \"filters\" appears twice in the same object; give each setting once");
  write_text(bad, "[{\"a\": 1}, {\"a\": 2}]");  // the same key in two objects is fine, the array is not
  CHECK(error_of([&] { (void)io::read_config_file(bad); }) ==
        "config file " + bad + ": expected a JSON object of settings at the top level, got an array");
  // A number beyond a double (found by tests/fuzz/fuzz_config): named, not a raw library error.
  write_text(bad, "{\"filters\": 92032E2334576871807}");
  CHECK(error_of([&] { (void)io::read_config_file(bad); }) ==
        "config file " + bad + ": is not valid JSON: number overflow parsing '92032E2334576871807'");
  write_text(bad, " \n");
  CHECK(error_of([&] { (void)io::read_config_file(bad); }) ==
        "config file " + bad + ": is empty, expected a JSON object");

  const std::string missing = dir.file("missing.json");
  CHECK(error_of([&] { (void)io::read_config_file(missing); }) ==
        "config file " + missing + ": no such file");
  CHECK(error_of([&] { (void)io::read_config_file(dir.file("")); }) ==
        "config file " + dir.file("") + ": is a folder, expected a JSON file");
}

TEST_CASE("io: run directory writes config.json atomically and appends metrics lines") {
  TempDir dir("metafew-io-config");
  const io::RunDir run(dir.file("runs/exp1"), /*create=*/true);
  CHECK(run.path() == dir.file("runs/exp1"));
  CHECK(run.file("last") == dir.file("runs/exp1/last"));

  const json config = io::merge_config(sample_defaults(), json{{"ways", 20}}, nullptr);
  run.write_json("config.json", config);
  const std::string text = read_text(run.file("config.json"));
  CHECK(json::parse(text) == config);
  CHECK(text.back() == '\n');
  CHECK(contains(text, "\n  \"algo\": \"maml\""));   // pretty-printed
  run.write_json("config.json", json{{"ways", 5}});  // replaced whole
  CHECK(json::parse(read_text(run.file("config.json"))) == json{{"ways", 5}});

  run.append_metrics({{"iteration", 100}, {"loss", 1.25}, {"accuracy", 0.5}});
  run.append_metrics({{"iteration", 200}, {"loss", std::nan("")}, {"note", "a\nb"}});
  run.append_metrics({{"validation", {{"accuracy", 0.9}, {"ci95", 0.01}}}});
  std::istringstream lines(read_text(run.file("metrics.jsonl")));
  std::vector<json> parsed;
  for (std::string line; std::getline(lines, line);) parsed.push_back(json::parse(line));
  REQUIRE(parsed.size() == 3);
  CHECK(parsed[0]["iteration"] == 100);
  CHECK(parsed[1]["loss"].is_null());  // NaN has no JSON spelling
  CHECK(parsed[1]["note"] == "a\nb");
  CHECK(parsed[2]["validation"]["accuracy"] == 0.9);

  const std::vector<std::string> files = [&] {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(run.path())) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }();
  CHECK(files == std::vector<std::string>{"config.json", "metrics.jsonl"});  // no temporary left

  // Opening the existing folder without create.
  const io::RunDir again(run.path(), /*create=*/false);
  CHECK(read_text(again.file("metrics.jsonl")) == read_text(run.file("metrics.jsonl")));
}

TEST_CASE("io: run directory errors name the folder and the problem") {
  TempDir dir("metafew-io-config");
  const std::string plain = dir.file("plain");
  write_text(plain, "not a folder");

  std::string msg = error_of([&] { io::RunDir(plain + "/run", true); });
  INFO(msg);
  CHECK(msg.rfind("run directory " + plain + "/run: cannot create it: ", 0) == 0);
  CHECK(contains(msg, "(" + plain + " is a file, not a folder)"));

  CHECK(error_of([&] { io::RunDir(plain, true); }) ==
        "run directory " + plain + ": exists but is not a folder");
  CHECK(error_of([&] { io::RunDir(plain, false); }) ==
        "run directory " + plain + ": exists but is not a folder");
  CHECK(error_of([&] { io::RunDir(dir.file("absent"), false); }) ==
        "run directory " + dir.file("absent") + ": does not exist");
  CHECK(dir.listing() == std::vector<std::string>{"plain"});
}

}  // namespace metafew::testing
