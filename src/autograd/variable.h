#pragma once
// Variable: a tensor plus its place in the autograd graph.
//
// A Variable made by an op while grad mode is on and some input requires grad owns a Node: the op's inputs
// and its backward rule. The graph is therefore held by its outputs, and when the last reference to an output
// goes, its graph goes with it (torn down iteratively, see Note [Iterative teardown] in variable.cpp).
// Backward rules receive the op's output as an argument instead of holding it, so no node refers to itself.
#include <atomic>
#include <functional>
#include <memory>
#include <vector>

#include "tensor/tensor.h"

namespace metafew::autograd {

using tensor::DType;
using tensor::Shape;
using tensor::Tensor;

class Node;
class Variable;

struct VariableImpl {
  Tensor data;
  bool requires_grad = false;
  std::shared_ptr<Node> node;        // null for leaves and for results computed without grad
  std::shared_ptr<VariableImpl> grad;  // accumulated by backward() on leaves
  VariableImpl();
  ~VariableImpl();
  VariableImpl(const VariableImpl&) = delete;
  VariableImpl& operator=(const VariableImpl&) = delete;
};

class Variable {
 public:
  Variable() = default;
  explicit Variable(Tensor data, bool requires_grad = false);
  explicit Variable(std::shared_ptr<VariableImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  const Tensor& data() const;
  // The tensor itself, for in-place updates of leaves by optimizers (never of a graph's intermediate). Gives
  // the storage a new generation first (Note [Storage generation]): call it for every in-place update.
  Tensor& mutable_data();
  const Shape& shape() const { return data().shape(); }
  int64_t dim() const { return data().dim(); }
  int64_t size(int64_t axis) const { return data().size(axis); }
  int64_t numel() const { return data().numel(); }
  DType dtype() const { return data().dtype(); }
  double item() const { return data().item(); }

  bool requires_grad() const { return impl_ && impl_->requires_grad; }
  bool is_leaf() const { return !impl_ || !impl_->node; }
  const std::shared_ptr<Node>& node() const;
  // A new leaf sharing this variable's tensor, cut from the graph.
  Variable detach() const;
  // Marks a leaf as a parameter to differentiate with respect to.
  Variable& set_requires_grad(bool on);

  // Gradient accumulated by backward() (undefined until then).
  Variable grad() const;
  void zero_grad();
  // Accumulates d(this)/d(leaf) into every reachable leaf's grad(); this must be a scalar unless a
  // grad_output is given. Built on autograd::grad.
  void backward(const Variable& grad_output = Variable(), bool retain_graph = false, bool create_graph = false);

  VariableImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<VariableImpl>& impl_ptr() const { return impl_; }

 private:
  std::shared_ptr<VariableImpl> impl_;
};

// inputs: the op's inputs as recorded; output: the op's result; grad_output: dL/d(output);
// needs[i]: whether input i's gradient is wanted. Returns one gradient per input (undefined where not needed).
using BackwardFn = std::function<std::vector<Variable>(const std::vector<Variable>& inputs, const Variable& output,
                                                       const Variable& grad_output, const std::vector<bool>& needs)>;

class Node {
 public:
  Node(const char* name, std::vector<Variable> inputs, BackwardFn fn);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  const char* name() const { return name_; }
  const std::vector<Variable>& inputs() const { return inputs_; }
  const BackwardFn& backward_fn() const { return fn_; }
  bool released() const { return released_; }
  // Drops the inputs and the rule after a backward pass that does not retain the graph.
  void release();

 private:
  const char* name_;
  std::vector<Variable> inputs_;
  BackwardFn fn_;
  bool released_ = false;
};

// Wraps an op's result: records a Node when grad mode is on and an input requires grad.
Variable make_result(Tensor data, const char* name, std::vector<Variable> inputs, BackwardFn fn);

// Live graph objects in this process: for tests that a graph's memory goes with its last reference.
int64_t live_nodes();
int64_t live_variables();

}  // namespace metafew::autograd
