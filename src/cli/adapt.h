#pragma once
namespace metafew::cli {
// metafew adapt: adapt a checkpoint to a new N-way K-shot task from image folders and label query images.
// metafew predict: label query images with a model saved by `adapt --save-adapted`.
int run_adapt(int argc, char** argv);
int run_predict(int argc, char** argv);
}  // namespace metafew::cli
