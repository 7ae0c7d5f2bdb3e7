#include "ops/detail.h"

namespace metafew::ops {

using detail::make_result;

// Note [Batch norm backward]: the forward is one fused kernel; the backward is written with ops, recomputing
// the normalised input from x so that its dependence on x (through the batch mean and variance) is part of
// the recorded graph. With xh = (x - mean) * invstd and gh = g * gamma, over the reduced axes:
//   dx = invstd * (gh - mean(gh) - xh * mean(gh * xh)),  dgamma = sum(g * xh),  dbeta = sum(g).
Variable batch_norm(const Variable& x, const Variable& gamma, const Variable& beta, double eps) {
  MF_CHECK(eps > 0, "batch_norm: eps must be positive, got ", eps);
  Tensor y = tensor::batch_norm(x.data(), gamma.data(), beta.data(), eps);
  return make_result(y, "batch_norm", {x, gamma, beta}, MF_BACKWARD {
    const Variable& xv = in[0];
    const bool spatial = xv.dim() == 4;
    const std::vector<int64_t> axes = spatial ? std::vector<int64_t>{0, 2, 3} : std::vector<int64_t>{0};
    const Shape bshape = spatial ? Shape{1, xv.shape()[1], 1, 1} : Shape{1, xv.shape()[1]};
    Variable mu = mean(xv, axes, true);
    Variable xc = sub(xv, mu);
    Variable invstd = rsqrt(add_scalar(mean(mul(xc, xc), axes, true), eps));
    Variable xh = mul(xc, invstd);
    std::vector<Variable> grads(3);
    if (need[0]) {
      Variable gh = mul(g, reshape(in[1], bshape));
      Variable inner = sub(sub(gh, mean(gh, axes, true)), mul(xh, mean(mul(gh, xh), axes, true)));
      grads[0] = mul(invstd, inner);
    }
    if (need[1]) grads[1] = reshape(sum(mul(g, xh), axes), in[1].shape());
    if (need[2]) grads[2] = reshape(sum(g, axes), in[2].shape());
    return grads;
  });
}

}  // namespace metafew::ops
