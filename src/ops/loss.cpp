#include "ops/detail.h"

namespace metafew::ops {

using detail::make_result;

Variable log_softmax(const Variable& x, int64_t axis) {
  const int64_t a = tensor::normalize_axis(axis, x.dim(), "log_softmax");
  return make_result(tensor::log_softmax(x.data(), a), "log_softmax", {x},
                     MF_BACKWARD { return {sub(g, mul(exp(out), sum(g, {a}, true)))}; });
}

Variable softmax(const Variable& x, int64_t axis) {
  const int64_t a = tensor::normalize_axis(axis, x.dim(), "softmax");
  return make_result(tensor::softmax(x.data(), a), "softmax", {x},
                     MF_BACKWARD { return {mul(out, sub(g, sum(mul(g, out), {a}, true)))}; });
}

Variable cross_entropy(const Variable& logits, const Tensor& labels) {
  MF_CHECK(logits.dim() == 2, "cross_entropy: expected logits (N, C), got ", tensor::to_string(logits.shape()));
  const int64_t n = logits.shape()[0], c = logits.shape()[1];
  MF_CHECK(n > 0 && c > 0, "cross_entropy: empty logits ", tensor::to_string(logits.shape()));
  MF_CHECK(labels.dtype() == tensor::DType::i32 && labels.dim() == 1 && labels.numel() == n,
           "cross_entropy: expected ", n, " i32 labels, got ", tensor::dtype_name(labels.dtype()), " ",
           tensor::to_string(labels.shape()));
  std::vector<int32_t> flat(static_cast<size_t>(n));
  const int32_t* l = labels.data<int32_t>();
  for (int64_t i = 0; i < n; ++i) {
    MF_CHECK(l[i] >= 0 && l[i] < c, "cross_entropy: label ", l[i], " of row ", i, " is outside [0, ", c, ")");
    flat[static_cast<size_t>(i)] = static_cast<int32_t>(i * c + l[i]);
  }
  Variable picked = index_select(reshape(log_softmax(logits, 1), {n * c}), 0, Tensor::from_indices(flat, {n}));
  return neg(mean(picked));
}

Variable mse(const Variable& prediction, const Variable& target) {
  MF_CHECK(prediction.shape() == target.shape(), "mse: prediction ", tensor::to_string(prediction.shape()),
           " and target ", tensor::to_string(target.shape()), " differ in shape");
  Variable d = sub(prediction, target);
  return mean(mul(d, d));
}

namespace {
void check_rows(const Variable& a, const Variable& b, const char* op) {
  MF_CHECK(a.dim() == 2 && b.dim() == 2 && a.shape()[1] == b.shape()[1], op, ": expected (N, D) and (M, D), got ",
           tensor::to_string(a.shape()), " and ", tensor::to_string(b.shape()));
}
}  // namespace

Variable pairwise_sq_distance(const Variable& a, const Variable& b) {
  check_rows(a, b, "pairwise_sq_distance");
  // |a_i - b_j|^2 = |a_i|^2 + |b_j|^2 - 2 a_i . b_j
  Variable aa = sum(mul(a, a), {1}, true);                       // (N, 1)
  Variable bb = reshape(sum(mul(b, b), {1}, false), {1, b.shape()[0]});  // (1, M)
  return sub(add(aa, bb), mul_scalar(matmul(a, b, false, true), 2.0));
}

Variable cosine_similarity(const Variable& a, const Variable& b, double eps) {
  check_rows(a, b, "cosine_similarity");
  Variable an = mul(a, rsqrt(add_scalar(sum(mul(a, a), {1}, true), eps)));
  Variable bn = mul(b, rsqrt(add_scalar(sum(mul(b, b), {1}, true), eps)));
  return matmul(an, bn, false, true);
}

}  // namespace metafew::ops
