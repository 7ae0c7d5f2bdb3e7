#pragma once
namespace metafew::cli {
// metafew eval: the standard protocol (episodes, mean accuracy, 95% interval). See `metafew eval --help`.
int run_eval(int argc, char** argv);
}  // namespace metafew::cli
