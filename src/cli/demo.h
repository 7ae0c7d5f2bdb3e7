#pragma once
namespace metafew::cli {
// Second-order MAML on the sinusoid family (meta-train's builtin:sinusoid recipe, no run folder): prints the
// post-adaptation MSE before and after meta-training on held-out tasks. Options: --iterations N (default
// 10000), --seed S (default 1), --threads T.
int run_demo(int argc, char** argv);
}  // namespace metafew::cli
