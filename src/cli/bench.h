#pragma once
namespace metafew::cli {
// metafew bench: measured speed of meta-iterations on this CPU. See `metafew bench --help`.
int run_bench(int argc, char** argv);
}  // namespace metafew::cli
