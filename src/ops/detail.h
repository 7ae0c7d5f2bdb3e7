#pragma once
// Shared helpers of the op files: the signature of backward rules and the reduce-to-shape of broadcasting.
#include "autograd/variable.h"
#include "ops/ops.h"
#include "tensor/kernels.h"

// The parameter list of a backward rule: inputs as recorded, the op's output, dL/d(output), wanted inputs.
#define MF_BACKWARD                                                                                    \
  [=]([[maybe_unused]] const std::vector<::metafew::autograd::Variable>& in,                          \
      [[maybe_unused]] const ::metafew::autograd::Variable& out,                                      \
      [[maybe_unused]] const ::metafew::autograd::Variable& g,                                        \
      [[maybe_unused]] const std::vector<bool>& need) -> std::vector<::metafew::autograd::Variable>

namespace metafew::ops::detail {

using autograd::make_result;

// g reduced to `shape` when broadcasting made it larger.
inline Variable reduce_to(const Variable& g, const Shape& shape) {
  return g.shape() == shape ? g : sum_to(g, shape);
}

// The conv2d op's node for an output y = conv2d(x, w, b, p) already computed (by a fused op keeping the
// convolution's output): the same rule as ops::conv2d, so every derivative order exists.
Variable conv2d_result(const Tensor& y, const Variable& x, const Variable& w, const Variable& b,
                       const Conv2dParams& p);

inline void check_defined(const Variable& v, const char* op, const char* what) {
  MF_CHECK(v.defined(), op, ": ", what, " is undefined");
}

}  // namespace metafew::ops::detail
