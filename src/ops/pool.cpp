#include "ops/detail.h"

namespace metafew::ops {

using detail::make_result;

Variable max_pool2d(const Variable& x, int64_t kernel, int64_t stride) {
  auto [y, index] = tensor::max_pool2d(x.data(), kernel, stride);
  Tensor idx = index;
  return make_result(y, "max_pool2d", {x}, MF_BACKWARD { return {pool_scatter(g, idx, in[0].shape())}; });
}

Variable pool_scatter(const Variable& g_in, const Tensor& index, const Shape& input_shape) {
  const Shape out_shape = g_in.shape();
  return make_result(tensor::pool_scatter(g_in.data(), index, input_shape), "pool_scatter", {g_in},
                     MF_BACKWARD { return {pool_gather(g, index, out_shape)}; });
}

Variable pool_gather(const Variable& x, const Tensor& index, const Shape& output_shape) {
  return make_result(tensor::pool_gather(x.data(), index, output_shape), "pool_gather", {x},
                     MF_BACKWARD { return {pool_scatter(g, index, in[0].shape())}; });
}

}  // namespace metafew::ops
