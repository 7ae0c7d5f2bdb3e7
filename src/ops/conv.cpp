// Note [Double backward of conv]: convolution is bilinear in (x, w), so its three kernels form a closed set.
//   y  = conv2d(x, w)              dx = conv2d_grad_input(gy, w)      dw = conv2d_grad_weight(x, gy)
//   gx = conv2d_grad_input(gy, w)  d gy = conv2d(ggx, w)              dw = conv2d_grad_weight(ggx, gy)
//   gw = conv2d_grad_weight(x, gy) dx = conv2d_grad_input(gy, ggw)    d gy = conv2d(x, ggw)
// Each backward is written with the other two, so every derivative order reuses the same three kernels:
// oneDNN's forward, backward-data and backward-weights primitives in f32, the naive reference in f64.
#include "backend/dnnl/conv.h"
#include "ops/detail.h"
#include "tensor/conv_ref.h"

namespace metafew::ops {

using detail::make_result;
using tensor::ConvShape;
using tensor::DType;

ConvShape conv_shape(const Shape& x, const Shape& w, const Conv2dParams& p, const char* op) {
  MF_CHECK(x.size() == 4 && w.size() == 4, op, ": expected input (N, C, H, W) and weight (O, C, kh, kw), got ",
           tensor::to_string(x), " and ", tensor::to_string(w));
  MF_CHECK(x[1] == w[1], op, ": input has ", x[1], " channels but the weight expects ", w[1], " (input ",
           tensor::to_string(x), ", weight ", tensor::to_string(w), ")");
  MF_CHECK(p.stride >= 1 && p.padding >= 0, op, ": stride ", p.stride, " must be >= 1 and padding ", p.padding,
           " >= 0");
  ConvShape s;
  s.n = x[0];
  s.ic = x[1];
  s.ih = x[2];
  s.iw = x[3];
  s.oc = w[0];
  s.kh = w[2];
  s.kw = w[3];
  s.sh = s.sw = p.stride;
  s.ph = s.pw = p.padding;
  s.algorithm = p.algorithm;
  MF_CHECK(s.valid(), op, ": the ", s.kh, "x", s.kw, " kernel does not fit input ", tensor::to_string(x),
           " with padding ", p.padding);
  return s;
}

namespace {
Shape y_shape(const ConvShape& s) { return {s.n, s.oc, s.oh(), s.ow()}; }

void check_dtypes(const Tensor& a, const Tensor& b, const char* op) {
  MF_CHECK(a.dtype() == b.dtype() && a.is_floating(), op, ": operands must share a floating dtype, got ",
           tensor::dtype_name(a.dtype()), " and ", tensor::dtype_name(b.dtype()));
}

Tensor conv_forward(const Tensor& x, const Tensor& w, const Tensor* bias, const ConvShape& s) {
  check_dtypes(x, w, "conv2d");
  Tensor y = Tensor::empty(y_shape(s), x.dtype());
  if (x.dtype() == DType::f32) {
    backend::dnnl_backend::conv2d_forward(x.data<float>(), w.data<float>(), bias ? bias->data<float>() : nullptr,
                                          y.data<float>(), s, backend::dnnl_backend::ConvLayout::automatic,
                                          w.storage()->generation());
    return y;
  }
  tensor::conv2d_ref(x.data<double>(), w.data<double>(), y.data<double>(), s);
  if (bias) y = tensor::binary(tensor::BinaryOp::add, y, bias->reshape({1, s.oc, 1, 1}));
  return y;
}

Tensor conv_grad_input(const Tensor& gy, const Tensor& w, const ConvShape& s) {
  check_dtypes(gy, w, "conv2d_grad_input");
  Tensor gx = Tensor::empty({s.n, s.ic, s.ih, s.iw}, gy.dtype());
  if (gy.dtype() == DType::f32) {
    backend::dnnl_backend::conv2d_backward_data(gy.data<float>(), w.data<float>(), gx.data<float>(), s,
                                                backend::dnnl_backend::ConvLayout::automatic,
                                                w.storage()->generation());
  } else {
    tensor::conv2d_grad_input_ref(gy.data<double>(), w.data<double>(), gx.data<double>(), s);
  }
  return gx;
}

Tensor conv_grad_weight(const Tensor& x, const Tensor& gy, const ConvShape& s) {
  check_dtypes(x, gy, "conv2d_grad_weight");
  Tensor gw = Tensor::empty({s.oc, s.ic, s.kh, s.kw}, x.dtype());
  if (x.dtype() == DType::f32) {
    backend::dnnl_backend::conv2d_backward_weights(x.data<float>(), gy.data<float>(), gw.data<float>(), nullptr, s);
  } else {
    tensor::conv2d_grad_weight_ref(x.data<double>(), gy.data<double>(), gw.data<double>(), s);
  }
  return gw;
}

// f32 only: the weight and bias gradients from one backward-weights pass (Note [Conv bias gradient]).
std::pair<Tensor, Tensor> conv_grad_weight_bias(const Tensor& x, const Tensor& gy, const ConvShape& s) {
  check_dtypes(x, gy, "conv2d_grad_weight");
  Tensor gw = Tensor::empty({s.oc, s.ic, s.kh, s.kw}, x.dtype()), gb = Tensor::empty({s.oc}, x.dtype());
  backend::dnnl_backend::conv2d_backward_weights(x.data<float>(), gy.data<float>(), gw.data<float>(), gb.data<float>(),
                                                 s);
  return {gw, gb};
}

// The node of a weight gradient gw = conv2d_grad_weight(x, gy) whose value is already computed.
Variable grad_weight_result(const Tensor& gw, const Variable& x, const Variable& gy, const Conv2dParams& p) {
  return make_result(gw, "conv2d_grad_weight", {x, gy}, MF_BACKWARD {
    return {need[0] ? conv2d_grad_input(in[1], g, in[0].shape(), p) : Variable(),
            need[1] ? conv2d(in[0], g, p) : Variable()};
  });
}

// The node of a bias gradient gb = sum(gy, {0, 2, 3}) whose value is already computed.
Variable grad_bias_result(const Tensor& gb, const Variable& gy) {
  const int64_t c = gb.numel();
  return make_result(gb, "conv2d_grad_bias", {gy}, MF_BACKWARD {
    return {broadcast_to(reshape(g, {1, c, 1, 1}), in[0].shape())};
  });
}
}  // namespace

Variable conv2d(const Variable& x, const Variable& w, const Variable& b, const Conv2dParams& p) {
  ConvShape s = conv_shape(x.shape(), w.shape(), p, "conv2d");
  if (b.defined())
    MF_CHECK(b.dim() == 1 && b.shape()[0] == s.oc, "conv2d: bias ", tensor::to_string(b.shape()), " must have ", s.oc,
             " elements");
  Tensor bias = b.defined() ? b.data() : Tensor();
  return detail::conv2d_result(conv_forward(x.data(), w.data(), b.defined() ? &bias : nullptr, s), x, w, b, p);
}

Variable detail::conv2d_result(const Tensor& y, const Variable& x, const Variable& w, const Variable& b,
                               const Conv2dParams& p) {
  std::vector<Variable> inputs{x, w};
  if (b.defined()) inputs.push_back(b);
  return make_result(y, "conv2d", std::move(inputs), MF_BACKWARD {
    std::vector<Variable> grads(in.size());
    if (need[0]) grads[0] = conv2d_grad_input(g, in[1], in[0].shape(), p);
    const bool bias_grad = in.size() > 2 && need[2];
    if (need[1] && bias_grad && g.data().dtype() == DType::f32) {
      // Note [Conv bias gradient]: the bias gradient sum(g, {0, 2, 3}) comes out of the backward-weights
      // kernel's pass over g (oneDNN's diff_bias, or the direct kernel's), not from a pass of its own; each
      // result is still its own node with its own rule, so higher derivatives are unchanged.
      auto [gw, gb] = conv_grad_weight_bias(in[0].data(), g.data(), conv_shape(in[0].shape(), in[1].shape(), p,
                                                                             "conv2d_grad_weight"));
      grads[1] = grad_weight_result(gw, in[0], g, p);
      grads[2] = grad_bias_result(gb, g);
      return grads;
    }
    if (need[1]) grads[1] = conv2d_grad_weight(in[0], g, in[1].shape(), p);
    if (bias_grad) grads[2] = sum(g, {0, 2, 3});
    return grads;
  });
}

Variable conv2d(const Variable& x, const Variable& w, const Conv2dParams& p) { return conv2d(x, w, Variable(), p); }

Variable conv2d_grad_input(const Variable& gy, const Variable& w, const Shape& x_shape, const Conv2dParams& p) {
  ConvShape s = conv_shape(x_shape, w.shape(), p, "conv2d_grad_input");
  MF_CHECK(gy.shape() == y_shape(s), "conv2d_grad_input: gradient ", tensor::to_string(gy.shape()),
           " does not match the output shape ", tensor::to_string(y_shape(s)));
  return make_result(conv_grad_input(gy.data(), w.data(), s), "conv2d_grad_input", {gy, w}, MF_BACKWARD {
    return {need[0] ? conv2d(g, in[1], p) : Variable(),
            need[1] ? conv2d_grad_weight(g, in[0], in[1].shape(), p) : Variable()};
  });
}

Variable conv2d_grad_weight(const Variable& x, const Variable& gy, const Shape& w_shape, const Conv2dParams& p) {
  ConvShape s = conv_shape(x.shape(), w_shape, p, "conv2d_grad_weight");
  MF_CHECK(gy.shape() == y_shape(s), "conv2d_grad_weight: gradient ", tensor::to_string(gy.shape()),
           " does not match the output shape ", tensor::to_string(y_shape(s)));
  return grad_weight_result(conv_grad_weight(x.data(), gy.data(), s), x, gy, p);
}

}  // namespace metafew::ops
