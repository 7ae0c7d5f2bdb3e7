// Batch norm: forward, the fused batch norm + 2x2 max-pool, and the backward and double-backward rules (Notes in kernels.h and ops/norm.cpp).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "tensor/parallel_for.h"
#include "tensor/pool2x2.h"
#include "tensor/serial_scope.h"
#include "tensor/kernels.h"
#include "tensor/kernel_helpers.h"

namespace metafew::tensor {

using namespace kernel_helpers;

Tensor batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps, Tensor* mean,
                  Tensor* invstd, std::optional<double> leaky_slope) {
  MF_CHECK(x.dim() == 4 || x.dim() == 2, "batch_norm: expected NCHW or NC input, got ", to_string(x.shape()));
  const int64_t n = x.shape()[0], c = x.shape()[1], hw = x.dim() == 4 ? x.shape()[2] * x.shape()[3] : 1;
  MF_CHECK(gamma.numel() == c && beta.numel() == c, "batch_norm: gamma ", to_string(gamma.shape()), " and beta ",
           to_string(beta.shape()), " must have ", c, " elements (the channels of ", to_string(x.shape()), ")");
  MF_CHECK(n * hw > 0, "batch_norm: no elements to normalise in ", to_string(x.shape()));
  check_same_dtype(x, gamma, "batch_norm");
  check_same_dtype(x, beta, "batch_norm");
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  Tensor m = Tensor::empty({c}, x.dtype()), is = Tensor::empty({c}, x.dtype());
  dispatch_float(x.dtype(), "batch_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = x.data<T>();
    const T* pg = gamma.data<T>();
    const T* pb = beta.data<T>();
    T* py = y.data<T>();
    T* pm = m.data<T>();
    T* ps = is.data<T>();
    const bool par = may_parallelize(x.numel());
    parallel_for(c, par, [&](int64_t ch) {
      // Named copies, not a structured binding: clang 14 cannot capture bindings into the simd region.
      const std::pair<T, T> affine = channel_affine(px, pg, pb, n, c, hw, ch, eps, pm, ps);
      const T scale = affine.first, shift = affine.second;
      const T slope = static_cast<T>(leaky_slope.value_or(0.0));
      for (int64_t i = 0; i < n; ++i) {
        const T* p = px + (i * c + ch) * hw;
        T* q = py + (i * c + ch) * hw;
        if (leaky_slope) {
#pragma omp simd
          for (int64_t j = 0; j < hw; ++j) {
            const T v = p[j] * scale + shift;
            q[j] = v > T(0) ? v : slope * v;
          }
        } else {
#pragma omp simd
          for (int64_t j = 0; j < hw; ++j) q[j] = p[j] * scale + shift;
        }
      }
    });
  });
  if (mean) *mean = m;
  if (invstd) *invstd = is;
  return y;
}

constexpr int64_t kScatterChunk = 64;

namespace {
// unary relu's arithmetic, in place on a plane just written (still in L1).
template <typename T>
void relu_in_place(T* __restrict p, int64_t count) {
#pragma omp simd
  for (int64_t o = 0; o < count; ++o) p[o] = p[o] > T(0) ? p[o] : T(0);
}
}  // namespace

std::pair<Tensor, Tensor> batch_norm_max_pool(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps,
                                              Tensor* mean, Tensor* invstd, Tensor* selected, bool relu) {
  MF_CHECK(x.dim() == 4, "batch_norm_max_pool: expected NCHW input, got ", to_string(x.shape()));
  const int64_t n = x.shape()[0], c = x.shape()[1], h = x.shape()[2], w = x.shape()[3], hw = h * w;
  MF_CHECK(h >= 2 && w >= 2, "batch_norm_max_pool: input ", to_string(x.shape()), " is smaller than the 2x2 window");
  MF_CHECK(gamma.numel() == c && beta.numel() == c, "batch_norm_max_pool: gamma ", to_string(gamma.shape()),
           " and beta ", to_string(beta.shape()), " must have ", c, " elements (the channels of ",
           to_string(x.shape()), ")");
  check_same_dtype(x, gamma, "batch_norm_max_pool");
  check_same_dtype(x, beta, "batch_norm_max_pool");
  const int64_t oh = h / 2, ow = w / 2;
  Tensor y = Tensor::empty({n, c, oh, ow}, x.dtype());
  Tensor idx = Tensor::empty({n, c, oh, ow}, DType::i32), sel = Tensor::empty({n, c, oh, ow}, x.dtype());
  Tensor m = Tensor::empty({c}, x.dtype()), is = Tensor::empty({c}, x.dtype());
  const std::vector<int32_t> corners = pool2x2_corners(h, w);
  dispatch_float(x.dtype(), "batch_norm_max_pool", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = x.data<T>();
    const T* pg = gamma.data<T>();
    const T* pb = beta.data<T>();
    T* py = y.data<T>();
    int32_t* pi = idx.data<int32_t>();
    T* pr = sel.data<T>();
    T* pm = m.data<T>();
    T* ps = is.data<T>();
    const bool par = may_parallelize(x.numel());
    parallel_for(c, par, [&](int64_t ch) {
      const std::pair<T, T> affine = channel_affine(px, pg, pb, n, c, hw, ch, eps, pm, ps);  // as batch_norm
      const T scale = affine.first, shift = affine.second;
      for (int64_t i = 0; i < n; ++i) {
        const int64_t plane = i * c + ch;
        pool2x2_plane<true>(px + plane * hw, w, corners.data(), oh * ow, scale, shift, py + plane * oh * ow,
                            pi + plane * oh * ow, pr + plane * oh * ow);
        if (relu) relu_in_place(py + plane * oh * ow, oh * ow);
      }
    });
  });
  if (mean) *mean = m;
  if (invstd) *invstd = is;
  if (selected) *selected = sel;
  return {y, idx};
}

std::pair<Tensor, Tensor> batch_norm_max_pool_backward(const Tensor& g, const Tensor& index, const Tensor& selected,
                                                       const Tensor& x, const Tensor& gamma, const Tensor& mean,
                                                       const Tensor& invstd, bool want_dx, const Tensor* relu_y) {
  MF_CHECK(x.dim() == 4 && g.dim() == 4 && g.shape() == index.shape() && g.shape() == selected.shape(),
           "batch_norm_max_pool_backward: gradient ", to_string(g.shape()), ", index ", to_string(index.shape()),
           ", selected ", to_string(selected.shape()), " and input ", to_string(x.shape()), " do not fit");
  const int64_t n = x.shape()[0], c = x.shape()[1], h = x.shape()[2], w = x.shape()[3], hw = h * w;
  const int64_t oh = g.shape()[2], ow = g.shape()[3], per = oh * ow;
  MF_CHECK(g.shape()[0] == n && g.shape()[1] == c && oh == h / 2 && ow == w / 2,
           "batch_norm_max_pool_backward: gradient ", to_string(g.shape()), " is not the 2x2 pooling of ",
           to_string(x.shape()));
  MF_CHECK(gamma.numel() == c && mean.numel() == c && invstd.numel() == c,
           "batch_norm_max_pool_backward: per-channel tensors must have ", c, " elements");
  check_same_dtype(g, x, "batch_norm_max_pool_backward");
  check_same_dtype(selected, x, "batch_norm_max_pool_backward");
  Tensor sums = Tensor::empty({2, c}, x.dtype());
  Tensor dx = want_dx ? Tensor::empty(x.shape(), x.dtype()) : Tensor();
  const double count = static_cast<double>(n * hw);
  dispatch_float(x.dtype(), "batch_norm_max_pool_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pg = g.data<T>();
    const int32_t* pi = index.data<int32_t>();
    const T* pr = selected.data<T>();
    const T* px = x.data<T>();
    const T* pgam = gamma.data<T>();
    const T* pm = mean.data<T>();
    const T* ps = invstd.data<T>();
    T* out = sums.data<T>();
    T* pd = want_dx ? dx.data<T>() : nullptr;
    const T* pyr = relu_y ? relu_y->data<T>() : nullptr;
    const bool par = may_parallelize(x.numel());
    // With relu_y, the gradient is relu_grad's g * (y > 0), taken as it is read (kRelu).
    auto run = [&](auto relu) {
      constexpr bool kRelu = decltype(relu)::value;
      parallel_for(c, par, [&](int64_t ch) {
        // gz is zero outside the argmax positions, so its sums only visit those.
        // (Per-plane sums in T as batch_norm_grad_sums.)
        double sgx = 0, sg = 0;
        const double mu = pm[ch];
        const T m = pm[ch];
        for (int64_t i = 0; i < n; ++i) {
          const T* __restrict a = pg + (i * c + ch) * per;
          const T* __restrict b = pr + (i * c + ch) * per;  // x at the argmax positions, kept by the forward
          const T* __restrict yr = kRelu ? pyr + (i * c + ch) * per : nullptr;
          T agx = 0, ag = 0;
#pragma omp simd reduction(+ : agx, ag)
          for (int64_t o = 0; o < per; ++o) {
            const T av = kRelu ? (yr[o] > T(0) ? a[o] : T(0)) : a[o];
            agx += av * (b[o] - m);
            ag += av;
          }
          sgx += static_cast<double>(agx);
          sg += static_cast<double>(ag);
        }
        const T s0 = static_cast<T>(sgx * ps[ch]), s1 = static_cast<T>(sg);
        out[ch] = s0;
        out[c + ch] = s1;
        if (!want_dx) return;
        // dx = a gz + b x + k with per-channel a, b, k (batch_norm_grad_input's arithmetic): the dense part
        // first, then a * g added at each argmax.
        const double inv = ps[ch], scale = pgam[ch] * inv;
        const double kk = static_cast<double>(s0) / count * inv;
        const T a = static_cast<T>(scale);
        const T b = static_cast<T>(-scale * kk);
        const T k = static_cast<T>(scale * (kk * mu - static_cast<double>(s1) / count));
        for (int64_t i = 0; i < n; ++i) {
          const T* xx = px + (i * c + ch) * hw;
          T* yy = pd + (i * c + ch) * hw;
#pragma omp simd
          for (int64_t j = 0; j < hw; ++j) yy[j] = b * xx[j] + k;
          const T* gg = pg + (i * c + ch) * per;
          const T* rr = pr + (i * c + ch) * per;
          const T* yr = kRelu ? pyr + (i * c + ch) * per : nullptr;
          const int32_t* at = pi + (i * c + ch) * per;
          // The argmax positions of a plane are distinct (the windows do not overlap): a conflict-free scatter,
          // of values computed densely first.
          T vals[kScatterChunk];
          for (int64_t o0 = 0; o0 < per; o0 += kScatterChunk) {
            const int64_t len = std::min(kScatterChunk, per - o0);
#pragma omp simd
            for (int64_t o = 0; o < len; ++o) {
              const T gv = kRelu ? (yr[o0 + o] > T(0) ? gg[o0 + o] : T(0)) : gg[o0 + o];
              vals[o] = a * gv + b * rr[o0 + o] + k;
            }
            for (int64_t o = 0; o < len; ++o) yy[at[o0 + o]] = vals[o];
          }
        }
      });
    };
    if (pyr) {
      run(std::true_type{});
    } else {
      run(std::false_type{});
    }
  });
  return {dx, sums};
}

namespace {
struct BnDims {
  int64_t n, c, hw;
};
BnDims bn_dims(const Tensor& x, const char* op) {
  MF_CHECK(x.dim() == 4 || x.dim() == 2, op, ": expected NCHW or NC input, got ", to_string(x.shape()));
  return {x.shape()[0], x.shape()[1], x.dim() == 4 ? x.shape()[2] * x.shape()[3] : 1};
}
}  // namespace

void batch_norm_stats(const Tensor& x, double eps, Tensor* mean, Tensor* invstd) {
  // batch_norm's statistics (channel_stats, stored as channel_affine stores them), without its output.
  const BnDims d = bn_dims(x, "batch_norm_stats");
  MF_CHECK(d.n * d.hw > 0, "batch_norm_stats: no elements in ", to_string(x.shape()));
  Tensor m = Tensor::empty({d.c}, x.dtype()), is = Tensor::empty({d.c}, x.dtype());
  dispatch_float(x.dtype(), "batch_norm_stats", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = x.data<T>();
    T* pm = m.data<T>();
    T* ps = is.data<T>();
    parallel_for(d.c, may_parallelize(x.numel()), [&](int64_t ch) {
      const auto [mu, inv] = channel_stats(px, d.n, d.c, d.hw, ch, eps);
      pm[ch] = static_cast<T>(mu);
      ps[ch] = static_cast<T>(inv);
    });
  });
  if (mean) *mean = m;
  if (invstd) *invstd = is;
}

Tensor batch_norm_grad_sums(const Tensor& g, const Tensor& x, const Tensor& mean, const Tensor& invstd) {
  const BnDims d = bn_dims(x, "batch_norm_grad_sums");
  MF_CHECK(g.shape() == x.shape(), "batch_norm_grad_sums: gradient ", to_string(g.shape()), " and input ",
           to_string(x.shape()), " differ");
  check_same_dtype(g, x, "batch_norm_grad_sums");
  Tensor sums = Tensor::empty({2, d.c}, x.dtype());
  dispatch_float(x.dtype(), "batch_norm_grad_sums", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pg = g.data<T>();
    const T* px = x.data<T>();
    const T* pm = mean.data<T>();
    const T* ps = invstd.data<T>();
    T* out = sums.data<T>();
    const bool par = may_parallelize(x.numel());
    parallel_for(d.c, par, [&](int64_t ch) {
      // Per-plane sums in T, plane sums in double (Note [Batch norm statistics]).
      double sgx = 0, sg = 0;
      const T m = pm[ch];
      for (int64_t i = 0; i < d.n; ++i) {
        const T* a = pg + (i * d.c + ch) * d.hw;
        const T* b = px + (i * d.c + ch) * d.hw;
        T agx = 0, ag = 0;
#pragma omp simd reduction(+ : agx, ag)
        for (int64_t j = 0; j < d.hw; ++j) {
          agx += a[j] * (b[j] - m);
          ag += a[j];
        }
        sgx += static_cast<double>(agx);
        sg += static_cast<double>(ag);
      }
      out[ch] = static_cast<T>(sgx * ps[ch]);
      out[d.c + ch] = static_cast<T>(sg);
    });
  });
  return sums;
}

namespace {
// Batch norm's input gradient for one channel as dx = a g + b x + c: gamma, invstd r, mean mu, the channel's
// sums s0 = sum(g xh) and s1 = sum(g) over its m values. Shared by batch_norm_grad_input and the sums rule
// (gamma = u0 there), so both round alike.
struct BnInputCoefficients {
  double a, b, c;
};
BnInputCoefficients bn_input_coefficients(double gamma, double r, double mu, double s0, double s1, double m) {
  const double scale = gamma * r;
  const double k = s0 / m * r;  // xh * sum(g xh) / M = (x - mu) k
  return {scale, -scale * k, scale * (k * mu - s1 / m)};
}
}  // namespace

Tensor batch_norm_grad_input(const Tensor& g, const Tensor& x, const Tensor& gamma, const Tensor& mean,
                             const Tensor& invstd, const Tensor& sums) {
  const BnDims d = bn_dims(x, "batch_norm_grad_input");
  MF_CHECK(g.shape() == x.shape() && gamma.numel() == d.c && sums.numel() == 2 * d.c,
           "batch_norm_grad_input: shapes do not fit: g ", to_string(g.shape()), ", x ", to_string(x.shape()),
           ", gamma ", to_string(gamma.shape()), ", sums ", to_string(sums.shape()));
  Tensor dx = Tensor::empty(x.shape(), x.dtype());
  const double m = static_cast<double>(d.n * d.hw);
  dispatch_float(x.dtype(), "batch_norm_grad_input", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pg = g.data<T>();
    const T* px = x.data<T>();
    const T* pgam = gamma.data<T>();
    const T* pm = mean.data<T>();
    const T* ps = invstd.data<T>();
    const T* sm = sums.data<T>();
    T* py = dx.data<T>();
    const bool par = may_parallelize(x.numel());
    parallel_for(d.n * d.c, par, [&](int64_t plane) {
      const int64_t i = plane / d.c, ch = plane % d.c;
      const BnInputCoefficients co = bn_input_coefficients(pgam[ch], ps[ch], pm[ch], sm[ch], sm[d.c + ch], m);
      const T a = static_cast<T>(co.a), b = static_cast<T>(co.b), c = static_cast<T>(co.c);
      const T* gg = pg + (i * d.c + ch) * d.hw;
      const T* xx = px + (i * d.c + ch) * d.hw;
      T* yy = py + (i * d.c + ch) * d.hw;
#pragma omp simd
      for (int64_t j = 0; j < d.hw; ++j) yy[j] = a * gg[j] + b * xx[j] + c;
    });
  });
  return dx;
}

namespace {
// The shapes of a batch-norm rule's gradient g: x's, or with `index`, 2x2-pooled (g scattered to x's shape by
// index, at most one position per window).
int64_t rule_g_per_plane(const Tensor& g, const Tensor& x, const Tensor* index, const BnDims& d, const char* op) {
  if (!index) {
    MF_CHECK(g.shape() == x.shape(), op, ": gradient ", to_string(g.shape()), " and input ", to_string(x.shape()),
             " differ");
    return d.hw;
  }
  MF_CHECK(x.dim() == 4 && g.dim() == 4 && index->shape() == g.shape() && index->dtype() == DType::i32 &&
               g.shape()[0] == d.n && g.shape()[1] == d.c && g.shape()[2] == x.shape()[2] / 2 &&
               g.shape()[3] == x.shape()[3] / 2,
           op, ": pooled gradient ", to_string(g.shape()), " and index ", to_string(index->shape()),
           " are not the 2x2 pooling of ", to_string(x.shape()));
  return g.shape()[2] * g.shape()[3];
}
}  // namespace

BnGradInputRule batch_norm_grad_input_rule(const Tensor& v, const Tensor& g, const Tensor& x, const Tensor& gamma,
                                           const Tensor& mean, const Tensor& invstd, const Tensor& sums,
                                           bool want_dg, bool want_dx, const Tensor* index) {
  const char* op = "batch_norm_grad_input_rule";
  const BnDims d = bn_dims(x, op);
  const int64_t per = rule_g_per_plane(g, x, index, d, op);
  MF_CHECK(v.shape() == x.shape() && gamma.numel() == d.c && mean.numel() == d.c && invstd.numel() == d.c &&
               sums.numel() == 2 * d.c,
           op, ": shapes do not fit: v ", to_string(v.shape()), ", x ", to_string(x.shape()), ", gamma ",
           to_string(gamma.shape()), ", sums ", to_string(sums.shape()));
  check_same_dtype(v, x, op);
  check_same_dtype(g, x, op);
  BnGradInputRule out;
  out.dgamma = Tensor::empty({d.c}, x.dtype());
  out.dsums = Tensor::empty({2, d.c}, x.dtype());
  if (want_dg) out.dg = Tensor::empty(g.shape(), x.dtype());
  if (want_dx) out.dx = Tensor::empty(x.shape(), x.dtype());
  const double m = static_cast<double>(d.n * d.hw);
  const int32_t* pi = index ? index->data<int32_t>() : nullptr;
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pv = v.data<T>();
    const T* pg = g.data<T>();
    const T* px = x.data<T>();
    const T* pgam = gamma.data<T>();
    const T* pm = mean.data<T>();
    const T* ps = invstd.data<T>();
    const T* sm = sums.data<T>();
    T* dgamma = out.dgamma.data<T>();
    T* dsums = out.dsums.data<T>();
    T* pdg = want_dg ? out.dg.data<T>() : nullptr;
    T* pdx = want_dx ? out.dx.data<T>() : nullptr;
    parallel_for(d.c, may_parallelize(x.numel()), [&](int64_t ch) {
      // Pass 1: Sv = sum(v), Svh = sum(v xh), Svg = sum(v g) (with index: over g's positions only); per-plane
      // sums in T, plane sums in double (Note [Batch norm statistics]).
      double sv = 0, svx = 0, svg = 0;
      const T mt = pm[ch];
      for (int64_t i = 0; i < d.n; ++i) {
        const T* a = pv + (i * d.c + ch) * d.hw;
        const T* b = px + (i * d.c + ch) * d.hw;
        const T* e = pg + (i * d.c + ch) * per;
        T av = 0, ax = 0, ag = 0;
        if (pi) {
          const int32_t* at = pi + (i * d.c + ch) * per;
#pragma omp simd reduction(+ : av, ax)
          for (int64_t j = 0; j < d.hw; ++j) {
            av += a[j];
            ax += a[j] * (b[j] - mt);
          }
          for (int64_t o = 0; o < per; ++o) ag += a[at[o]] * e[o];
        } else {
#pragma omp simd reduction(+ : av, ax, ag)
          for (int64_t j = 0; j < d.hw; ++j) {
            av += a[j];
            ax += a[j] * (b[j] - mt);
            ag += a[j] * e[j];
          }
        }
        sv += static_cast<double>(av);
        svx += static_cast<double>(ax);
        svg += static_cast<double>(ag);
      }
      const double r = ps[ch], mu = pm[ch], gam = pgam[ch], s0 = sm[ch], s1 = sm[d.c + ch];
      const double svh = svx * r;
      const double svg_c = svg - s1 * sv / m;  // sum(v g) - s1 Sv / M
      dgamma[ch] = static_cast<T>(r * (svg_c - s0 * svh / m));
      dsums[ch] = static_cast<T>(-gam * r / m * svh);
      dsums[d.c + ch] = static_cast<T>(-gam * r / m * sv);
      if (!want_dg && !want_dx) return;
      // Pass 2: dg = gamma r v (with index: at g's positions); dx = a1 r (v - Sv / M - xh 2 Svh / M) + a2 xh
      // with a1 = -gamma r s0 / M and a2 = -gamma r^2 svg_c / M, written as A v + B x + K.
      const T ag = static_cast<T>(gam * r);
      const double a1 = -gam * r * s0 / m, a2 = -gam * r * r * svg_c / m;
      const double bh = (a2 - 2.0 * a1 * r * svh / m) * r;  // coefficient of x
      const T av = static_cast<T>(a1 * r);
      const T bx = static_cast<T>(bh);
      const T k = static_cast<T>(-a1 * r * sv / m - bh * mu);
      for (int64_t i = 0; i < d.n; ++i) {
        const int64_t off = (i * d.c + ch) * d.hw;
        const T* a = pv + off;
        const T* b = px + off;
        if (want_dg) {
          T* q = pdg + (i * d.c + ch) * per;
          if (pi) {
            const int32_t* at = pi + (i * d.c + ch) * per;
            for (int64_t o = 0; o < per; ++o) q[o] = ag * a[at[o]];
          } else {
#pragma omp simd
            for (int64_t j = 0; j < d.hw; ++j) q[j] = ag * a[j];
          }
        }
        if (want_dx) {
          T* q = pdx + off;
#pragma omp simd
          for (int64_t j = 0; j < d.hw; ++j) q[j] = av * a[j] + bx * b[j] + k;
        }
      }
    });
  });
  return out;
}

std::pair<Tensor, Tensor> batch_norm_grad_sums_rule(const Tensor& u, const Tensor& g, const Tensor& x,
                                                    const Tensor& mean, const Tensor& invstd, const Tensor& sums,
                                                    bool want_dg, bool want_dx, const Tensor* index) {
  const char* op = "batch_norm_grad_sums_rule";
  const BnDims d = bn_dims(x, op);
  const int64_t per = rule_g_per_plane(g, x, index, d, op);
  MF_CHECK(u.numel() == 2 * d.c && sums.numel() == 2 * d.c && mean.numel() == d.c && invstd.numel() == d.c,
           op, ": shapes do not fit: u ", to_string(u.shape()), ", x ", to_string(x.shape()), ", sums ",
           to_string(sums.shape()));
  check_same_dtype(g, x, op);
  check_same_dtype(u, x, op);
  Tensor dg = want_dg ? Tensor::empty(g.shape(), x.dtype()) : Tensor();
  Tensor dx = want_dx ? Tensor::empty(x.shape(), x.dtype()) : Tensor();
  if (!want_dg && !want_dx) return {dg, dx};
  const double m = static_cast<double>(d.n * d.hw);
  const int32_t* pi = index ? index->data<int32_t>() : nullptr;
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pu = u.data<T>();
    const T* pg = g.data<T>();
    const T* px = x.data<T>();
    const T* pm = mean.data<T>();
    const T* ps = invstd.data<T>();
    const T* sm = sums.data<T>();
    T* pdg = want_dg ? dg.data<T>() : nullptr;
    T* pdx = want_dx ? dx.data<T>() : nullptr;
    parallel_for(d.n * d.c, may_parallelize(x.numel()), [&](int64_t plane) {
      const int64_t ch = plane % d.c;
      const double r = ps[ch], mu = pm[ch], u0 = pu[ch], u1 = pu[d.c + ch];
      // dg = u0 r (x - mean) + u1; dx = a g + b x + c as batch_norm_grad_input with gamma = u0.
      const T ga = static_cast<T>(u0 * r), gc = static_cast<T>(u1 - u0 * r * mu);
      const BnInputCoefficients co = bn_input_coefficients(u0, r, mu, sm[ch], sm[d.c + ch], m);
      const T a = static_cast<T>(co.a), b = static_cast<T>(co.b), c = static_cast<T>(co.c);
      const T* gg = pg + plane * per;
      const T* xx = px + plane * d.hw;
      const int32_t* at = pi ? pi + plane * per : nullptr;
      if (want_dg) {
        T* q = pdg + plane * per;
        if (at) {
          for (int64_t o = 0; o < per; ++o) q[o] = ga * xx[at[o]] + gc;
        } else {
#pragma omp simd
          for (int64_t j = 0; j < d.hw; ++j) q[j] = ga * xx[j] + gc;
        }
      }
      if (want_dx) {
        T* q = pdx + plane * d.hw;
        if (at) {
          // g scattered: the dense part, then a g added at each of g's (distinct) positions.
#pragma omp simd
          for (int64_t j = 0; j < d.hw; ++j) q[j] = b * xx[j] + c;
          for (int64_t o = 0; o < per; ++o) q[at[o]] += a * gg[o];
        } else {
#pragma omp simd
          for (int64_t j = 0; j < d.hw; ++j) q[j] = a * gg[j] + b * xx[j] + c;
        }
      }
    });
  });
  return {dg, dx};
}

}  // namespace metafew::tensor
