#pragma once
// What the kernel files of tensor/ share (elementwise.cpp, shape_kernels.cpp, pool_softmax.cpp,
// batch_norm.cpp): splitting a range over threads, dtype checks, broadcast plans, and the per-plane loops of
// max-pooling and batch-norm statistics. Internal to tensor/: nothing outside it includes this file.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "tensor/kernels.h"
#include "tensor/parallel_for.h"
#include "tensor/pool2x2.h"
#include "tensor/serial_scope.h"

namespace metafew::tensor::kernel_helpers {

// Calls fn(begin, end) over [0, n): split across threads when the range is large enough.
template <class Fn>
void parallel_range(int64_t n, Fn&& fn, int64_t cost_per_item = 1) {
  if (!may_parallelize(n * cost_per_item) || n < 2) {
    fn(int64_t(0), n);
    return;
  }
#pragma omp parallel
  {
    int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    int64_t chunk = (n + nt - 1) / nt;
    int64_t b = std::min(n, t * chunk), e = std::min(n, b + chunk);
    if (b < e) fn(b, e);
  }
}

inline void check_same_dtype(const Tensor& a, const Tensor& b, const char* op) {
  MF_CHECK(a.defined() && b.defined(), op, ": an operand is undefined");
  MF_CHECK(a.dtype() == b.dtype(), op, ": operands have different dtypes (", dtype_name(a.dtype()), " and ",
           dtype_name(b.dtype()), ")");
}

// Note [Broadcast plan]: an output shape plus, per operand, its strides in the output's index space (0 where
// broadcast). Unit dimensions are dropped and adjacent dimensions merged when every operand walks them as one,
// so the common cases become one or two loops with a contiguous inner run.
struct Plan {
  std::vector<int64_t> shape;
  std::vector<std::vector<int64_t>> strides;  // one per operand
};

inline Plan make_plan(const Shape& out, const std::vector<std::vector<int64_t>>& operand_strides) {
  Plan p;
  size_t k = operand_strides.size();
  p.strides.resize(k);
  for (size_t d = 0; d < out.size(); ++d) {
    if (out[d] == 1) continue;
    bool merge = !p.shape.empty();
    for (size_t o = 0; o < k && merge; ++o)
      merge = p.strides[o].back() == operand_strides[o][d] * out[d];
    if (merge) {
      p.shape.back() *= out[d];
      for (size_t o = 0; o < k; ++o) p.strides[o].back() = operand_strides[o][d];
    } else {
      p.shape.push_back(out[d]);
      for (size_t o = 0; o < k; ++o) p.strides[o].push_back(operand_strides[o][d]);
    }
  }
  if (p.shape.empty()) {
    p.shape.push_back(1);
    for (size_t o = 0; o < k; ++o) p.strides[o].push_back(0);
  }
  return p;
}

// Strides of `in` (right-aligned, broadcasting) in the index space of `out`.
inline std::vector<int64_t> broadcast_strides(const Shape& in, const Shape& out) {
  std::vector<int64_t> s(out.size(), 0);
  auto cs = contiguous_strides(in);
  size_t off = out.size() - in.size();
  for (size_t i = 0; i < in.size(); ++i) s[i + off] = in[i] == 1 ? 0 : cs[i];
  return s;
}

// Visits the plan's index space in [begin, end) as inner runs: fn(offsets[k], run_length).
template <size_t K, class Fn>
void for_runs(const Plan& p, int64_t begin, int64_t end, Fn&& fn) {
  const int64_t r = static_cast<int64_t>(p.shape.size());
  const int64_t inner = p.shape[r - 1];
  int64_t pos = begin;
  while (pos < end) {
    int64_t rem = pos / inner, j = pos % inner;
    int64_t off[K];
    for (size_t o = 0; o < K; ++o) off[o] = j * p.strides[o][r - 1];
    for (int64_t d = r - 2; d >= 0; --d) {
      int64_t idx = rem % p.shape[d];
      rem /= p.shape[d];
      for (size_t o = 0; o < K; ++o) off[o] += idx * p.strides[o][d];
    }
    int64_t len = std::min(inner - j, end - pos);
    fn(off, len);
    pos += len;
  }
}

template <class T, class F>
void binary_loop(const Plan& p, const T* a, const T* b, T* y, int64_t n, F f) {
  const int64_t r = static_cast<int64_t>(p.shape.size());
  const int64_t ia = p.strides[1][r - 1], ib = p.strides[2][r - 1];
  parallel_range(n, [&](int64_t begin, int64_t end) {
    for_runs<3>(p, begin, end, [&](const int64_t* off, int64_t len) {
      T* __restrict yy = y + off[0];
      const T* __restrict aa = a + off[1];
      const T* __restrict bb = b + off[2];
      if (ia == 1 && ib == 1) {
#pragma omp simd
        for (int64_t j = 0; j < len; ++j) yy[j] = f(aa[j], bb[j]);
      } else if (ia == 1 && ib == 0) {
        const T bv = bb[0];
#pragma omp simd
        for (int64_t j = 0; j < len; ++j) yy[j] = f(aa[j], bv);
      } else if (ia == 0 && ib == 1) {
        const T av = aa[0];
#pragma omp simd
        for (int64_t j = 0; j < len; ++j) yy[j] = f(av, bb[j]);
      } else {
        for (int64_t j = 0; j < len; ++j) yy[j] = f(aa[j * ia], bb[j * ib]);
      }
    });
  });
}

// 2x2, stride-2 max-pooling of one plane of v = x * scale + shift (kAffine) or of x: maxima and their
// positions; ties keep the first position in scan order. Branch-free so that it vectorises (gathers).
template <bool kAffine, typename T>
void pool2x2_plane(const T* __restrict src, int64_t w, const int32_t* __restrict corners,
                          int64_t count, T scale, T shift, T* __restrict out, int32_t* __restrict arg,
                          T* __restrict raw = nullptr) {
  const int32_t ww = static_cast<int32_t>(w);
#pragma omp simd
  for (int64_t o = 0; o < count; ++o) {
    const int32_t base = corners[o];
    const T r00 = src[base], r01 = src[base + 1], r10 = src[base + ww], r11 = src[base + ww + 1];
    T v00 = r00, v01 = r01, v10 = r10, v11 = r11;
    if constexpr (kAffine) {
      v00 = v00 * scale + shift;
      v01 = v01 * scale + shift;
      v10 = v10 * scale + shift;
      v11 = v11 * scale + shift;
    }
    const bool top_b = v01 > v00;
    const T top = top_b ? v01 : v00;
    const int32_t top_i = top_b ? base + 1 : base;
    const bool bot_d = v11 > v10;
    const T bot = bot_d ? v11 : v10;
    const int32_t bot_i = bot_d ? base + ww + 1 : base + ww;
    const bool take_bot = bot > top;
    out[o] = take_bot ? bot : top;
    arg[o] = take_bot ? bot_i : top_i;
    if constexpr (kAffine) raw[o] = take_bot ? (bot_d ? r11 : r10) : (top_b ? r01 : r00);
  }
}

// Note [Batch norm statistics]: mean and invstd of channel ch, two passes (the variance around the mean, no
// cancellation). Each plane is summed in T across SIMD lanes (at most a few hundred terms per lane for the
// image sizes used here), the plane sums in double: the double conversions per element cost more than the
// passes themselves. Sum (x - m)^2 around the rounded mean m equals sum (x - mu)^2 + M (mu - m)^2 exactly, so
// the variance subtracts that term.
template <typename T>
std::pair<double, double> channel_stats(const T* px, int64_t n, int64_t c, int64_t hw, int64_t ch, double eps) {
  const double count = static_cast<double>(n * hw);
  double s = 0;
  for (int64_t i = 0; i < n; ++i) {
    const T* p = px + (i * c + ch) * hw;
    T acc = 0;
#pragma omp simd reduction(+ : acc)
    for (int64_t j = 0; j < hw; ++j) acc += p[j];
    s += static_cast<double>(acc);
  }
  const double mu = s / count;
  const T m = static_cast<T>(mu);
  double v = 0;
  for (int64_t i = 0; i < n; ++i) {
    const T* p = px + (i * c + ch) * hw;
    T acc = 0;
#pragma omp simd reduction(+ : acc)
    for (int64_t j = 0; j < hw; ++j) acc += (p[j] - m) * (p[j] - m);
    v += static_cast<double>(acc);
  }
  const double shift = mu - static_cast<double>(m);
  const double var = std::max(0.0, v / count - shift * shift);
  return {mu, 1.0 / std::sqrt(var + eps)};
}

// Channel ch's statistics stored in mean[ch] and invstd[ch], and the normalisation y = x * scale + shift it
// gives: the one arithmetic of batch_norm and batch_norm_max_pool.
template <typename T>
std::pair<T, T> channel_affine(const T* px, const T* gamma, const T* beta, int64_t n, int64_t c, int64_t hw,
                               int64_t ch, double eps, T* mean, T* invstd) {
  const auto [mu, inv] = channel_stats(px, n, c, hw, ch, eps);
  mean[ch] = static_cast<T>(mu);
  invstd[ch] = static_cast<T>(inv);
  return {static_cast<T>(inv * gamma[ch]), static_cast<T>(beta[ch] - mu * inv * gamma[ch])};
}


}  // namespace metafew::tensor::kernel_helpers
