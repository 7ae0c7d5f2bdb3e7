#include "autograd/variable.h"

#include "autograd/grad_mode.h"

namespace metafew::autograd {
namespace {

std::atomic<int64_t> g_live_nodes{0};
std::atomic<int64_t> g_live_variables{0};

// Note [Iterative teardown]: destroying the last reference to a deep graph (a long unrolled inner loop)
// would recurse Node -> inputs -> VariableImpl -> Node ... and overflow the stack. Instead, a VariableImpl
// hands its node to a thread-local queue; the outermost destructor drains it in a loop, so the depth of
// destructor calls stays constant.
struct TeardownQueue {
  std::vector<std::shared_ptr<Node>> pending;
  bool draining = false;
};
thread_local TeardownQueue g_teardown;

void defer_node_release(std::shared_ptr<Node> node) {
  if (node.use_count() > 1) return;  // someone else still holds it: dropping our reference is shallow
  g_teardown.pending.push_back(std::move(node));
  if (g_teardown.draining) return;
  g_teardown.draining = true;
  while (!g_teardown.pending.empty()) {
    std::shared_ptr<Node> n = std::move(g_teardown.pending.back());
    g_teardown.pending.pop_back();
    n.reset();  // may push more nodes, never recurses deeper than one level
  }
  g_teardown.draining = false;
}

}  // namespace

VariableImpl::VariableImpl() { ++g_live_variables; }
VariableImpl::~VariableImpl() {
  --g_live_variables;
  if (node) defer_node_release(std::move(node));
}

Node::Node(const char* name, std::vector<Variable> inputs, BackwardFn fn)
    : name_(name), inputs_(std::move(inputs)), fn_(std::move(fn)) {
  ++g_live_nodes;
}
Node::~Node() { --g_live_nodes; }

void Node::release() {
  inputs_.clear();
  inputs_.shrink_to_fit();
  fn_ = nullptr;
  released_ = true;
}

int64_t live_nodes() { return g_live_nodes.load(); }
int64_t live_variables() { return g_live_variables.load(); }

Variable::Variable(Tensor data, bool requires_grad) : impl_(std::make_shared<VariableImpl>()) {
  MF_CHECK(!requires_grad || data.is_floating(), "Variable: only floating tensors can require grad, got ",
           tensor::dtype_name(data.dtype()));
  impl_->data = std::move(data);
  impl_->requires_grad = requires_grad;
}

const Tensor& Variable::data() const {
  MF_CHECK(impl_, "Variable::data: the variable is undefined");
  return impl_->data;
}

Tensor& Variable::mutable_data() {
  MF_CHECK(impl_, "Variable::mutable_data: the variable is undefined");
  // The caller is about to write in place: caches keyed on the contents must not match the old ones.
  if (impl_->data.storage()) impl_->data.storage()->touch();  // Note [Storage generation]
  return impl_->data;
}

const std::shared_ptr<Node>& Variable::node() const {
  static const std::shared_ptr<Node> none;
  return impl_ ? impl_->node : none;
}

Variable Variable::detach() const { return Variable(data(), false); }

Variable& Variable::set_requires_grad(bool on) {
  MF_CHECK(impl_, "set_requires_grad: the variable is undefined");
  MF_CHECK(is_leaf(), "set_requires_grad: only leaves can change requires_grad (this variable was made by ",
           impl_->node->name(), ")");
  MF_CHECK(!on || impl_->data.is_floating(), "set_requires_grad: only floating tensors can require grad");
  impl_->requires_grad = on;
  return *this;
}

Variable Variable::grad() const { return impl_ && impl_->grad ? Variable(impl_->grad) : Variable(); }

void Variable::zero_grad() {
  if (impl_) impl_->grad.reset();
}

Variable make_result(Tensor data, const char* name, std::vector<Variable> inputs, BackwardFn fn) {
  bool needs = false;
  if (grad_mode_enabled())
    for (const Variable& v : inputs) needs = needs || v.requires_grad();
  Variable out(std::move(data), false);
  if (needs) {
    out.impl()->requires_grad = true;
    out.impl()->node = std::make_shared<Node>(name, std::move(inputs), std::move(fn));
  }
  return out;
}

}  // namespace metafew::autograd
