#pragma once
namespace metafew::cli {
// `metafew data --data PATH [--json] [--layout auto|omniglot|folder] [--cache-dir DIR] ...`: opens a dataset
// (a folder or builtin:glyphs; builtin:sinusoid is described) and prints the layout detected, each split with
// its class and image counts, the image size, the preprocessing, the cache state and what the scan skipped.
// With --json one object: {"source", "layout", "image", "preprocessing", "cache", "load_seconds", "base",
// "splits": {"name": {"classes": C, "images": I, "rotated": b}}, "split_order", "skipped"}.
// --write-split FILE records the class split for reuse with --split-file. Returns the exit code.
int run_data(int argc, char** argv);
}  // namespace metafew::cli
