#pragma once
namespace metafew::cli {
// metafew export: a training checkpoint without its optimizer state, for sharing a trained model (eval,
// adapt and predict read it like the original; meta-train --resume refuses it). See `metafew export --help`.
int run_export(int argc, char** argv);
}  // namespace metafew::cli
