#include "meta/inner_loop.h"

#include <cmath>
#include <limits>
#include <tuple>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "ops/ops.h"
#include "optim/optimizer.h"
#include "tensor/kernels.h"

namespace metafew::meta {

std::vector<Variable> slice_params(const std::vector<Variable>& p, size_t begin, size_t end) {
  return std::vector<Variable>(p.begin() + static_cast<std::ptrdiff_t>(begin), p.begin() + static_cast<std::ptrdiff_t>(end));
}

void write_grads(const Variable& loss, const std::vector<Variable>& wrt, std::vector<Tensor>& grads) {
  auto g = autograd::grad({loss}, wrt, {}, {.allow_unused = true});
  grads.resize(wrt.size());
  for (size_t i = 0; i < wrt.size(); ++i) grads[i] = g[i].defined() ? g[i].data() : Tensor::zeros(wrt[i].shape(), wrt[i].dtype());
}

std::vector<Variable> sgd_step(const std::vector<Variable>& fast, const Variable& loss, bool create_graph,
                               double lr, const std::vector<Variable>* rates,
                               const std::vector<bool>* adapted) {
  std::vector<Variable> stepped;
  std::vector<size_t> at;
  for (size_t i = 0; i < fast.size(); ++i) {
    if (adapted && !(*adapted)[i]) continue;
    stepped.push_back(fast[i]);
    at.push_back(i);
  }
  auto g = autograd::grad({loss}, stepped, {}, {.create_graph = create_graph, .allow_unused = true});
  std::vector<Variable> next = fast;
  for (size_t k = 0; k < at.size(); ++k) {
    const size_t i = at[k];
    if (!g[k].defined()) continue;
    next[i] = rates ? ops::sub(fast[i], ops::mul((*rates)[i], g[k])) : ops::sub(fast[i], ops::mul_scalar(g[k], lr));
  }
  return next;
}

AdaptedFeatures adapted_features(const nn::Model& model, const Adapted& a, const Tensor& query_x) {
  AdaptedFeatures f;
  for (const auto& t : a.weights) f.weights.emplace_back(t);
  std::tie(f.support, f.query) = model.embed_pair(f.weights, Variable(a.support_x), Variable(query_x));
  return f;
}

Tensor forward_query(const nn::Model& model, const Adapted& a, const Tensor& query_x) {
  autograd::NoGradGuard ng;
  std::vector<Variable> p;
  for (const auto& t : a.weights) p.emplace_back(t);
  MF_CHECK(p.size() == model.specs().size(), "predict: the adapted model has ", p.size(), " tensors, the model ",
           model.specs().size());
  if (model.queries_use_support()) {
    auto [fs, fq] = model.embed_pair(p, Variable(a.support_x), Variable(query_x));
    return nn::Model::head(p[model.head_begin()], p[model.head_begin() + 1], fq).data();
  }
  return model.forward(p, Variable(query_x)).data();
}

}  // namespace metafew::meta
