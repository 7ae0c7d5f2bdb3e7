#pragma once
// The engine: reverse-mode differentiation over the graph held by Variables.
#include <optional>
#include <vector>

#include "autograd/variable.h"

namespace metafew::autograd {

struct GradOptions {
  bool create_graph = false;           // record the backward pass itself, for higher-order gradients
  std::optional<bool> retain_graph;    // keep the graph for another pass; defaults to create_graph
  bool allow_unused = false;           // an input the outputs do not depend on gets an undefined gradient
};

// Returns d(sum_i <outputs[i], grad_outputs[i]>)/d(inputs[j]) for each j. A scalar output may omit its
// grad_output (taken as 1). Traversal is iterative; only paths that reach an input are visited.
//   requires: every output requires grad; grad_outputs empty or one per output with matching shapes.
//   ensures:  result[j] has inputs[j]'s shape, or is undefined when allow_unused and inputs[j] is unreached.
std::vector<Variable> grad(const std::vector<Variable>& outputs, const std::vector<Variable>& inputs,
                           const std::vector<Variable>& grad_outputs = {}, const GradOptions& options = {});

}  // namespace metafew::autograd
