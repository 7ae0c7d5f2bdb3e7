// metafew report (Note [Report page] in src/cli/report.cpp): the page's content from two real runs and a
// recorded evaluation, its refusals, and a render in a real browser (headless Chromium, which .ci/run
// installs; `make test` leaves that one test out, saying so, where chromium is missing).
#include <doctest/doctest.h>

#include <regex>

#include "data/image.h"
#include "support/cli_run.h"

namespace metafew::testing::cli {
namespace {

// Two short ProtoNets runs that differ in the outer learning rate, the first evaluated once.
struct TwoRuns {
  TempDir tmp;
  fs::path a = tmp.path / "runA", b = tmp.path / "runB";
  int64_t train_lines = 0, val_lines = 0;

  TwoRuns() {
    const std::string common = small("--algo protonet --iterations 60 --val-every 20 --log-every 10 --out ");
    Result ra = metafew("meta-train " + common + a.string(), tmp.path);
    INFO(ra.err);
    REQUIRE(ra.code == 0);
    Result rb = metafew("meta-train " + common + b.string() + " --outer-lr 0.003", tmp.path);
    INFO(rb.err);
    REQUIRE(rb.code == 0);
    Result ev = metafew("eval --checkpoint " + a.string() + " --episodes 20 --threads 2", tmp.path);
    INFO(ev.err);
    REQUIRE(ev.code == 0);
    std::istringstream lines(slurp(a / "metrics.jsonl"));
    for (std::string l; std::getline(lines, l);) ++(json::parse(l).contains("split") ? val_lines : train_lines);
  }
};

// The curves of `html` as (run, metric) -> points drawn.
std::map<std::pair<std::string, std::string>, int64_t> curves_in(const std::string& html) {
  std::map<std::pair<std::string, std::string>, int64_t> found;
  const std::regex curve(R"re(<path class="curve" data-run="([^"]*)" data-metric="([^"]*)" data-points="(\d+)")re");
  for (auto it = std::sregex_iterator(html.begin(), html.end(), curve); it != std::sregex_iterator(); ++it)
    found[{(*it)[1].str(), (*it)[2].str()}] = std::stoll((*it)[3].str());
  return found;
}

void check_curves(const std::string& html, const TwoRuns& runs) {
  const auto curves = curves_in(html);
  for (const char* run : {"runA", "runB"}) {
    for (const char* metric : {"loss", "accuracy", "lr", "throughput", "rss_mb"}) {
      CAPTURE(run);
      CAPTURE(metric);
      REQUIRE(curves.count({run, metric}) == 1);
      CHECK(curves.at({run, metric}) == runs.train_lines);
    }
    CAPTURE(run);
    REQUIRE(curves.count({run, "val_accuracy"}) == 1);
    CHECK(curves.at({run, "val_accuracy"}) == runs.val_lines);
  }
  CHECK(curves.size() == 12);
}

TEST_CASE("cli: report draws every run's curves, the differing settings and the recorded evaluation, offline") {
  TwoRuns runs;
  REQUIRE(runs.train_lines == 6);
  REQUIRE(runs.val_lines == 3);
  REQUIRE(fs::exists(runs.a / "evals.jsonl"));
  CHECK_FALSE(fs::exists(runs.b / "evals.jsonl"));
  const json recorded = json::parse(slurp(runs.a / "evals.jsonl"));
  CHECK(recorded["episodes"] == 20);
  CHECK(recorded["checkpoint_iteration"] == 60);
  CHECK(recorded["confusions"].is_array());

  const fs::path page = runs.tmp.path / "report.html";
  Result r = metafew("report " + runs.a.string() + " " + runs.b.string() + " --out " + page.string(), runs.tmp.path);
  INFO(r.err);
  REQUIRE(r.code == 0);
  CHECK(r.out.find("2 runs, 1 recorded evaluations") != std::string::npos);
  const std::string html = slurp(page);
  check_curves(html, runs);
  CHECK(html.find("class=\"band\" data-run=\"runA\" data-metric=\"val_accuracy\"") != std::string::npos);
  // The settings that differ, and only those, in the highlighted table.
  const size_t differs = html.find("<div class=\"differs\">");
  REQUIRE(differs != std::string::npos);
  const std::string differing = html.substr(differs, html.find("</div>", differs) - differs);
  CHECK(differing.find("outer_lr") != std::string::npos);
  CHECK(differing.find("<td>0.003</td>") != std::string::npos);
  CHECK(differing.find("inner_lr") == std::string::npos);
  CHECK(html.find("1 of ") != std::string::npos);
  // The evaluation: per-class bars and the confusions of runA.
  CHECK(html.find("data-run=\"runA\" data-metric=\"per_class\"") != std::string::npos);
  CHECK(html.find("data-run=\"runA\" data-metric=\"confusion\"") != std::string::npos);
  CHECK(html.find("data-run=\"runB\" data-metric=\"per_class\"") == std::string::npos);
  // Self-contained: nothing for a browser to fetch, nothing to run. (The SVG namespace is a name, not a fetch.)
  for (const char* needle : {"<script", "src=", "href=", "url(", "@import", "https:"}) {
    CAPTURE(needle);
    CHECK(html.find(needle) == std::string::npos);
  }
  std::string without_ns = html;
  for (size_t p; (p = without_ns.find("http://www.w3.org/2000/svg")) != std::string::npos;) without_ns.erase(p, 26);
  CHECK(without_ns.find("http:") == std::string::npos);

  // An eval --json / adapt --json result file is shown under its own heading.
  Result ev = metafew("eval --checkpoint " + runs.b.string() + " --episodes 10 --json --no-record", runs.tmp.path);
  REQUIRE(ev.code == 0);
  CHECK_FALSE(fs::exists(runs.b / "evals.jsonl"));
  const fs::path result = runs.tmp.path / "result.json";
  std::ofstream(result) << ev.out;
  Result r2 = metafew("report " + runs.b.string() + " " + result.string() + " --out " + page.string(), runs.tmp.path);
  INFO(r2.err);
  REQUIRE(r2.code == 0);
  const std::string html2 = slurp(page);
  CHECK(html2.find("Results from files") != std::string::npos);
  CHECK(html2.find("data-run=\"result.json\" data-metric=\"per_class\"") != std::string::npos);

  // Refusals name the input and what was expected.
  Result none = metafew("report", runs.tmp.path);
  CHECK(none.code == 2);
  CHECK(none.err.find("at least one run folder") != std::string::npos);
  Result missing = metafew("report " + (runs.tmp.path / "nope").string(), runs.tmp.path);
  CHECK(missing.code != 0);
  CHECK(missing.err.find("nope") != std::string::npos);
  Result not_run = metafew("report " + runs.tmp.path.string(), runs.tmp.path);
  CHECK(not_run.code == 2);
  CHECK(not_run.err.find("not a run folder (it has no config.json") != std::string::npos);
  Result bad_file = metafew("report " + (runs.a / "config.json").string(), runs.tmp.path);
  CHECK(bad_file.code == 2);
  CHECK(bad_file.err.find("is not an eval or adapt result") != std::string::npos);
  // A line cut by a kill is skipped with a warning, not fatal.
  std::ofstream(runs.b / "metrics.jsonl", std::ios::app) << "{\"iteration\": 7";
  Result cut = metafew("report " + runs.b.string() + " --out " + page.string(), runs.tmp.path);
  CHECK(cut.code == 0);
  CHECK(cut.err.find("1 log lines were not JSON objects") != std::string::npos);
  // A new run in the folder takes the old run's evaluations away with it.
  Result again = metafew("meta-train " + small("--algo protonet --iterations 2 --val-every 2 --out ") + runs.a.string() +
                             " --overwrite",
                         runs.tmp.path);
  INFO(again.err);
  REQUIRE(again.code == 0);
  CHECK_FALSE(fs::exists(runs.a / "evals.jsonl"));
}

// Note [Browser test]: the page is opened by Debian's chromium, headless, twice: once printing the DOM it
// built (the curves must be there as elements, with the run and metric they belong to and their point
// counts), once taking a screenshot, which must not be blank and must show both runs' colours.
TEST_CASE("cli: report renders in headless Chromium (screenshot and DOM)") {
  const int found = std::system("command -v chromium > /dev/null 2>&1");
  REQUIRE_MESSAGE(found == 0, "chromium is not installed (.ci/run installs it; `apt-get install chromium`)");
  TwoRuns runs;
  const fs::path page = runs.tmp.path / "report.html";
  Result r = metafew("report " + runs.a.string() + " " + runs.b.string() + " --out " + page.string(), runs.tmp.path);
  REQUIRE(r.code == 0);
  // --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start; the page is our own file.
  const std::string chromium = "chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars "
                               "--user-data-dir=" + (runs.tmp.path / "profile").string();
  const fs::path dom = runs.tmp.path / "dom.html", shot = runs.tmp.path / "shot.png";
  const std::string url = "file://" + page.string();
  REQUIRE(std::system((chromium + " --dump-dom " + url + " > " + dom.string() + " 2> /dev/null").c_str()) == 0);
  const std::string rendered = slurp(dom);
  REQUIRE(rendered.find("<h1>metafew report</h1>") != std::string::npos);
  check_curves(rendered, runs);
  REQUIRE(std::system((chromium + " --window-size=1200,1600 --screenshot=" + shot.string() + " " + url +
                       " > /dev/null 2>&1").c_str()) == 0);
  const data::DecodedImage img = data::decode_image_file(shot.string(), 3);
  CHECK(img.width == 1200);
  CHECK(img.height == 1600);
  int64_t inked = 0, blue = 0, red = 0;
  for (int64_t i = 0; i < img.width * img.height; ++i) {
    const uint8_t* p = img.hwc.data() + 3 * i;
    inked += p[0] < 200 || p[1] < 200 || p[2] < 200;
    blue += std::abs(p[0] - 0x1f) < 24 && std::abs(p[1] - 0x77) < 24 && std::abs(p[2] - 0xb4) < 24;  // runA's colour
    red += std::abs(p[0] - 0xd6) < 24 && std::abs(p[1] - 0x27) < 24 && std::abs(p[2] - 0x28) < 24;   // runB's colour
  }
  CAPTURE(inked);
  CAPTURE(blue);
  CAPTURE(red);
  CHECK(inked > img.width * img.height / 50);  // text, grids and curves: well above a blank page's none
  CHECK(blue > 500);
  CHECK(red > 500);
}

}  // namespace
}  // namespace metafew::testing::cli
