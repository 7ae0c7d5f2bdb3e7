#include "autograd/grad_mode.h"
#include "backend/dnnl/conv.h"
#include "ops/detail.h"
#include "tensor/blocked_layout.h"
#include "tensor/bn_pool_blocked.h"
#include "tensor/conv_single_channel.h"

namespace metafew::ops {

using detail::make_result;
using tensor::DType;

// Note [Batch norm backward]: batch norm's forward is one fused kernel, and so is its first backward: two ops,
// batch_norm_grad_sums (per-channel sums of g * xh and of g) and batch_norm_grad_input (dx from those sums),
// each two passes over memory instead of the dozen of the formula written with element-wise ops. With
// xh = (x - mean) * r, r = invstd, M = N * H * W:
//   S(g, x)           = [sum(g * xh); sum(g)]                          (batch_norm_grad_sums)
//   B(g, x, gamma, s) = gamma * r * (g - s[1] / M - xh * s[0] / M)     (batch_norm_grad_input)
//   dgamma = S[0], dbeta = S[1], dx = B(g, x, gamma, S(g, x)).
// Note [Batch norm double backward]: the rules of S and B are written with S, B, batch_norm itself
// (BN(x, a, b) = a * xh + b) and per-channel arithmetic, so second-order MAML's outer pass through the support
// set's batch norms runs a handful of fused passes instead of differentiating the element-wise formula
// (which cost ~30 passes and ~10% of a MAML 5-way 1-shot iteration), and every higher order still exists
// because each of those ops is differentiable in turn. For S with cotangent u = [u0; u1] (per channel):
//   dg = u0 * xh + u1 = BN(x, u0, u1);   dx = u0 * r * (g - mean(g) - xh * mean(g xh)) = B(g, x, u0, S(g, x)).
// For B with cotangent v (shaped like x), writing S(v, x) = [Svh; Sv] and Svg = sum(v g) - s1 Sv / M:
//   dg = B(v, x, gamma, 0);   dgamma = sum(v * B(g, x, 1, s));   ds = -(gamma r / M) * S(v, x);
//   dx = B(v, x, -gamma r s0 / M, [2 Svh; Sv]) + BN(x, -gamma r^2 Svg / M, 0),
// the last from dr/dx_k = -r^2 xh_k / M and d(r xh_i)/dx_k = r^2 (delta_ik - 1/M) - 2 r^2 xh_i xh_k / M.
// r itself enters as the op batch_norm_invstd, whose rule (cotangent w) is BN(x, -w r^2 / M, 0).
// gradcheck and gradgradcheck of both ops and a third-order case (tests/ops/test_gradcheck.cpp) hold the
// formulas to central differences.
// Note [Batch norm double backward, fused]: when no graph is recorded (second-order MAML's outer backward,
// the last derivative taken), the two rules' values come from one kernel each (tensor::
// batch_norm_grad_input_rule, batch_norm_grad_sums_rule): the rule of B in two passes (the per-channel sums
// Sv, Svh, sum(v g), then dg and dx together) instead of about eleven of the composition, the rule of S in one.
// The formulas are the ones above, the per-channel arithmetic in double; with create_graph the composition
// runs, so higher orders still exist. tests/ops/test_batch_norm_rules.cpp holds the two to each other.

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

// Row r of a (2, C) per-channel pair, as (C).
Variable channel_row(const Variable& pair, int64_t r) {
  return reshape(slice(pair, 0, r, r + 1), {pair.shape()[1]});
}

Variable constant(const Shape& shape, double value, const Variable& like) {
  return Variable(Tensor::full(shape, value, like.data().dtype()));
}

// r = invstd of x per channel (C), the value the forward kernels computed.
Variable invstd_op(const Variable& x, double eps, const Tensor& invstd_t) {
  return make_result(invstd_t, "batch_norm_invstd", {x}, MF_BACKWARD {
    const double count = geometry(in[0]).count;
    Variable r = invstd_op(in[0], eps, invstd_t);
    Variable a = mul_scalar(mul(g, mul(r, r)), -1.0 / count);
    return {batch_norm(in[0], a, constant(a.shape(), 0.0, a), eps)};
  });
}

// The two backward ops S and B. With a pooling index `idx` (defined), their gradient input gy is 2x2-pooled
// and stands for pool_scatter(gy, idx, x.shape()) (Note [Pooled batch norm backward]); `value`, when defined,
// is the op's value computed by the caller.
Variable grad_input_impl(const Variable& gy, const Variable& x, const Variable& gamma, const Variable& sums,
                         double eps, const Tensor& mean_t, const Tensor& invstd_t, const Tensor& idx = Tensor(),
                         Tensor value = Tensor());

// gy (pooled with idx) as a full-size tensor, for the values the callers did not compute.
Tensor full_size(const Variable& gy, const Variable& x, const Tensor& idx) {
  return idx.defined() ? tensor::pool_scatter(gy.data(), idx, x.shape()) : gy.data();
}

// A full-size gradient v of the op's (full-size) gradient input, as the pooled input's gradient when pooled.
Variable to_input(const Variable& v, const Variable& gy, const Tensor& idx) {
  return idx.defined() ? pool_gather(v, idx, gy.shape()) : v;
}

Variable grad_sums_impl(const Variable& gy, const Variable& x, double eps, const Tensor& mean_t,
                        const Tensor& invstd_t, const Tensor& idx = Tensor(), Tensor value = Tensor()) {
  if (!value.defined()) value = tensor::batch_norm_grad_sums(full_size(gy, x, idx), x.data(), mean_t, invstd_t);
  return make_result(
      value, idx.defined() ? "batch_norm_pool_grad_sums" : "batch_norm_grad_sums", {gy, x}, MF_BACKWARD {
        // Note [Batch norm double backward], rule of S.
        std::vector<Variable> grads(2);
        if (!autograd::grad_mode_enabled()) {  // Note [Batch norm double backward, fused]
          auto [dg, dx] = tensor::batch_norm_grad_sums_rule(g.data(), in[0].data(), in[1].data(), mean_t, invstd_t,
                                                            out.data(), need[0], need[1],
                                                            idx.defined() ? &idx : nullptr);
          if (need[0]) grads[0] = Variable(dg);
          if (need[1]) grads[1] = Variable(dx);
          return grads;
        }
        const Variable u0 = channel_row(g, 0), u1 = channel_row(g, 1);
        if (need[0]) grads[0] = to_input(batch_norm(in[1], u0, u1, eps), in[0], idx);
        if (need[1]) grads[1] = grad_input_impl(in[0], in[1], u0, out, eps, mean_t, invstd_t, idx);  // out = S(g, x)
        return grads;
      });
}

Variable grad_input_impl(const Variable& gy, const Variable& x, const Variable& gamma, const Variable& sums,
                         double eps, const Tensor& mean_t, const Tensor& invstd_t, const Tensor& idx,
                         Tensor value) {
  if (!value.defined())
    value = tensor::batch_norm_grad_input(full_size(gy, x, idx), x.data(), gamma.data(), mean_t, invstd_t,
                                          sums.data());
  return make_result(
      value, idx.defined() ? "batch_norm_pool_grad_input" : "batch_norm_grad_input", {gy, x, gamma, sums},
      MF_BACKWARD {
        // Note [Batch norm double backward], rule of B. in = {g, x, gamma, sums}; the cotangent is g here.
        const Variable &gi = in[0], &xi = in[1], &gam = in[2], &s = in[3];
        const BnGeometry geo = geometry(xi);
        const double m = geo.count;
        std::vector<Variable> grads(4);
        if (!autograd::grad_mode_enabled()) {  // Note [Batch norm double backward, fused]
          tensor::BnGradInputRule r =
              tensor::batch_norm_grad_input_rule(g.data(), gi.data(), xi.data(), gam.data(), mean_t, invstd_t,
                                                 s.data(), need[0], need[1], idx.defined() ? &idx : nullptr);
          if (need[0]) grads[0] = Variable(r.dg);
          if (need[1]) grads[1] = Variable(r.dx);
          if (need[2]) grads[2] = Variable(r.dgamma.reshape(gam.shape()));
          if (need[3]) grads[3] = Variable(r.dsums.reshape(s.shape()));
          return grads;
        }
        if (need[0])
          grads[0] = to_input(grad_input_impl(g, xi, gam, constant(s.shape(), 0.0, s), eps, mean_t, invstd_t), gi,
                              idx);
        if (need[2]) {
          const Variable unit =
              grad_input_impl(gi, xi, constant(gam.shape(), 1.0, gam), s, eps, mean_t, invstd_t, idx);
          grads[2] = sum(mul(g, unit), geo.axes);
        }
        if (!need[1] && !need[3]) return grads;
        const Variable r = invstd_op(xi, eps, invstd_t);
        const Variable sv = grad_sums_impl(g, xi, eps, mean_t, invstd_t);  // [Svh; Sv]
        const Variable gamma_r = mul(gam, r);
        if (need[3]) grads[3] = mul(sv, reshape(mul_scalar(gamma_r, -1.0 / m), {1, gam.shape()[0]}));
        if (need[1]) {
          const Variable s0 = channel_row(s, 0), s1 = channel_row(s, 1);
          const Variable svh = channel_row(sv, 0), sv1 = channel_row(sv, 1);
          const Variable a1 = mul_scalar(mul(gamma_r, s0), -1.0 / m);
          const Variable sums1 = concat({reshape(mul_scalar(svh, 2.0), {1, svh.shape()[0]}),
                                         reshape(sv1, {1, sv1.shape()[0]})},
                                        0);
          // sum(v g) over g's positions (pooled: v gathered there).
          const Variable svg =
              sub(sum(mul(to_input(g, gi, idx), gi), geo.axes), mul_scalar(mul(s1, sv1), 1.0 / m));
          const Variable a2 = mul_scalar(mul(mul(gamma_r, r), svg), -1.0 / m);
          grads[1] = add(grad_input_impl(g, xi, a1, sums1, eps, mean_t, invstd_t),
                         batch_norm(xi, a2, constant(a2.shape(), 0.0, a2), eps));
        }
        return grads;
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

// Note [Pooled batch norm backward]: batch_norm_max_pool's backward built from ops (create_graph): S and B of
// the pooled gradient gz (index idx) directly, instead of S and B of pool_scatter(gz): their values in one
// pass (tensor::batch_norm_max_pool_backward), and in the next backward their fused rules read and write
// gz's gradient at the pooled positions only, so neither the full-size scattered gradient, nor its full-size
// gradients from the two rules, their sum and the gather back, are formed (~8% of a MAML 20-way 1-shot
// iteration). With create_graph again the rules are the composition's with pool_scatter / pool_gather ops
// at the ends, so every derivative order exists.
std::vector<Variable> pooled_backward_with_ops(const Variable& gz, const Tensor& idx, const std::vector<Variable>& in,
                                               const std::vector<bool>& need, double eps, const Tensor& mean_t,
                                               const Tensor& invstd_t) {
  const int64_t c = in[0].shape()[1];
  const Tensor selected = tensor::pool_gather(in[0].data(), idx, gz.shape());
  auto [dx, sums_t] = tensor::batch_norm_max_pool_backward(gz.data(), idx, selected, in[0].data(), in[1].data(),
                                                           mean_t, invstd_t, need[0]);
  Variable sums = grad_sums_impl(gz, in[0], eps, mean_t, invstd_t, idx, sums_t);
  std::vector<Variable> grads(3);
  if (need[0]) grads[0] = grad_input_impl(gz, in[0], in[1], sums, eps, mean_t, invstd_t, idx, dx);
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

Variable batch_norm_leaky_relu(const Variable& x, const Variable& gamma, const Variable& beta, double eps,
                               double slope) {
  MF_CHECK(eps > 0, "batch_norm_leaky_relu: eps must be positive, got ", eps);
  MF_CHECK(slope > 0, "batch_norm_leaky_relu: slope must be positive, got ", slope);
  Tensor mean_t, invstd_t;
  Tensor y = tensor::batch_norm(x.data(), gamma.data(), beta.data(), eps, &mean_t, &invstd_t, slope);
  return make_result(y, "batch_norm_leaky_relu", {x, gamma, beta}, MF_BACKWARD {
    // leaky_relu's rule reads its input's sign, which is the output's (slope > 0).
    return backward_with_ops(leaky_relu_grad(g, out, slope), in, need, eps, mean_t, invstd_t);
  });
}

Variable batch_norm_add_leaky_relu(const Variable& a, const Variable& ga, const Variable& ba, const Variable& b,
                                   const Variable& gb, const Variable& bb, double eps, double slope) {
  MF_CHECK(eps > 0, "batch_norm_add_leaky_relu: eps must be positive, got ", eps);
  MF_CHECK(slope > 0, "batch_norm_add_leaky_relu: slope must be positive, got ", slope);
  MF_CHECK(a.shape() == b.shape(), "batch_norm_add_leaky_relu: the two branches differ: ", tensor::to_string(a.shape()),
           " and ", tensor::to_string(b.shape()));
  Tensor mean_a, invstd_a, mean_b, invstd_b;
  // The composition's kernels, so the same numbers; the normalised tensors are freed here.
  Tensor y = tensor::binary(tensor::BinaryOp::add,
                            tensor::batch_norm(a.data(), ga.data(), ba.data(), eps, &mean_a, &invstd_a),
                            tensor::batch_norm(b.data(), gb.data(), bb.data(), eps, &mean_b, &invstd_b));
  y = tensor::unary(tensor::UnaryOp::leaky_relu, y, slope);
  return make_result(y, "batch_norm_add_leaky_relu", {a, ga, ba, b, gb, bb}, MF_BACKWARD {
    // leaky_relu's rule reads its input's sign, which is the output's (slope > 0); the sum passes the
    // gradient to both branches.
    const Variable gz = leaky_relu_grad(g, out, slope);
    std::vector<Variable> grads = backward_with_ops(gz, {in[0], in[1], in[2]}, {need[0], need[1], need[2]}, eps,
                                                    mean_a, invstd_a);
    std::vector<Variable> other = backward_with_ops(gz, {in[3], in[4], in[5]}, {need[3], need[4], need[5]}, eps,
                                                    mean_b, invstd_b);
    grads.insert(grads.end(), other.begin(), other.end());
    return grads;
  });
}

// Note [Batch norm and max-pool fused] (tensor/kernels.h). The backward without create_graph (the query side
// of MAML, every first-order method) is one fused kernel; with create_graph it is built from differentiable
// ops, the batch-norm backward ops of the pooled gradient (Note [Pooled batch norm backward]), so every order
// of derivative exists.
// With relu, the op is relu(batch_norm_max_pool(x)): the kernels apply the relu to the pooled output and its
// gradient rule g * (y > 0) as they read g; with create_graph the rule is the relu_grad op.
Variable batch_norm_max_pool(const Variable& x, const Variable& gamma, const Variable& beta, double eps, bool relu) {
  MF_CHECK(eps > 0, "batch_norm_max_pool: eps must be positive, got ", eps);
  Tensor mean_t, invstd_t, selected;
  auto [y, index] = tensor::batch_norm_max_pool(x.data(), gamma.data(), beta.data(), eps, &mean_t, &invstd_t,
                                                &selected, relu);
  Tensor idx = index;
  return make_result(y, relu ? "batch_norm_max_pool_relu" : "batch_norm_max_pool", {x, gamma, beta}, MF_BACKWARD {
    if (autograd::grad_mode_enabled()) {
      const Variable gz = relu ? relu_grad(g, out) : g;
      return pooled_backward_with_ops(gz, idx, in, need, eps, mean_t, invstd_t);
    }
    const int64_t c = in[0].shape()[1];
    std::vector<Variable> grads(3);
    const Tensor y_out = out.data();
    auto [dx, sums] = tensor::batch_norm_max_pool_backward(g.data(), idx, selected, in[0].data(), in[1].data(),
                                                           mean_t, invstd_t, need[0], relu ? &y_out : nullptr);
    if (need[0]) grads[0] = Variable(dx);
    if (need[1]) grads[1] = Variable(tensor::slice(sums, 0, 0, 1).reshape({c}));
    if (need[2]) grads[2] = Variable(tensor::slice(sums, 0, 1, 2).reshape({c}));
    return grads;
  });
}

namespace {

// Note [Blocked conv block]
// Between a oneDNN convolution computing in nChw16c and batch_norm_max_pool, the composition reorders the
// convolution's output to NCHW and, backwards, the gradient to nChw16c, twice (backward data and backward
// weights each reorder it), and the input once more for backward weights: passes over full-size tensors
// that were a measurable share of a MAML 5-way 1-shot iteration (perf: bench/results/speed.md, "the 64-channel
// blocks in oneDNN's blocked layout"). Here the block keeps the convolution's
// output yb and its gradient gyb in nChw16c and runs batch norm, pooling and ReLU on that layout (Note
// [Blocked batch norm and pooling], tensor/bn_pool_blocked.cpp); it keeps the blocked copy of its input from
// the forward for backward weights. Only the block's input and output (a quarter of yb) and the input's
// gradient are NCHW. Values and first derivatives equal the composition's to rounding (the convolution is
// the same primitive on the same numbers; the statistics are summed in another order). With create_graph
// the backward is the composition's rules (composed_block_backward) on the kept output, reordered to NCHW
// and made the conv2d node it would have been, so every derivative order exists. The bias gradient is
// exactly 0 (batch norm removes a per-channel constant), as the first block's.

// The create_graph backward of a fused conv -> batch norm -> max-pool (-> relu) block (inputs x, w, b,
// gamma, beta; idx: the pooling's argmax as max_pool2d's): the composition's rules on the convolution's
// node, with statistics computed from the convolution's own f32 values (not closed forms), so that the
// rules' cancellations (xh sums to zero) hold to rounding and every derivative order exists.
// conv: the convolution's node (recomputed, or its kept output through detail::conv2d_result) with the bias
// detached: every rule below depends on conv only through its normalised values, so derivatives through it
// for the bias are exactly 0 too (the composition's were sums of rounding noise); mean and invstd:
// statistics of conv's values computed from those values (so that the cancellations hold).
std::vector<Variable> composed_block_backward(const std::vector<Variable>& in, const Variable& out, const Variable& g,
                                              const std::vector<bool>& need, const Conv2dParams& p, double eps,
                                              bool relu, const Tensor& idx, const Variable& conv,
                                              const Tensor& conv_mean, const Tensor& conv_invstd) {
  std::vector<Variable> grads(5);
  const std::vector<bool> bn_need{need[0] || need[1] || need[2], need[3], need[4]};
  const Variable gz = relu ? relu_grad(g, out) : g;
  std::vector<Variable> bn =
      pooled_backward_with_ops(gz, idx, {conv, in[3], in[4]}, bn_need, eps, conv_mean, conv_invstd);
  if (need[0]) grads[0] = conv2d_grad_input(bn[0], in[1], in[0].shape(), p);
  if (need[1]) grads[1] = conv2d_grad_weight(in[0], bn[0], in[1].shape(), p);
  // The bias gradient is exactly 0 at every order (batch norm removes a per-channel constant, so the block's
  // output does not depend on the bias at all): a constant, not the composition's sum(bn[0]) of rounding noise,
  // which cost a full-size pass here and two (its broadcast and an add) in the next backward.
  if (need[2]) grads[2] = constant(in[2].shape(), 0.0, in[2]);
  grads[3] = bn[1];
  grads[4] = bn[2];
  return grads;
}

bool blocked_block_supported(const tensor::ConvShape& s) {
  namespace dnnl = backend::dnnl_backend;
  return s.ic % 16 == 0 && s.oc % 16 == 0 && s.oh() >= 2 && s.ow() >= 2 &&
         dnnl::conv2d_layout(s, dnnl::ConvKernel::forward) == dnnl::ConvLayout::blocked &&
         dnnl::conv2d_layout(s, dnnl::ConvKernel::backward_data) == dnnl::ConvLayout::blocked;
}

Variable blocked_conv_block(const Variable& x, const Variable& w, const Variable& b, const Variable& gamma,
                            const Variable& beta, const Conv2dParams& p, double eps, bool relu,
                            const tensor::ConvShape& s) {
  namespace dnnl = backend::dnnl_backend;
  const int64_t oh = s.oh(), ow = s.ow();
  const Shape pooled{s.n, s.oc, oh / 2, ow / 2};
  Tensor xb = Tensor::empty(x.shape(), DType::f32), yb = Tensor::empty({s.n, s.oc, oh, ow}, DType::f32);
  tensor::nchw_to_nchw16c(x.data().data<float>(), xb.data<float>(), s.n, s.ic, s.ih * s.iw);
  dnnl::conv2d_forward(xb.data<float>(), w.data().data<float>(), b.data().data<float>(), yb.data<float>(), s,
                       dnnl::ConvLayout::blocked, w.data().storage()->generation(),
                       dnnl::nchw16c_arg(0) | dnnl::nchw16c_arg(3));
  Tensor y = Tensor::empty(pooled, DType::f32), code = Tensor::empty(pooled, DType::i32);
  Tensor sel = Tensor::empty(pooled, DType::f32);
  Tensor mean_t = Tensor::empty({s.oc}, DType::f32), invstd_t = Tensor::empty({s.oc}, DType::f32);
  tensor::bn_max_pool_nchw16c(yb.data<float>(), gamma.data().data<float>(), beta.data().data<float>(), eps, relu,
                              s.n, s.oc, oh, ow, y.data<float>(), code.data<int32_t>(), sel.data<float>(),
                              mean_t.data<float>(), invstd_t.data<float>());
  return make_result(y, relu ? "conv_bn_max_pool_relu" : "conv_bn_max_pool", {x, w, b, gamma, beta}, MF_BACKWARD {
    if (autograd::grad_mode_enabled()) {
      Tensor idx = Tensor::empty(pooled, DType::i32);
      tensor::pool_code_to_index(code.data<int32_t>(), s.n, s.oc, oh, ow, idx.data<int32_t>());
      // The kept output as the conv2d node (no second convolution). Its statistics as batch_norm computes
      // them: with the forward's (summed in another order) the second derivatives' cancellations hold less
      // well (tests/ops/test_blocked_block.cpp: the bias's, exactly 0, came out twice the composition's noise).
      Tensor conv_y = Tensor::empty(yb.shape(), DType::f32);
      tensor::nchw16c_to_nchw(yb.data<float>(), conv_y.data<float>(), s.n, s.oc, oh * ow);
      const Variable conv = detail::conv2d_result(conv_y, in[0], in[1], in[2].detach(), p);
      Tensor conv_mean, conv_invstd;
      tensor::batch_norm_stats(conv_y, eps, &conv_mean, &conv_invstd);
      return composed_block_backward(in, out, g, need, p, eps, relu, idx, conv, conv_mean, conv_invstd);
    }
    std::vector<Variable> grads(5);
    const bool conv_grads = need[0] || need[1];
    Tensor sums = Tensor::empty({2, s.oc}, DType::f32);
    Tensor gyb = conv_grads ? Tensor::empty(yb.shape(), DType::f32) : Tensor();
    const Tensor y_out = out.data();
    tensor::bn_max_pool_nchw16c_backward(g.data().data<float>(), relu ? y_out.data<float>() : nullptr,
                                         code.data<int32_t>(), sel.data<float>(), yb.data<float>(),
                                         in[3].data().data<float>(), mean_t.data<float>(), invstd_t.data<float>(),
                                         s.n, s.oc, oh, ow, sums.data<float>(),
                                         conv_grads ? gyb.data<float>() : nullptr);
    if (need[0]) {
      Tensor gx = Tensor::empty(in[0].shape(), DType::f32);
      dnnl::conv2d_backward_data(gyb.data<float>(), in[1].data().data<float>(), gx.data<float>(), s,
                                 dnnl::ConvLayout::blocked, in[1].data().storage()->generation(),
                                 dnnl::nchw16c_arg(0));
      grads[0] = Variable(gx);
    }
    if (need[1]) {
      Tensor gw = Tensor::empty(in[1].shape(), DType::f32);
      if (dnnl::conv2d_layout(s, dnnl::ConvKernel::backward_weights) == dnnl::ConvLayout::direct) {
        // The direct kernel (small images) reads NCHW.
        Tensor gy = Tensor::empty(yb.shape(), DType::f32);
        tensor::nchw16c_to_nchw(gyb.data<float>(), gy.data<float>(), s.n, s.oc, oh * ow);
        dnnl::conv2d_backward_weights(in[0].data().data<float>(), gy.data<float>(), gw.data<float>(), nullptr, s);
      } else {
        dnnl::conv2d_backward_weights(xb.data<float>(), gyb.data<float>(), gw.data<float>(), nullptr, s,
                                      dnnl::ConvLayout::blocked, dnnl::nchw16c_arg(0) | dnnl::nchw16c_arg(1));
      }
      grads[1] = Variable(gw);
    }
    if (need[2]) grads[2] = Variable(Tensor::zeros({s.oc}, DType::f32));  // batch norm removes a constant
    if (need[3]) grads[3] = Variable(tensor::slice(sums, 0, 0, 1).reshape({s.oc}));
    if (need[4]) grads[4] = Variable(tensor::slice(sums, 0, 1, 2).reshape({s.oc}));
    return grads;
  });
}

}  // namespace

// Note [First block fused] (tensor/conv_single_channel.cpp): the first block of an Omniglot network as one
// op when its input is data (no gradient wanted for it) in f32; otherwise the composition of the two ops.
// Without create_graph the backward is one kernel; with it, the convolution is recomputed and the rules of
// conv2d and batch_norm_max_pool are composed (as batch_norm_max_pool's own create_graph path), so every
// order of derivative exists.
Variable conv_bn_max_pool(const Variable& x, const Variable& w, const Variable& b, const Variable& gamma,
                          const Variable& beta, const Conv2dParams& p, double eps, bool relu) {
  MF_CHECK(eps > 0, "conv_bn_max_pool: eps must be positive, got ", eps);
  const tensor::ConvShape s = conv_shape(x.shape(), w.shape(), p, "conv_bn_max_pool");
  auto f32 = [](const Variable& v) { return v.defined() && v.data().dtype() == DType::f32; };
  const bool fits = f32(x) && f32(w) && f32(b) && f32(gamma) && f32(beta) && b.numel() == s.oc &&
                    gamma.numel() == s.oc && beta.numel() == s.oc;
  if (fits && blocked_block_supported(s)) return blocked_conv_block(x, w, b, gamma, beta, p, eps, relu, s);
  const bool fused = fits && tensor::first_block_supported(s) && !x.requires_grad();
  if (!fused) return batch_norm_max_pool(conv2d(x, w, b, p), gamma, beta, eps, relu);
  const Shape pooled{s.n, s.oc, s.oh() / 2, s.ow() / 2};
  Tensor y = Tensor::empty(pooled, DType::f32), idx = Tensor::empty(pooled, DType::i32);
  Tensor mean_t = Tensor::empty({s.oc}, DType::f32), invstd_t = Tensor::empty({s.oc}, DType::f32);
  Tensor moments = Tensor::empty({tensor::kFirstBlockMoments}, DType::f64);
  tensor::first_block_forward(x.data().data<float>(), w.data().data<float>(), b.data().data<float>(),
                              gamma.data().data<float>(), beta.data().data<float>(), eps, relu, s, y.data<float>(),
                              idx.data<int32_t>(), mean_t.data<float>(), invstd_t.data<float>(),
                              moments.data<double>());
  return make_result(y, relu ? "conv_bn_max_pool_relu" : "conv_bn_max_pool", {x, w, b, gamma, beta}, MF_BACKWARD {
    if (autograd::grad_mode_enabled()) {
      // The composition's f32 convolution; its bias detached (composed_block_backward).
      const Variable conv = conv2d(in[0], in[1], in[2].detach(), p);
      Tensor conv_mean, conv_invstd;
      tensor::batch_norm_stats(conv.data(), eps, &conv_mean, &conv_invstd);
      return composed_block_backward(in, out, g, need, p, eps, relu, idx, conv, conv_mean, conv_invstd);
    }
    std::vector<Variable> grads(5);
    Tensor gw = Tensor::empty(in[1].shape(), DType::f32);
    Tensor ggamma = Tensor::empty({s.oc}, DType::f32), gbeta = Tensor::empty({s.oc}, DType::f32);
    tensor::first_block_backward(in[0].data().data<float>(), in[1].data().data<float>(), g.data().data<float>(),
                                 relu ? out.data().data<float>() : nullptr, idx.data<int32_t>(),
                                 in[3].data().data<float>(), invstd_t.data<float>(), moments.data<double>(), s,
                                 gw.data<float>(), ggamma.data<float>(), gbeta.data<float>());
    if (need[1]) grads[1] = Variable(gw);
    if (need[2]) grads[2] = Variable(Tensor::zeros({s.oc}, DType::f32));  // batch norm removes a constant
    if (need[3]) grads[3] = Variable(ggamma);
    if (need[4]) grads[4] = Variable(gbeta);
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
