#pragma once
namespace metafew::cli {
// metafew report: one self-contained HTML page (inline SVG, no scripts, nothing fetched) with the training
// curves of one or more run folders overlaid, their settings side by side, and their recorded evaluations
// (per-class accuracy, confusions), plus any eval/adapt --json result files given. See `metafew report --help`.
int run_report(int argc, char** argv);
}  // namespace metafew::cli
