#include "ops/detail.h"

namespace metafew::ops {

using detail::make_result;

Variable reshape(const Variable& x, const Shape& shape) {
  return make_result(x.data().reshape(shape), "reshape", {x},
                     MF_BACKWARD { return {reshape(g, in[0].shape())}; });
}

Variable flatten(const Variable& x, int64_t start_axis) {
  int64_t s = tensor::normalize_axis(start_axis, x.dim(), "flatten");
  Shape out(x.shape().begin(), x.shape().begin() + s);
  out.push_back(-1);
  if (x.numel() == 0) out.back() = 0;
  return reshape(x, out);
}

Variable permute(const Variable& x, const std::vector<int64_t>& perm) {
  Tensor y = tensor::permute(x.data(), perm);  // validates perm
  std::vector<int64_t> inverse(perm.size());
  for (size_t i = 0; i < perm.size(); ++i)
    inverse[static_cast<size_t>(tensor::normalize_axis(perm[i], x.dim(), "permute"))] = static_cast<int64_t>(i);
  return make_result(y, "permute", {x}, MF_BACKWARD { return {permute(g, inverse)}; });
}

Variable transpose(const Variable& x, int64_t axis0, int64_t axis1) {
  int64_t a = tensor::normalize_axis(axis0, x.dim(), "transpose");
  int64_t b = tensor::normalize_axis(axis1, x.dim(), "transpose");
  std::vector<int64_t> perm(static_cast<size_t>(x.dim()));
  for (size_t i = 0; i < perm.size(); ++i) perm[i] = static_cast<int64_t>(i);
  std::swap(perm[a], perm[b]);
  return permute(x, perm);
}

Variable slice(const Variable& x, int64_t axis, int64_t start, int64_t end) {
  return make_result(tensor::slice(x.data(), axis, start, end), "slice", {x},
                     MF_BACKWARD { return {slice_scatter(g, in[0].shape(), axis, start)}; });
}

Variable slice_scatter(const Variable& g_in, const Shape& full, int64_t axis, int64_t start) {
  const int64_t a = tensor::normalize_axis(axis, static_cast<int64_t>(full.size()), "slice_scatter");
  const int64_t len = g_in.shape()[a];
  return make_result(tensor::slice_scatter(g_in.data(), full, a, start), "slice_scatter", {g_in},
                     MF_BACKWARD { return {slice(g, a, start, start + len)}; });
}

Variable concat(const std::vector<Variable>& xs, int64_t axis) {
  std::vector<Tensor> ts;
  ts.reserve(xs.size());
  for (const Variable& x : xs) ts.push_back(x.data());
  Tensor y = tensor::concat(ts, axis);
  const int64_t a = tensor::normalize_axis(axis, y.dim(), "concat");
  return make_result(y, "concat", xs, MF_BACKWARD {
    std::vector<Variable> grads(in.size());
    int64_t at = 0;
    for (size_t i = 0; i < in.size(); ++i) {
      const int64_t len = in[i].shape()[a];
      if (need[i]) grads[i] = slice(g, a, at, at + len);
      at += len;
    }
    return grads;
  });
}

Variable index_select(const Variable& x, int64_t axis, const Tensor& index) {
  const int64_t a = tensor::normalize_axis(axis, x.dim(), "index_select");
  return make_result(tensor::index_select(x.data(), a, index), "index_select", {x},
                     MF_BACKWARD { return {index_add(g, a, index, in[0].shape()[a])}; });
}

Variable index_add(const Variable& g_in, int64_t axis, const Tensor& index, int64_t size) {
  const int64_t a = tensor::normalize_axis(axis, g_in.dim(), "index_add");
  return make_result(tensor::index_add(g_in.data(), a, index, size), "index_add", {g_in},
                     MF_BACKWARD { return {index_select(g, a, index)}; });
}

}  // namespace metafew::ops
