#include "autograd/engine.h"

#include <unordered_map>
#include <unordered_set>

#include "autograd/grad_mode.h"
#include "tensor/kernels.h"

namespace metafew::autograd {
namespace {

// Sum of two gradients of the same shape; recorded (differentiably) when grad mode is on.
Variable accumulate(const Variable& a, const Variable& b) {
  return make_result(tensor::binary(tensor::BinaryOp::add, a.data(), b.data()), "accumulate", {a, b},
                     [](const std::vector<Variable>&, const Variable&, const Variable& g,
                        const std::vector<bool>&) { return std::vector<Variable>{g, g}; });
}

struct Graph {
  // Every variable reachable from the outputs through recorded nodes, in post-order (inputs first).
  std::vector<std::shared_ptr<VariableImpl>> post_order;
  std::unordered_map<const VariableImpl*, bool> needed;  // on a path to a wanted variable
};

// Iterative DFS. `wanted(v)` marks the variables whose gradient is asked for.
template <class Wanted>
Graph build_graph(const std::vector<Variable>& outputs, Wanted&& wanted) {
  Graph g;
  std::unordered_set<const VariableImpl*> visited;
  struct Frame {
    std::shared_ptr<VariableImpl> v;
    size_t next_input = 0;
  };
  std::vector<Frame> stack;
  for (const Variable& out : outputs) {
    if (!visited.insert(out.impl()).second) continue;
    stack.push_back({out.impl_ptr(), 0});
    while (!stack.empty()) {
      Frame& f = stack.back();
      const Node* node = f.v->node.get();
      if (node && f.next_input < node->inputs().size()) {
        const Variable& in = node->inputs()[f.next_input++];
        if (in.requires_grad() && visited.insert(in.impl()).second) stack.push_back({in.impl_ptr(), 0});
        continue;
      }
      if (node && node->released())
        throw Error(detail::concat("grad: the graph through '", node->name(),
                                   "' was already freed by an earlier pass; pass retain_graph to keep it"));
      bool need = wanted(f.v.get());
      if (node)
        for (const Variable& in : node->inputs())
          if (in.requires_grad()) need = need || g.needed[in.impl()];
      g.needed[f.v.get()] = need;
      g.post_order.push_back(std::move(f.v));
      stack.pop_back();
    }
  }
  return g;
}

// Runs the backward pass; returns the accumulated gradient of every needed variable.
std::unordered_map<const VariableImpl*, Variable> run_backward(const Graph& graph,
                                                               const std::vector<Variable>& outputs,
                                                               const std::vector<Variable>& grad_outputs,
                                                               bool create_graph, bool retain_graph) {
  std::unordered_map<const VariableImpl*, Variable> grads;
  GradModeGuard mode(create_graph);
  for (size_t i = 0; i < outputs.size(); ++i) {
    auto it = grads.find(outputs[i].impl());
    if (it == grads.end())
      grads.emplace(outputs[i].impl(), grad_outputs[i]);
    else
      it->second = accumulate(it->second, grad_outputs[i]);
  }
  for (size_t k = graph.post_order.size(); k-- > 0;) {
    const std::shared_ptr<VariableImpl>& v = graph.post_order[k];
    Node* node = v->node.get();
    if (!node) continue;
    auto git = grads.find(v.get());
    const bool has_grad = git != grads.end() && graph.needed.at(v.get());
    if (has_grad) {
      const auto& inputs = node->inputs();
      std::vector<bool> needs(inputs.size());
      bool any = false;
      for (size_t i = 0; i < inputs.size(); ++i) {
        needs[i] = inputs[i].requires_grad() && graph.needed.at(inputs[i].impl());
        any = any || needs[i];
      }
      if (any) {
        Variable out(v);
        std::vector<Variable> in_grads = node->backward_fn()(inputs, out, git->second, needs);
        MF_CHECK(in_grads.size() == inputs.size(), "grad: backward of '", node->name(), "' returned ",
                 in_grads.size(), " gradients for ", inputs.size(), " inputs");
        for (size_t i = 0; i < inputs.size(); ++i) {
          if (!needs[i] || !in_grads[i].defined()) continue;
          MF_CHECK(in_grads[i].shape() == inputs[i].shape(), "grad: backward of '", node->name(),
                   "' gave a gradient of shape ", tensor::to_string(in_grads[i].shape()), " for input ", i,
                   " of shape ", tensor::to_string(inputs[i].shape()));
          auto it = grads.find(inputs[i].impl());
          if (it == grads.end())
            grads.emplace(inputs[i].impl(), std::move(in_grads[i]));
          else
            it->second = accumulate(it->second, in_grads[i]);
        }
        // Only nodes that ran are freed: parts of the graph beyond the inputs stay usable (an inner-loop
        // gradient must not free the fast weights' history that the outer gradient still needs).
        if (!retain_graph) node->release();
      }
    }
  }
  return grads;
}

std::vector<Variable> default_grad_outputs(const std::vector<Variable>& outputs,
                                           const std::vector<Variable>& given) {
  MF_CHECK(given.empty() || given.size() == outputs.size(), "grad: ", given.size(), " grad_outputs for ",
           outputs.size(), " outputs");
  std::vector<Variable> g(outputs.size());
  for (size_t i = 0; i < outputs.size(); ++i) {
    if (!given.empty() && given[i].defined()) {
      MF_CHECK(given[i].shape() == outputs[i].shape() && given[i].dtype() == outputs[i].dtype(),
               "grad: grad_output ", i, " has shape ", tensor::to_string(given[i].shape()), ", expected ",
               tensor::to_string(outputs[i].shape()));
      g[i] = given[i];
    } else {
      MF_CHECK(outputs[i].numel() == 1, "grad: output ", i, " has shape ", tensor::to_string(outputs[i].shape()),
               "; a gradient can be implied only for a scalar output, pass grad_outputs");
      g[i] = Variable(Tensor::full(outputs[i].shape(), 1.0, outputs[i].dtype()));
    }
  }
  return g;
}

}  // namespace

std::vector<Variable> grad(const std::vector<Variable>& outputs, const std::vector<Variable>& inputs,
                           const std::vector<Variable>& grad_outputs, const GradOptions& options) {
  MF_CHECK(!outputs.empty(), "grad: no outputs given");
  for (size_t i = 0; i < outputs.size(); ++i)
    MF_CHECK(outputs[i].defined() && outputs[i].requires_grad(), "grad: output ", i,
             " does not require grad (no input of the computation requires grad, or grad mode was off)");
  for (size_t j = 0; j < inputs.size(); ++j)
    MF_CHECK(inputs[j].defined() && inputs[j].requires_grad(), "grad: input ", j, " does not require grad");
  const bool retain = options.retain_graph.value_or(options.create_graph);
  std::vector<Variable> gouts = default_grad_outputs(outputs, grad_outputs);

  std::unordered_set<const VariableImpl*> wanted;
  for (const Variable& in : inputs) wanted.insert(in.impl());
  Graph graph = build_graph(outputs, [&](const VariableImpl* v) { return wanted.count(v) > 0; });
  auto grads = run_backward(graph, outputs, gouts, options.create_graph, retain);

  std::vector<Variable> result(inputs.size());
  for (size_t j = 0; j < inputs.size(); ++j) {
    auto it = grads.find(inputs[j].impl());
    if (it != grads.end()) {
      result[j] = it->second;
    } else {
      MF_CHECK(options.allow_unused, "grad: input ", j, " of shape ", tensor::to_string(inputs[j].shape()),
               " is not used to compute the outputs (pass allow_unused to get an undefined gradient)");
    }
  }
  return result;
}

void Variable::backward(const Variable& grad_output, bool retain_graph, bool create_graph) {
  MF_CHECK(requires_grad(), "backward: the variable does not require grad (no parameter reaches it)");
  std::vector<Variable> outputs{*this};
  std::vector<Variable> gouts = default_grad_outputs(outputs, {grad_output});
  Graph graph = build_graph(outputs, [](const VariableImpl* v) { return v->node == nullptr; });
  std::vector<std::shared_ptr<VariableImpl>> leaves;
  for (const auto& v : graph.post_order)
    if (!v->node) leaves.push_back(v);
  auto grads = run_backward(graph, outputs, gouts, create_graph, retain_graph || create_graph);
  GradModeGuard mode(create_graph);
  for (const auto& leaf : leaves) {
    auto it = grads.find(leaf.get());
    if (it == grads.end()) continue;
    Variable g = create_graph ? it->second : it->second.detach();
    leaf->grad = leaf->grad ? accumulate(Variable(leaf->grad), g).impl_ptr() : g.impl_ptr();
  }
}

}  // namespace metafew::autograd
