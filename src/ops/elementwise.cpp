#include <cmath>

#include "ops/detail.h"

namespace metafew::ops {

using detail::make_result;
using detail::reduce_to;
using tensor::BinaryOp;
using tensor::UnaryOp;

Variable add(const Variable& a, const Variable& b) {
  return make_result(tensor::binary(BinaryOp::add, a.data(), b.data()), "add", {a, b}, MF_BACKWARD {
    return {need[0] ? reduce_to(g, in[0].shape()) : Variable(), need[1] ? reduce_to(g, in[1].shape()) : Variable()};
  });
}

Variable sub(const Variable& a, const Variable& b) {
  return make_result(tensor::binary(BinaryOp::sub, a.data(), b.data()), "sub", {a, b}, MF_BACKWARD {
    return {need[0] ? reduce_to(g, in[0].shape()) : Variable(),
            need[1] ? reduce_to(neg(g), in[1].shape()) : Variable()};
  });
}

Variable mul(const Variable& a, const Variable& b) {
  return make_result(tensor::binary(BinaryOp::mul, a.data(), b.data()), "mul", {a, b}, MF_BACKWARD {
    return {need[0] ? reduce_to(mul(g, in[1]), in[0].shape()) : Variable(),
            need[1] ? reduce_to(mul(g, in[0]), in[1].shape()) : Variable()};
  });
}

Variable div(const Variable& a, const Variable& b) {
  return make_result(tensor::binary(BinaryOp::div, a.data(), b.data()), "div", {a, b}, MF_BACKWARD {
    // d(a/b)/db = -a / b^2
    return {need[0] ? reduce_to(div(g, in[1]), in[0].shape()) : Variable(),
            need[1] ? reduce_to(neg(div(mul(g, in[0]), mul(in[1], in[1]))), in[1].shape()) : Variable()};
  });
}

Variable neg(const Variable& x) {
  return make_result(tensor::unary(UnaryOp::neg, x.data()), "neg", {x}, MF_BACKWARD { return {neg(g)}; });
}

Variable exp(const Variable& x) {
  return make_result(tensor::unary(UnaryOp::exp, x.data()), "exp", {x}, MF_BACKWARD { return {mul(g, out)}; });
}

Variable log(const Variable& x) {
  return make_result(tensor::unary(UnaryOp::log, x.data()), "log", {x}, MF_BACKWARD { return {div(g, in[0])}; });
}

Variable pow(const Variable& x, double exponent) {
  return make_result(tensor::unary(UnaryOp::pow, x.data(), exponent), "pow", {x}, MF_BACKWARD {
    if (exponent == 0.0) return {mul_scalar(g, 0.0)};
    return {mul(g, mul_scalar(pow(in[0], exponent - 1.0), exponent))};
  });
}

Variable sqrt(const Variable& x) {
  return make_result(tensor::unary(UnaryOp::sqrt, x.data()), "sqrt", {x},
                     MF_BACKWARD { return {div(mul_scalar(g, 0.5), out)}; });
}

Variable rsqrt(const Variable& x) {
  // d(x^-1/2)/dx = -1/2 x^-3/2 = -1/2 out^3
  return make_result(tensor::unary(UnaryOp::rsqrt, x.data()), "rsqrt", {x},
                     MF_BACKWARD { return {mul(mul_scalar(g, -0.5), mul(out, mul(out, out)))}; });
}

Variable relu(const Variable& x) {
  return make_result(tensor::unary(UnaryOp::relu, x.data()), "relu", {x},
                     MF_BACKWARD { return {relu_grad(g, in[0])}; });
}

Variable leaky_relu(const Variable& x, double slope) {
  return make_result(tensor::unary(UnaryOp::leaky_relu, x.data(), slope), "leaky_relu", {x},
                     MF_BACKWARD { return {leaky_relu_grad(g, in[0], slope)}; });
}

Variable leaky_relu_grad(const Variable& g_in, const Variable& x, double slope) {
  return make_result(tensor::leaky_relu_grad(g_in.data(), x.data(), slope), "leaky_relu_grad", {g_in, x},
                     MF_BACKWARD { return {need[0] ? leaky_relu_grad(g, in[1], slope) : Variable(), Variable()}; });
}

Variable relu_grad(const Variable& g_in, const Variable& x) {
  // x enters only through the mask, whose derivative is zero almost everywhere: it gets no gradient.
  return make_result(tensor::relu_grad(g_in.data(), x.data()), "relu_grad", {g_in, x},
                     MF_BACKWARD { return {need[0] ? relu_grad(g, in[1]) : Variable(), Variable()}; });
}

Variable add_scalar(const Variable& x, double c) {
  return make_result(tensor::unary(UnaryOp::add_scalar, x.data(), c), "add_scalar", {x},
                     MF_BACKWARD { return {g}; });
}

Variable mul_scalar(const Variable& x, double c) {
  return make_result(tensor::unary(UnaryOp::mul_scalar, x.data(), c), "mul_scalar", {x},
                     MF_BACKWARD { return {mul_scalar(g, c)}; });
}

Variable sum_to(const Variable& x, const Shape& shape) {
  return make_result(tensor::sum_to(x.data(), shape), "sum_to", {x},
                     MF_BACKWARD { return {broadcast_to(g, in[0].shape())}; });
}

Variable broadcast_to(const Variable& x, const Shape& shape) {
  return make_result(tensor::broadcast_to(x.data(), shape), "broadcast_to", {x},
                     MF_BACKWARD { return {sum_to(g, in[0].shape())}; });
}

namespace {
Shape keep_shape(const Shape& s, const std::vector<int64_t>& axes, const char* op, int64_t* count) {
  Shape k = s;
  *count = 1;
  std::vector<bool> seen(s.size(), false);
  for (int64_t a : axes) {
    int64_t n = tensor::normalize_axis(a, static_cast<int64_t>(s.size()), op);
    MF_CHECK(!seen[n], op, ": axis ", a, " listed twice");
    seen[n] = true;
    *count *= s[n];
    k[n] = 1;
  }
  return k;
}
Shape drop_axes(const Shape& s, const Shape& kept, const std::vector<int64_t>& axes) {
  Shape out;
  std::vector<bool> drop(s.size(), false);
  for (int64_t a : axes) drop[a < 0 ? a + static_cast<int64_t>(s.size()) : a] = true;
  for (size_t i = 0; i < s.size(); ++i)
    if (!drop[i]) out.push_back(kept[i]);
  return out;
}
}  // namespace

Variable sum(const Variable& x, const std::vector<int64_t>& axes, bool keepdim) {
  int64_t count = 0;
  Shape k = keep_shape(x.shape(), axes, "sum", &count);
  Variable s = sum_to(x, k);
  return keepdim ? s : reshape(s, drop_axes(x.shape(), k, axes));
}

Variable sum(const Variable& x) { return reshape(sum_to(x, Shape(x.dim(), 1)), {}); }

Variable mean(const Variable& x, const std::vector<int64_t>& axes, bool keepdim) {
  int64_t count = 0;
  keep_shape(x.shape(), axes, "mean", &count);
  MF_CHECK(count > 0, "mean: no elements to average over in ", tensor::to_string(x.shape()));
  return mul_scalar(sum(x, axes, keepdim), 1.0 / static_cast<double>(count));
}

Variable mean(const Variable& x) {
  MF_CHECK(x.numel() > 0, "mean: the tensor is empty");
  return mul_scalar(sum(x), 1.0 / static_cast<double>(x.numel()));
}

}  // namespace metafew::ops
