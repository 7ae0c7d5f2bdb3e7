#pragma once
namespace metafew::cli {
// Second-order MAML on the sinusoid family with an MLP 1-40-40-1: prints the post-adaptation MSE before and
// after meta-training on held-out tasks. Options: --iterations N (default 10000), --seed S (default 1).
int run_demo(int argc, char** argv);
}  // namespace metafew::cli
