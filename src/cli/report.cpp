#include "cli/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <tuple>

#include "cli/common.h"
#include "core/version.h"
#include "io/run_dir.h"

namespace metafew::cli {

namespace {

namespace fs = std::filesystem;

// Note [Report page]: `metafew report` reads what runs leave in their folders (config.json, metrics.jsonl,
// and evals.jsonl from eval: Note [Recorded evaluations] in eval.cpp) and writes one HTML file that needs
// nothing else: SVG drawn inline, CSS in the page, no script, no font or image fetched, so it opens the same
// from a laptop, a mail attachment or a cluster's shared folder. Every chart overlays all runs, one colour
// per run throughout the page. The curves are the logged windows of metrics.jsonl (means over log_every
// iterations), drawn as they are: no smoothing that would hide a spike. Elements carry data-run and
// data-metric attributes (and data-points, the number of points drawn), which the browser test reads back
// from the rendered DOM.

struct Run {
  std::string name, path;
  json config;
  std::vector<json> train, val;  // metrics lines: training windows, validations
  std::vector<json> evals;       // evals.jsonl lines
  int64_t skipped_lines = 0;     // metrics lines that are not JSON objects (a line cut by a kill)
};

struct ResultFile {
  std::string name, path;
  json result;  // eval --json or adapt --json output
};

constexpr const char* kPalette[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e",
                                    "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"};
constexpr size_t kColours = sizeof kPalette / sizeof kPalette[0];

std::string html_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 && c != '\n' && c != '\t') {
          out += "?";  // control characters have no place in a page (and break XML-serialised DOM dumps)
        } else {
          out += c;
        }
    }
  }
  return out;
}

std::string fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

// A coordinate with two decimals: enough on a 600-pixel chart, and a short page.
std::string coord(double v) { return fmt("%.2f", v); }

json read_json_file(const std::string& path, const std::string& who) {
  std::ifstream in(path, std::ios::binary);
  MF_CHECK(in, who, ": cannot read ", path);
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return json::parse(ss.str());
  } catch (const json::parse_error& e) {
    throw Error(detail::concat(who, ": ", path, " is not JSON (", e.what(), ")"));
  }
}

// JSON lines of `path` that parse as objects; counts those that do not.
std::vector<json> read_json_lines(const std::string& path, int64_t* skipped) {
  std::vector<json> lines;
  std::ifstream in(path, std::ios::binary);
  if (!in) return lines;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      ++*skipped;
      continue;
    }
    lines.push_back(std::move(j));
  }
  return lines;
}

Run load_run(const std::string& path) {
  std::error_code ec;
  MF_USAGE_CHECK(fs::is_regular_file(fs::path(path) / "config.json", ec), "report: ", path,
                 " is not a run folder (it has no config.json; give folders made by meta-train, or eval/adapt "
                 "--json result files)");
  Run r;
  r.path = path;
  r.config = read_json_file((fs::path(path) / "config.json").string(), "report");
  MF_USAGE_CHECK(r.config.is_object(), "report: ", path, "/config.json is not a JSON object");
  for (json& l : read_json_lines((fs::path(path) / "metrics.jsonl").string(), &r.skipped_lines)) {
    if (!l.contains("iteration") || !l["iteration"].is_number()) {
      ++r.skipped_lines;
      continue;
    }
    (l.contains("split") ? r.val : r.train).push_back(std::move(l));
  }
  for (json& l : read_json_lines((fs::path(path) / "evals.jsonl").string(), &r.skipped_lines))
    r.evals.push_back(std::move(l));
  return r;
}

// Short names: the folder's own name, or more of its path where two runs share one.
void name_runs(std::vector<Run>& runs) {
  for (Run& r : runs) {
    fs::path p = fs::path(r.path).lexically_normal();
    if (p.filename().empty()) p = p.parent_path();
    r.name = p.filename().string();
  }
  for (Run& r : runs) {
    const auto same = std::count_if(runs.begin(), runs.end(), [&](const Run& o) { return o.name == r.name; });
    if (same > 1) r.name = fs::path(r.path).lexically_normal().string();
  }
}

double number_or_nan(const json& line, const std::string& key) {
  const auto it = line.find(key);
  return it != line.end() && it->is_number() ? it->get<double>() : std::nan("");
}

// ---- charts ----

struct Series {
  std::string run;
  std::string colour;
  std::vector<double> x, y, lo, hi;  // lo/hi: an interval band (validation), empty when none
};

// Round numbers for an axis from lo to hi: about `target` ticks at 1, 2 or 5 times a power of ten.
std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!(hi > lo)) return {lo};
  const double raw = (hi - lo) / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  std::vector<double> ticks;
  for (double t = std::ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push_back(std::abs(t) < step * 1e-9 ? 0 : t);
  return ticks;
}

std::string tick_label(double v, double step) {
  const double a = std::abs(v);
  if (a >= 10000) return fmt("%.0fk", v / 1000);
  if (step >= 1 || v == 0) return fmt("%.0f", v);
  const int decimals = std::min(6, static_cast<int>(std::ceil(-std::log10(step))));
  char f[16];
  std::snprintf(f, sizeof f, "%%.%df", decimals);
  return fmt(f, v);
}

// One line chart (every run's series over iterations), as an SVG figure.
std::string line_chart(const std::string& metric, const std::string& title, const std::string& unit,
                       const std::vector<Series>& series) {
  constexpr double W = 560, H = 300, L = 76, R = 16, T = 30, B = 40;  // L: room for "0.00104" and the unit
  std::ostringstream o;
  o << "<figure class=\"chart\" data-metric=\"" << metric << "\"><svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 "
    << W << " " << H << "\" width=\"" << W << "\" height=\"" << H << "\" role=\"img\" aria-label=\"" << html_escape(title)
    << "\">";
  o << "<text class=\"title\" x=\"" << L << "\" y=\"18\">" << html_escape(title) << "</text>";
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  size_t points = 0;
  for (const Series& s : series)
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.y[i])) continue;
      x0 = std::min(x0, s.x[i]), x1 = std::max(x1, s.x[i]);
      const double lo = s.lo.empty() || !std::isfinite(s.lo[i]) ? s.y[i] : s.lo[i];
      const double hi = s.hi.empty() || !std::isfinite(s.hi[i]) ? s.y[i] : s.hi[i];
      y0 = std::min(y0, lo), y1 = std::max(y1, hi);
      ++points;
    }
  if (points == 0) {
    o << "<text class=\"empty\" x=\"" << W / 2 << "\" y=\"" << H / 2 << "\" text-anchor=\"middle\">no " << html_escape(title)
      << " logged</text></svg></figure>\n";
    return o.str();
  }
  if (x1 == x0) x0 -= 1, x1 += 1;
  if (y1 == y0) {
    const double pad = y0 == 0 ? 1 : std::abs(y0) * 0.05;
    y0 -= pad, y1 += pad;
  } else {
    const double pad = (y1 - y0) * 0.04;
    y0 -= pad, y1 += pad;
  }
  if (x0 > 0 && x0 < (x1 - x0) * 0.2) x0 = 0;  // iterations from the start
  const auto px = [&](double x) { return L + (x - x0) / (x1 - x0) * (W - L - R); };
  const auto py = [&](double y) { return T + (y1 - y) / (y1 - y0) * (H - T - B); };
  o << "<g class=\"grid\">";
  const std::vector<double> yt = nice_ticks(y0, y1, 5), xt = nice_ticks(x0, x1, 6);
  const double ystep = yt.size() > 1 ? yt[1] - yt[0] : 1, xstep = xt.size() > 1 ? xt[1] - xt[0] : 1;
  for (double t : yt) {
    o << "<line x1=\"" << L << "\" x2=\"" << W - R << "\" y1=\"" << coord(py(t)) << "\" y2=\"" << coord(py(t)) << "\"/>";
    o << "<text x=\"" << L - 6 << "\" y=\"" << coord(py(t) + 4) << "\" text-anchor=\"end\">" << tick_label(t, ystep)
      << "</text>";
  }
  for (double t : xt) {
    o << "<line x1=\"" << coord(px(t)) << "\" x2=\"" << coord(px(t)) << "\" y1=\"" << T << "\" y2=\"" << H - B << "\"/>";
    o << "<text x=\"" << coord(px(t)) << "\" y=\"" << H - B + 16 << "\" text-anchor=\"middle\">" << tick_label(t, xstep)
      << "</text>";
  }
  o << "</g><rect class=\"frame\" x=\"" << L << "\" y=\"" << T << "\" width=\"" << W - L - R << "\" height=\""
    << H - T - B << "\"/>";
  o << "<text class=\"axis\" x=\"" << (L + W - R) / 2 << "\" y=\"" << H - 6 << "\" text-anchor=\"middle\">iteration</text>";
  o << "<text class=\"axis\" transform=\"translate(12," << (T + H - B) / 2 << ") rotate(-90)\" text-anchor=\"middle\">"
    << html_escape(unit) << "</text>";
  for (const Series& s : series) {
    // The interval band first, under every line.
    if (!s.lo.empty()) {
      std::ostringstream d;
      std::vector<size_t> ok;
      for (size_t i = 0; i < s.x.size(); ++i)
        if (std::isfinite(s.lo[i]) && std::isfinite(s.hi[i])) ok.push_back(i);
      if (!ok.empty()) {
        for (size_t k = 0; k < ok.size(); ++k)
          d << (k ? "L" : "M") << coord(px(s.x[ok[k]])) << "," << coord(py(s.hi[ok[k]]));
        for (size_t k = ok.size(); k-- > 0;) d << "L" << coord(px(s.x[ok[k]])) << "," << coord(py(s.lo[ok[k]]));
        o << "<path class=\"band\" data-run=\"" << html_escape(s.run) << "\" data-metric=\"" << metric << "\" fill=\""
          << s.colour << "\" d=\"" << d.str() << "Z\"/>";
      }
    }
  }
  for (const Series& s : series) {
    std::ostringstream d;
    size_t n = 0;
    bool pen_down = false;
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.y[i])) {
        pen_down = false;  // a gap (a null in metrics.jsonl: a non-finite value)
        continue;
      }
      d << (pen_down ? "L" : "M") << coord(px(s.x[i])) << "," << coord(py(s.y[i]));
      pen_down = true;
      ++n;
    }
    if (n == 0) continue;
    o << "<path class=\"curve\" data-run=\"" << html_escape(s.run) << "\" data-metric=\"" << metric
      << "\" data-points=\"" << n << "\" stroke=\"" << s.colour << "\" d=\"" << d.str() << "\"/>";
    if (n == 1)  // a single point draws no line: mark it
      o << "<circle cx=\"" << coord(px(s.x.back())) << "\" cy=\"" << coord(py(s.y.back())) << "\" r=\"3\" fill=\""
        << s.colour << "\"/>";
  }
  o << "</svg></figure>\n";
  return o.str();
}

// Per-class accuracy as horizontal bars: every class when there are few, else the least recognised.
std::string class_bars(const json& per_class, const std::string& colour, const std::string& run) {
  std::vector<std::pair<std::string, double>> acc;
  for (const auto& [name, v] : per_class.items())
    if (v.is_object() && v.contains("accuracy") && v["accuracy"].is_number()) acc.push_back({name, v["accuracy"]});
  if (acc.empty()) return "";
  std::stable_sort(acc.begin(), acc.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
  const size_t shown = std::min<size_t>(acc.size(), 25);
  constexpr double W = 560, L = 230, R = 60, row = 16;
  const double H = 34 + row * static_cast<double>(shown);
  std::ostringstream o;
  o << "<figure class=\"bars\" data-run=\"" << html_escape(run) << "\" data-metric=\"per_class\" data-classes=\""
    << acc.size() << "\"><svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 " << W << " " << H << "\" width=\"" << W
    << "\" height=\"" << H << "\">";
  o << "<text class=\"title\" x=\"4\" y=\"16\">"
    << (shown < acc.size() ? detail::concat("per-class accuracy: the ", shown, " least recognised of ", acc.size(), " classes")
                           : detail::concat("per-class accuracy (", acc.size(), " classes)"))
    << "</text>";
  for (size_t i = 0; i < shown; ++i) {
    const double y = 26 + row * static_cast<double>(i);
    std::string label = acc[i].first;
    if (label.size() > 36) label = "..." + label.substr(label.size() - 33);
    o << "<text x=\"" << L - 6 << "\" y=\"" << coord(y + 11) << "\" text-anchor=\"end\">" << html_escape(label) << "</text>";
    o << "<rect class=\"bar-bg\" x=\"" << L << "\" y=\"" << coord(y + 2) << "\" width=\"" << W - L - R << "\" height=\""
      << row - 4 << "\"/>";
    o << "<rect x=\"" << L << "\" y=\"" << coord(y + 2) << "\" width=\"" << coord((W - L - R) * acc[i].second)
      << "\" height=\"" << row - 4 << "\" fill=\"" << colour << "\"/>";
    o << "<text x=\"" << W - R + 4 << "\" y=\"" << coord(y + 11) << "\">" << fmt("%.1f%%", 100 * acc[i].second) << "</text>";
  }
  o << "</svg></figure>\n";
  return o.str();
}

// A confusion matrix as a heat map: rows the true class, columns the predicted one. `cells[t][p]` counts
// queries; the diagonal (correct) and the rest (wrong) are shaded on their own scales so the errors show.
std::string heat_map(const std::vector<std::string>& classes, const std::vector<std::vector<int64_t>>& cells,
                     const std::string& title, const std::string& run) {
  const size_t n = classes.size();
  if (n == 0) return "";
  int64_t max_off = 0, max_diag = 0;
  for (size_t t = 0; t < n; ++t)
    for (size_t p = 0; p < n; ++p) {
      int64_t& top = t == p ? max_diag : max_off;
      top = std::max(top, cells[t][p]);
    }
  const double cell = std::clamp(360.0 / static_cast<double>(n), 8.0, 28.0);
  const double L = 190, T = 40, W = L + cell * static_cast<double>(n) + 80, H = T + cell * static_cast<double>(n) + 150;
  std::ostringstream o;
  o << "<figure class=\"heatmap\" data-run=\"" << html_escape(run) << "\" data-metric=\"confusion\" data-classes=\"" << n
    << "\"><svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 " << coord(W) << " " << coord(H) << "\" width=\""
    << coord(W) << "\" height=\"" << coord(H) << "\">";
  o << "<text class=\"title\" x=\"4\" y=\"16\">" << html_escape(title) << "</text>";
  o << "<text class=\"axis\" x=\"4\" y=\"32\">rows: true class; columns: predicted</text>";
  for (size_t t = 0; t < n; ++t) {
    std::string label = classes[t];
    if (label.size() > 30) label = "..." + label.substr(label.size() - 27);
    const double y = T + cell * static_cast<double>(t);
    o << "<text x=\"" << L - 4 << "\" y=\"" << coord(y + cell / 2 + 4) << "\" text-anchor=\"end\">" << html_escape(label)
      << "</text>";
    o << "<text transform=\"translate(" << coord(L + cell * static_cast<double>(t) + cell / 2 + 4) << ","
      << coord(T + cell * static_cast<double>(n) + 4) << ") rotate(60)\">" << html_escape(label) << "</text>";
    for (size_t p = 0; p < n; ++p) {
      const int64_t v = cells[t][p];
      const double share = t == p ? (max_diag ? static_cast<double>(v) / max_diag : 0)
                                   : (max_off ? static_cast<double>(v) / max_off : 0);
      const std::string fill = v == 0 ? "#f4f4f4"
                               : t == p ? detail::concat("rgba(44,160,44,", fmt("%.2f", 0.15 + 0.85 * share), ")")
                                        : detail::concat("rgba(214,39,40,", fmt("%.2f", 0.15 + 0.85 * share), ")");
      o << "<rect x=\"" << coord(L + cell * static_cast<double>(p)) << "\" y=\"" << coord(y) << "\" width=\""
        << coord(cell - 1) << "\" height=\"" << coord(cell - 1) << "\" fill=\"" << fill << "\"><title>"
        << html_escape(classes[t]) << " -> " << html_escape(classes[p]) << ": " << v << "</title></rect>";
    }
  }
  o << "</svg></figure>\n";
  return o.str();
}

// The confusions of an evaluation: adapt's full matrix, or, for eval's sparse list over a split's many
// classes, the matrix among the classes of the most frequent confusions (at most 20), with their correct
// queries on the diagonal. Classes are taken a confusion at a time (both its true and its predicted class),
// most frequent first: choosing classes by how often each is involved would, over a thousand classes with
// a few errors each, pick 20 classes whose errors all lead outside the 20, and the matrix would show none.
std::string confusion_of(const json& result, const std::string& run) {
  if (result.contains("confusion") && result["confusion"].is_object()) {
    const json& c = result["confusion"];
    if (!c.contains("classes") || !c.contains("matrix") || !c["classes"].is_array() || !c["matrix"].is_array()) return "";
    std::vector<std::string> classes;
    for (const json& name : c["classes"]) classes.push_back(name.is_string() ? name.get<std::string>() : name.dump());
    const size_t n = std::min<size_t>(classes.size(), 60);
    classes.resize(n);
    std::vector<std::vector<int64_t>> cells(n, std::vector<int64_t>(n, 0));
    for (size_t t = 0; t < n && t < c["matrix"].size(); ++t)
      for (size_t p = 0; p < n && c["matrix"][t].is_array() && p < c["matrix"][t].size(); ++p)
        if (c["matrix"][t][p].is_number_integer()) cells[t][p] = c["matrix"][t][p];
    return heat_map(classes, cells, detail::concat("confusion matrix (", n, " classes)"), run);
  }
  if (!result.contains("confusions") || !result["confusions"].is_array() || result["confusions"].empty()) return "";
  struct Pair {
    std::string truth, predicted;
    int64_t count;
  };
  std::vector<Pair> pairs;
  for (const json& e : result["confusions"])
    if (e.is_array() && e.size() == 3 && e[0].is_string() && e[1].is_string() && e[2].is_number_integer())
      pairs.push_back({e[0], e[1], e[2]});
  std::stable_sort(pairs.begin(), pairs.end(), [](const Pair& a, const Pair& b) {
    return a.count != b.count ? a.count > b.count : std::tie(a.truth, a.predicted) < std::tie(b.truth, b.predicted);
  });
  std::set<std::string> chosen;
  for (const Pair& p : pairs) {
    const size_t added = !chosen.count(p.truth) + (p.predicted != p.truth && !chosen.count(p.predicted));
    if (chosen.size() + added > 20) continue;
    chosen.insert(p.truth);
    chosen.insert(p.predicted);
  }
  std::vector<std::pair<std::string, int64_t>> order;
  for (const std::string& name : chosen) order.emplace_back(name, 0);
  std::sort(order.begin(), order.end());  // by name: an alphabet's characters side by side
  std::vector<std::string> classes;
  std::map<std::string, size_t> index;
  for (const auto& [name, count] : order) index[name] = classes.size(), classes.push_back(name);
  std::vector<std::vector<int64_t>> cells(classes.size(), std::vector<int64_t>(classes.size(), 0));
  for (const json& e : result["confusions"])
    if (e.is_array() && e.size() == 3 && e[0].is_string() && e[1].is_string() && e[2].is_number_integer() &&
        index.count(e[0]) && index.count(e[1]))
      cells[index[e[0]]][index[e[1]]] += e[2].get<int64_t>();
  if (result.contains("per_class") && result["per_class"].is_object())
    for (const auto& [name, i] : index) {
      const auto it = result["per_class"].find(name);
      if (it != result["per_class"].end() && it->is_object() && it->contains("correct") && (*it)["correct"].is_number_integer())
        cells[i][i] = (*it)["correct"];
    }
  return heat_map(classes, cells,
                  detail::concat("confusions among the ", classes.size(), " classes of the most frequent confusions (of ",
                                 result.contains("per_class") ? result["per_class"].size() : 0, ")"),
                  run);
}

std::string value_text(const json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

std::string percent_or_dash(const json& r, const std::string& key) {
  return r.contains(key) && r[key].is_number() ? fmt("%.2f%%", 100 * r[key].get<double>()) : "-";
}

// One evaluation's summary line and its per-class and confusion figures.
std::string eval_block(const json& r, const std::string& run, const std::string& colour) {
  std::ostringstream o;
  o << "<div class=\"eval\" data-run=\"" << html_escape(run) << "\">";
  std::string headline;
  if (r.contains("mse") && r["mse"].is_number()) {
    headline = detail::concat("MSE ", fmt("%.4f", r["mse"].get<double>()));
  } else if (r.contains("accuracy") && r["accuracy"].is_number()) {
    headline = "accuracy " + percent_or_dash(r, "accuracy");
    if (r.contains("ci95") && r["ci95"].is_number()) headline += " &plusmn; " + fmt("%.2f%%", 100 * r["ci95"].get<double>());
  }
  std::vector<std::string> parts;
  if (r.contains("checkpoint")) parts.push_back(html_escape(fs::path(value_text(r["checkpoint"])).filename().string()));
  if (r.contains("checkpoint_iteration") && r["checkpoint_iteration"].is_number())
    parts.push_back(detail::concat("iteration ", r["checkpoint_iteration"].get<int64_t>()));
  if (r.contains("split")) parts.push_back(html_escape(value_text(r["split"])) + " split");
  if (r.contains("ways") && r.contains("shots"))
    parts.push_back(detail::concat(value_text(r["ways"]), "-way ", value_text(r["shots"]), "-shot"));
  if (r.contains("queries")) parts.push_back(value_text(r["queries"]) + " queries per class");
  if (r.contains("episodes")) parts.push_back(value_text(r["episodes"]) + " episodes");
  if (r.contains("steps")) parts.push_back(value_text(r["steps"]) + " steps");
  if (r.contains("bn")) parts.push_back(html_escape(value_text(r["bn"])) + " batch norm");
  if (r.contains("predictions") && r["predictions"].is_array())
    parts.push_back(detail::concat(r["predictions"].size(), " images"));
  std::string detail_line;
  for (size_t i = 0; i < parts.size(); ++i) detail_line += (i ? ", " : "") + parts[i];
  o << "<p><b>" << (headline.empty() ? "no accuracy (unlabelled queries)" : headline) << "</b> &mdash; " << detail_line;
  if (r.contains("top_k") && r.contains("top_k_accuracy") && r["top_k_accuracy"].is_number())
    o << "; top-" << value_text(r["top_k"]) << " accuracy " << percent_or_dash(r, "top_k_accuracy");
  o << "</p><div class=\"row\">";
  if (r.contains("per_class") && r["per_class"].is_object()) o << class_bars(r["per_class"], colour, run);
  o << confusion_of(r, run) << "</div></div>\n";
  return o.str();
}

std::string settings_rows(const std::vector<Run>& runs, const std::set<std::string>& keys) {
  std::ostringstream o;
  o << "<table class=\"settings\"><thead><tr><th>setting</th>";
  for (size_t i = 0; i < runs.size(); ++i)
    o << "<th><span class=\"swatch\" style=\"background:" << kPalette[i % kColours] << "\"></span>"
      << html_escape(runs[i].name) << "</th>";
  o << "</tr></thead><tbody>";
  for (const std::string& k : keys) {
    o << "<tr><td>" << html_escape(k) << "</td>";
    for (const Run& r : runs) o << "<td>" << html_escape(r.config.contains(k) ? value_text(r.config[k]) : "(absent)") << "</td>";
    o << "</tr>";
  }
  o << "</tbody></table>\n";
  return o.str();
}

// The settings that differ between the runs first, then every setting in a folded section.
std::string settings_section(const std::vector<Run>& runs) {
  std::set<std::string> keys, differing;
  for (const Run& r : runs)
    for (const auto& [k, v] : r.config.items()) keys.insert(k);
  for (const std::string& k : keys)
    for (const Run& r : runs)
      if (r.config.value(k, json()) != runs[0].config.value(k, json())) differing.insert(k);
  std::ostringstream o;
  if (runs.size() > 1) {
    if (differing.empty())
      o << "<p class=\"meta\">The runs have the same settings.</p>\n";
    else
      o << "<p class=\"meta\">" << differing.size() << " of " << keys.size() << " settings differ:</p>\n"
        << "<div class=\"differs\">" << settings_rows(runs, differing) << "</div>";
  }
  o << "<details" << (runs.size() == 1 ? " open" : "") << "><summary>all " << keys.size()
    << " settings</summary>" << settings_rows(runs, keys) << "</details>\n";
  return o.str();
}

// The run's one-line summary: algorithm, task, progress and best validation.
std::string run_summary(const Run& r, const std::string& colour) {
  const json& c = r.config;
  std::ostringstream o;
  o << "<li data-run=\"" << html_escape(r.name) << "\"><span class=\"swatch\" style=\"background:" << colour
    << "\"></span><b>" << html_escape(r.name) << "</b>: ";
  if (c.contains("algo")) o << html_escape(value_text(c["algo"]));
  if (c.contains("model")) o << " " << html_escape(value_text(c["model"]));
  if (c.contains("ways") && c.contains("shots")) o << ", " << value_text(c["ways"]) << "-way " << value_text(c["shots"]) << "-shot";
  if (c.contains("data")) o << " on " << html_escape(value_text(c["data"]));
  const int64_t done = r.train.empty() ? 0 : r.train.back()["iteration"].get<int64_t>();
  o << "; " << done;
  if (c.contains("iterations")) o << " of " << value_text(c["iterations"]);
  o << " iterations logged";
  double best = -INFINITY;
  int64_t best_it = 0;
  bool regression = false;
  for (const json& v : r.val) {
    double m = number_or_nan(v, "val_accuracy");
    if (!std::isfinite(m)) {
      m = number_or_nan(v, "val_neg_mse");
      regression = std::isfinite(m);
    }
    if (std::isfinite(m) && m > best) best = m, best_it = v["iteration"].get<int64_t>();
  }
  if (std::isfinite(best))
    o << "; best validation " << (regression ? fmt("MSE %.4f", -best) : fmt("%.2f%%", 100 * best)) << " at iteration "
      << best_it;
  o << "; " << r.evals.size() << (r.evals.size() == 1 ? " evaluation" : " evaluations") << " recorded";
  if (r.skipped_lines > 0) o << " (" << r.skipped_lines << " unreadable log lines skipped)";
  o << "</li>\n";
  return o.str();
}

const char* kStyle = R"(body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:16px 0 4px}.meta{color:#666}ul.runs{list-style:none;padding:0}ul.runs li{margin:3px 0}
.swatch{display:inline-block;width:12px;height:12px;margin-right:6px;border-radius:2px;vertical-align:-1px}
.charts,.row{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0}
svg text{font:11px system-ui,sans-serif;fill:#333}svg text.title{font-size:13px;font-weight:600}
svg .grid line{stroke:#e6e6e6}svg .frame{fill:none;stroke:#999}svg .curve{fill:none;stroke-width:1.6}
svg .band{opacity:.18;stroke:none}svg .bar-bg{fill:#f1f1f1}svg text.empty{fill:#999}
table.settings{border-collapse:collapse;font-size:12px}table.settings td,table.settings th{border:1px solid #ddd;padding:2px 8px;text-align:left}
.differs table.settings td{background:#fff4cc}summary{cursor:pointer;margin:8px 0}.eval{margin:8px 0 20px})";

std::string build_page(const std::vector<Run>& runs, const std::vector<ResultFile>& files) {
  std::ostringstream o;
  o << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>metafew report</title><style>" << kStyle
    << "</style></head><body>\n";
  o << "<h1>metafew report</h1><p class=\"meta\">metafew " << kVersion << "; " << runs.size()
    << (runs.size() == 1 ? " run" : " runs") << ", " << files.size() << " result files</p>\n";
  if (!runs.empty()) {
    o << "<ul class=\"runs\">";
    for (size_t i = 0; i < runs.size(); ++i) o << run_summary(runs[i], kPalette[i % kColours]);
    o << "</ul>\n<h2>Training</h2><div class=\"charts\">\n";
    // metric key in metrics.jsonl -> chart
    struct Chart {
      std::string metric, title, unit;
      std::vector<std::string> keys;  // the first present in a run's lines
      double scale;                   // accuracies in percent, MSE from -MSE
      bool validation;
    };
    const std::vector<Chart> charts = {
        {"loss", "training loss (mean over each log window)", "loss", {"loss"}, 1, false},
        {"accuracy", "training accuracy (query sets)", "accuracy %", {"accuracy"}, 100, false},
        {"mse", "training MSE (query sets)", "MSE", {"neg_mse"}, -1, false},
        {"val_accuracy", "validation accuracy with its 95% interval", "accuracy %", {"val_accuracy"}, 100, true},
        {"val_mse", "validation MSE with its 95% interval", "MSE", {"val_neg_mse"}, -1, true},
        {"lr", "outer learning rate", "learning rate", {"lr"}, 1, false},
        {"throughput", "throughput (tasks/s; images/s when pretraining)", "per second",
         {"tasks_per_second", "images_per_second"}, 1, false},
        {"rss_mb", "resident memory", "MB", {"rss_mb"}, 1, false},
    };
    for (const Chart& ch : charts) {
      std::vector<Series> series;
      bool any = false;
      for (size_t i = 0; i < runs.size(); ++i) {
        Series s{runs[i].name, kPalette[i % kColours], {}, {}, {}, {}};
        for (const json& l : ch.validation ? runs[i].val : runs[i].train) {
          for (const std::string& key : ch.keys) {
            if (!l.contains(key)) continue;
            any = true;
            const double y = number_or_nan(l, key) * ch.scale;
            s.x.push_back(l["iteration"].get<double>());
            s.y.push_back(y);
            if (ch.validation) {
              const double ci = number_or_nan(l, "val_ci95") * std::abs(ch.scale);
              s.lo.push_back(y - ci);
              s.hi.push_back(y + ci);
            }
            break;
          }
        }
        series.push_back(std::move(s));
      }
      // A regression chart for classification runs (or the other way round) would only say "nothing".
      if (any || ch.metric == "loss") o << line_chart(ch.metric, ch.title, ch.unit, series);
    }
    o << "</div>\n";
    o << "<h2>Settings</h2>\n" << settings_section(runs);
    o << "<h2>Evaluations</h2>\n";
    bool any_eval = false;
    for (size_t i = 0; i < runs.size(); ++i) {
      if (runs[i].evals.empty()) continue;
      any_eval = true;
      o << "<h3><span class=\"swatch\" style=\"background:" << kPalette[i % kColours] << "\"></span>"
        << html_escape(runs[i].name) << "</h3>\n";
      for (const json& e : runs[i].evals) o << eval_block(e, runs[i].name, kPalette[i % kColours]);
    }
    if (!any_eval)
      o << "<p class=\"meta\">No evaluation recorded: <code>metafew eval --checkpoint RUN</code> records one in "
           "RUN/evals.jsonl.</p>\n";
  }
  if (!files.empty()) {
    o << "<h2>Results from files</h2>\n";
    for (const ResultFile& f : files) {
      o << "<h3>" << html_escape(f.name) << "</h3>\n";
      o << eval_block(f.result, f.name, kPalette[0]);
    }
  }
  o << "</body></html>\n";
  return o.str();
}

}  // namespace

int run_report(int argc, char** argv) {
  cxxopts::Options opts("metafew report",
                        "One self-contained HTML page (no network, no scripts) with the training curves of the given "
                        "run folders overlaid, their settings side by side and their recorded evaluations "
                        "(eval records each in RUN/evals.jsonl); eval/adapt --json result files may be given too.");
  opts.set_width(100);
  opts.positional_help("RUN... [RESULT.json...]");
  opts.add_options()("h,help", "show this help")(
      "out", "the HTML file to write", cxxopts::value<std::string>()->default_value("report.html"))(
      "inputs", "run folders and result files", cxxopts::value<std::vector<std::string>>());
  opts.parse_positional({"inputs"});
  cxxopts::ParseResult args = parse_options(opts, argc, argv, "report");
  if (args.count("help")) {
    std::printf("%s\n", opts.help().c_str());
    return 0;
  }
  MF_USAGE_CHECK(args.count("inputs"), "report: give at least one run folder (made by meta-train) or result file");
  std::vector<Run> runs;
  std::vector<ResultFile> files;
  for (const std::string& p : args["inputs"].as<std::vector<std::string>>()) {
    const bool folder = io::require_existing_path(p, "report: " + p + ": ");
    if (folder) {
      runs.push_back(load_run(p));
      continue;
    }
    json r = read_json_file(p, "report");
    MF_USAGE_CHECK(r.is_object() && (r.contains("accuracy") || r.contains("mse") || r.contains("predictions")), "report: ",
                   p, " is not an eval or adapt result (expected the JSON object of `eval --json` or `adapt --json`)");
    files.push_back({fs::path(p).filename().string(), p, std::move(r)});
  }
  name_runs(runs);
  const std::string out = args["out"].as<std::string>();
  const std::string page = build_page(runs, files);
  io::write_file_atomic(out, page, "report --out " + out);
  int64_t evals = 0, skipped = 0;
  for (const Run& r : runs) evals += static_cast<int64_t>(r.evals.size()), skipped += r.skipped_lines;
  std::printf("report: %zu %s, %lld recorded evaluations, %zu result files -> %s (%zu bytes)\n", runs.size(),
              runs.size() == 1 ? "run" : "runs", static_cast<long long>(evals), files.size(), out.c_str(), page.size());
  if (skipped > 0)
    std::fprintf(stderr, "warning: report: %lld log lines were not JSON objects and were skipped\n",
                 static_cast<long long>(skipped));
  return 0;
}

}  // namespace metafew::cli
