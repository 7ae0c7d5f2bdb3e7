#pragma once
namespace metafew::cli {
// metafew meta-train: see `metafew meta-train --help`.
int run_meta_train(int argc, char** argv);
}  // namespace metafew::cli
