#include <functional>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "ops/detail.h"

namespace metafew::ops {

using detail::make_result;

// Note [Batch norm backward]: batch norm's forward is one fused kernel, and so is its first backward: two ops,
// batch_norm_grad_sums (per-channel sums of g * xh and of g) and batch_norm_grad_input (dx from those sums),
// each two passes over memory instead of the dozen of the formula written with element-wise ops. The
// backward rules of these two ops recompute their formula with differentiable ops and differentiate it
// (vjp_by_recompute), so second and higher derivatives exist; in second-order MAML that composite only ever
// runs on the support set's activations. With xh = (x - mean) * invstd, M = N * H * W:
//   sums = [sum(g * xh); sum(g)],  dx = gamma * invstd * (g - sums[1] / M - xh * sums[0] / M),
//   dgamma = sums[0],  dbeta = sums[1].

namespace {

struct BnGeometry {
  std::vector<int64_t> axes;
  Shape bshape;  // (1, C, 1, 1) or (1, C)
  double count;  // M
};

BnGeometry geometry(const Variable& x) {
  MF_CHECK(x.dim() == 4 || x.dim() == 2, "batch_norm: expected NCHW or NC input, got ", tensor::to_string(x.shape()));
  if (x.dim() == 4)
    return {{0, 2, 3}, {1, x.shape()[1], 1, 1}, static_cast<double>(x.shape()[0] * x.shape()[2] * x.shape()[3])};
  return {{0}, {1, x.shape()[1]}, static_cast<double>(x.shape()[0])};
}

// invstd and xh of x, with ops.
std::pair<Variable, Variable> normalized(const Variable& x, double eps, const BnGeometry& geo) {
  Variable xc = sub(x, mean(x, geo.axes, true));
  Variable invstd = rsqrt(add_scalar(mean(mul(xc, xc), geo.axes, true), eps));
  return {invstd, mul(xc, invstd)};
}

Variable composite_sums(const Variable& g, const Variable& x, double eps) {
  const BnGeometry geo = geometry(x);
  const int64_t c = x.shape()[1];
  Variable xh = normalized(x, eps, geo).second;
  return concat({reshape(sum(mul(g, xh), geo.axes), {1, c}), reshape(sum(g, geo.axes), {1, c})}, 0);
}

Variable composite_input_grad(const Variable& g, const Variable& x, const Variable& gamma, const Variable& sums,
                              double eps) {
  const BnGeometry geo = geometry(x);
  auto [invstd, xh] = normalized(x, eps, geo);
  Variable s0 = mul_scalar(reshape(slice(sums, 0, 0, 1), geo.bshape), 1.0 / geo.count);
  Variable s1 = mul_scalar(reshape(slice(sums, 0, 1, 2), geo.bshape), 1.0 / geo.count);
  Variable inner = sub(sub(g, s1), mul(xh, s0));
  return mul(mul(reshape(gamma, geo.bshape), invstd), inner);
}

// The vector-Jacobian product of f at `in` with cotangent g, by rebuilding f with ops and differentiating it.
// Each input enters through a fresh alias, so the result holds partial derivatives even when one input was
// computed from another (sums from g and x), while staying connected to the inputs for higher orders.
std::vector<Variable> vjp_by_recompute(const std::vector<Variable>& in, const Variable& g, const std::vector<bool>& need,
                                       const std::function<Variable(const std::vector<Variable>&)>& f) {
  const bool create_graph = autograd::grad_mode_enabled();
  std::vector<Variable> out(in.size());
  std::vector<Variable> proxies(in.size()), wrt;
  std::vector<size_t> where;
  autograd::GradModeGuard on(true);
  for (size_t i = 0; i < in.size(); ++i) {
    proxies[i] = make_result(in[i].data(), "alias", {in[i]},
                             [](const std::vector<Variable>&, const Variable&, const Variable& go,
                                const std::vector<bool>&) { return std::vector<Variable>{go}; });
    if (need[i] && proxies[i].requires_grad()) {
      wrt.push_back(proxies[i]);
      where.push_back(i);
    }
  }
  if (wrt.empty()) return out;
  Variable y = f(proxies);
  if (!y.requires_grad()) return out;
  auto grads = autograd::grad({y}, wrt, {g}, {.create_graph = create_graph, .allow_unused = true});
  for (size_t k = 0; k < where.size(); ++k) out[where[k]] = grads[k];
  if (!create_graph)
    for (auto& v : out)
      if (v.defined()) v = v.detach();
  return out;
}

Variable grad_sums_impl(const Variable& gy, const Variable& x, double eps, const Tensor& mean_t,
                        const Tensor& invstd_t) {
  return make_result(tensor::batch_norm_grad_sums(gy.data(), x.data(), mean_t, invstd_t), "batch_norm_grad_sums",
                     {gy, x}, MF_BACKWARD {
                       return vjp_by_recompute(in, g, need, [eps](const std::vector<Variable>& v) {
                         return composite_sums(v[0], v[1], eps);
                       });
                     });
}

Variable grad_input_impl(const Variable& gy, const Variable& x, const Variable& gamma, const Variable& sums,
                         double eps, const Tensor& mean_t, const Tensor& invstd_t) {
  return make_result(
      tensor::batch_norm_grad_input(gy.data(), x.data(), gamma.data(), mean_t, invstd_t, sums.data()),
      "batch_norm_grad_input", {gy, x, gamma, sums}, MF_BACKWARD {
        return vjp_by_recompute(in, g, need, [eps](const std::vector<Variable>& v) {
          return composite_input_grad(v[0], v[1], v[2], v[3], eps);
        });
      });
}

// Batch norm's backward (inputs x, gamma, beta) for the gradient g of its output, built from the two fused
// backward ops, so that it is differentiable again.
std::vector<Variable> backward_with_ops(const Variable& g, const std::vector<Variable>& in, const std::vector<bool>& need,
                                        double eps, const Tensor& mean_t, const Tensor& invstd_t) {
  const int64_t c = in[0].shape()[1];
  Variable sums = grad_sums_impl(g, in[0], eps, mean_t, invstd_t);
  std::vector<Variable> grads(3);
  if (need[0]) grads[0] = grad_input_impl(g, in[0], in[1], sums, eps, mean_t, invstd_t);
  if (need[1]) grads[1] = reshape(slice(sums, 0, 0, 1), {c});
  if (need[2]) grads[2] = reshape(slice(sums, 0, 1, 2), {c});
  return grads;
}

}  // namespace

Variable batch_norm(const Variable& x, const Variable& gamma, const Variable& beta, double eps) {
  MF_CHECK(eps > 0, "batch_norm: eps must be positive, got ", eps);
  Tensor mean_t, invstd_t;
  Tensor y = tensor::batch_norm(x.data(), gamma.data(), beta.data(), eps, &mean_t, &invstd_t);
  return make_result(y, "batch_norm", {x, gamma, beta},
                     MF_BACKWARD { return backward_with_ops(g, in, need, eps, mean_t, invstd_t); });
}

// Note [Batch norm and max-pool fused] (tensor/kernels.h). The backward without create_graph (the query side
// of MAML, every first-order method) is one fused kernel; with create_graph it is the composition of the two
// ops' rules (pool_scatter, then the fused batch-norm backward ops), so every order of derivative exists.
Variable batch_norm_max_pool(const Variable& x, const Variable& gamma, const Variable& beta, double eps) {
  MF_CHECK(eps > 0, "batch_norm_max_pool: eps must be positive, got ", eps);
  Tensor mean_t, invstd_t;
  auto [y, index] = tensor::batch_norm_max_pool(x.data(), gamma.data(), beta.data(), eps, &mean_t, &invstd_t);
  Tensor idx = index;
  return make_result(y, "batch_norm_max_pool", {x, gamma, beta}, MF_BACKWARD {
    if (autograd::grad_mode_enabled())
      return backward_with_ops(pool_scatter(g, idx, in[0].shape()), in, need, eps, mean_t, invstd_t);
    const int64_t c = in[0].shape()[1];
    std::vector<Variable> grads(3);
    auto [dx, sums] = tensor::batch_norm_max_pool_backward(g.data(), idx, in[0].data(), in[1].data(), mean_t,
                                                           invstd_t, need[0]);
    if (need[0]) grads[0] = Variable(dx);
    if (need[1]) grads[1] = Variable(tensor::slice(sums, 0, 0, 1).reshape({c}));
    if (need[2]) grads[2] = Variable(tensor::slice(sums, 0, 1, 2).reshape({c}));
    return grads;
  });
}

Variable batch_norm_grad_sums(const Variable& g, const Variable& x, double eps) {
  Tensor mean_t, invstd_t;
  tensor::batch_norm_stats(x.data(), eps, &mean_t, &invstd_t);
  return grad_sums_impl(g, x, eps, mean_t, invstd_t);
}

Variable batch_norm_grad_input(const Variable& g, const Variable& x, const Variable& gamma, const Variable& sums,
                               double eps) {
  Tensor mean_t, invstd_t;
  tensor::batch_norm_stats(x.data(), eps, &mean_t, &invstd_t);
  return grad_input_impl(g, x, gamma, sums, eps, mean_t, invstd_t);
}

}  // namespace metafew::ops
