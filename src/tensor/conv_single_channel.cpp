#include "tensor/conv_single_channel.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "tensor/parallel_for.h"
#include "tensor/pool2x2.h"
#include "tensor/vec16.h"

namespace metafew::tensor {

// Note [Single-channel convolution]
// With one input channel, oneDNN's direct kernels want their 64-channel operand (the output y, or the
// gradient gy) in the 16-channel-blocked layout nChw16c, and metafew's tensors are plain NCHW; a reorder of
// that operand is a second pass over the largest tensor of the network, and oneDNN's GEMM path for NCHW is
// slower still (bench/results/conv.md: the wrapper reached 0.35-0.51 of the bare primitive for backward
// weights, 0.79-0.95 forward). Both kernels are small products once the input is unfolded:
//   columns c[k][p] = x at tap k = (a, b) for output pixel p (0 outside the image), 9 x P for P = oh * ow;
//   forward          y[o][p]  = sum_k w[o][k] c[k][p]             (64 x P from 64 x 9 times 9 x P)
//   backward weights gw[o][k] = sum_{n,p} gy[n][o][p] c_n[k][p]   (64 x 9 from dot products of length P)
// The columns of one image (9 x 784 floats for 28x28) stay in L1, and both products run on 16-float vectors
// over p with register blocks wide enough to keep the FMA units busy: the forward holds 4 pixel vectors x 2
// output channels (8 independent sums of 9 products, 18 weights in registers), the backward 3 output
// channels x 9 taps (27 sums). For stride 1 the columns are copied, in whole vectors, from a zero-padded
// image. All scratch is 64-byte aligned: a vector load that splits a cache line costs two.
// Each reads and writes the NCHW tensors once, in their own layout. Backward data is not here: oneDNN's
// GEMM path already beats its own direct kernel there (Note [Conv layout]).
// GCC vector extensions keep the code portable: on a machine without AVX-512 a 16-float vector becomes two
// or four narrower registers.

namespace {

using vec16::kLanes;
using vec16::load;
using vec16::splat;
using vec16::store;
using vec16::store_lanes;
using vec16::thread_scratch;
using vec16::Vec;
constexpr int kTaps = 9;
constexpr int64_t kPrefetch = 4 * kLanes;  // floats ahead (4 cache lines)
// Keeps v in a register: GCC otherwise folds a load used by several FMAs into each of them as a memory
// operand, which doubles the loads of the backward kernel.
inline void in_register([[maybe_unused]] Vec& v) {
#if defined(__GNUC__) && defined(__AVX512F__)
  asm("" : "+v"(v));
#endif
}
inline float horizontal_sum(const Vec& v) {
  float s = 0;
  for (int64_t i = 0; i < kLanes; ++i) s += v[i];
  return s;
}

int64_t padded_pixels(const ConvShape& s) { return (s.oh() * s.ow() + kLanes - 1) / kLanes * kLanes; }

// Floats of scratch build_columns needs: the columns (9 rows of `stride`, plus one vector of overrun) and,
// for stride 1, the zero-padded image (plus one vector of overread).
int64_t column_scratch_floats(const ConvShape& s, int64_t stride) {
  return kTaps * stride + kLanes + (s.ih + 2 * s.ph) * (s.iw + 2 * s.pw) + kLanes;
}

// Unfolds one image into cols (kTaps rows of `stride` floats, zero beyond oh * ow); scratch as above.
void build_columns(const float* x, const ConvShape& s, int64_t stride, float* scratch) {
  const int64_t oh = s.oh(), ow = s.ow(), pixels = oh * ow;
  float* cols = scratch;
  if (s.sh == 1 && s.sw == 1) {
    // Through a zero-padded copy of the image: each column row is then a plain copy, done in whole vectors
    // (a row's last vector runs into the next row, which is written after it, or into the zeroed tail).
    const int64_t hp = s.ih + 2 * s.ph, wp = s.iw + 2 * s.pw;
    float* padded = scratch + kTaps * stride + kLanes;
    std::fill(padded, padded + hp * wp + kLanes, 0.0f);
    for (int64_t r = 0; r < s.ih; ++r) {
      std::copy(x + r * s.iw, x + (r + 1) * s.iw, padded + (r + s.ph) * wp + s.pw);
    }
    for (int a = 0; a < 3; ++a) {
      for (int b = 0; b < 3; ++b) {
        float* c = cols + (a * 3 + b) * stride;
        const float* src = padded + a * wp + b;
        for (int64_t i = 0; i < oh; ++i) {
          for (int64_t j = 0; j < ow; j += kLanes) store(c + i * ow + j, load(src + i * wp + j));
        }
        std::fill(c + pixels, c + stride, 0.0f);
      }
    }
    return;
  }
  for (int a = 0; a < 3; ++a) {
    for (int b = 0; b < 3; ++b) {
      float* c = cols + (a * 3 + b) * stride;
      // Output columns j whose input column q = j * sw - pw + b lies inside the image: [j0, j1).
      int64_t j0 = 0;
      while (j0 < ow && j0 * s.sw - s.pw + b < 0) ++j0;
      int64_t j1 = ow;
      while (j1 > j0 && (j1 - 1) * s.sw - s.pw + b >= s.iw) --j1;
      for (int64_t i = 0; i < oh; ++i) {
        float* __restrict row = c + i * ow;
        const int64_t r = i * s.sh - s.ph + a;
        if (r < 0 || r >= s.ih) {
          for (int64_t j = 0; j < ow; ++j) row[j] = 0.0f;
          continue;
        }
        const float* __restrict xrow = x + r * s.iw + (b - s.pw);
        for (int64_t j = 0; j < j0; ++j) row[j] = 0.0f;
        for (int64_t j = j0; j < j1; ++j) row[j] = xrow[j * s.sw];
        for (int64_t j = j1; j < ow; ++j) row[j] = 0.0f;
      }
      std::fill(c + pixels, c + stride, 0.0f);
    }
  }
}

bool use_threads(int64_t macs) { return worth_splitting(macs, int64_t{1} << 21); }


// Output channels [o0, o0 + kOut) of one image into out (kOut planes of P pixels, channel o0 first). kPix
// pixel vectors at a time: kOut x kPix independent sums of 9 products.
template <int kOut, int kPix>
void forward_block(const float* cols, int64_t stride, int64_t pixels, const float* w, const float* bias,
                   int64_t o0, float* out) {
  float wk[kOut][kTaps];
  for (int u = 0; u < kOut; ++u)
    for (int k = 0; k < kTaps; ++k) wk[u][k] = w[(o0 + u) * kTaps + k];
  Vec init[kOut];
  for (int u = 0; u < kOut; ++u) init[u] = splat(bias ? bias[o0 + u] : 0.0f);
  int64_t p = 0;
  for (; p + kPix * kLanes <= pixels; p += kPix * kLanes) {
    Vec acc[kPix][kOut];
    for (int v = 0; v < kPix; ++v)
      for (int u = 0; u < kOut; ++u) acc[v][u] = init[u];
    for (int k = 0; k < kTaps; ++k) {
      Vec c[kPix];
      for (int v = 0; v < kPix; ++v) {
        c[v] = load(cols + k * stride + p + v * kLanes);
        in_register(c[v]);
      }
      for (int u = 0; u < kOut; ++u)
        for (int v = 0; v < kPix; ++v) acc[v][u] += c[v] * wk[u][k];
    }
    for (int u = 0; u < kOut; ++u)
      for (int v = 0; v < kPix; ++v) store(out + u * pixels + p + v * kLanes, acc[v][u]);
  }
  for (; p < pixels; p += kLanes) {  // the columns are zero-padded to a whole vector
    Vec acc[kOut];
    for (int u = 0; u < kOut; ++u) acc[u] = init[u];
    for (int k = 0; k < kTaps; ++k) {
      const Vec c = load(cols + k * stride + p);
      for (int u = 0; u < kOut; ++u) acc[u] += c * wk[u][k];
    }
    for (int u = 0; u < kOut; ++u) store_lanes(out + u * pixels + p, acc[u], std::min(kLanes, pixels - p));
  }
}

// Adds one image's contribution to the vector sums of output channels [o0, o0 + kOut): acc[u * 9 + k] for
// the weights and bacc[u] for the bias of channel o0 + u.
template <int kOut>
void grad_weight_block(const float* cols, int64_t stride, int64_t pixels, const float* gy_img, int64_t o0,
                       Vec* acc, Vec* bacc) {
  Vec a[kOut][kTaps], ba[kOut];
  for (int u = 0; u < kOut; ++u) {
    for (int k = 0; k < kTaps; ++k) a[u][k] = acc[u * kTaps + k];
    ba[u] = bacc[u];
  }
  auto step = [&](const Vec (&g)[kOut], int64_t p) {
    for (int k = 0; k < kTaps; ++k) {
      Vec c = load(cols + k * stride + p);
      in_register(c);
      for (int u = 0; u < kOut; ++u) a[u][k] += g[u] * c;
    }
    for (int u = 0; u < kOut; ++u) ba[u] += g[u];
  };
  int64_t p = 0;
  for (; p + kLanes <= pixels; p += kLanes) {
    Vec g[kOut];
    for (int u = 0; u < kOut; ++u) {
      // gy streams from L2 or memory, one line per vector: ask for it a few iterations ahead.
      __builtin_prefetch(gy_img + (o0 + u) * pixels + p + kPrefetch);
      g[u] = load(gy_img + (o0 + u) * pixels + p);
    }
    step(g, p);
  }
  if (p < pixels) {  // the last partial vector: gy beyond the plane must not be read (it may not be finite)
    Vec g[kOut];
    for (int u = 0; u < kOut; ++u) {
      g[u] = Vec{};
      std::memcpy(&g[u], gy_img + (o0 + u) * pixels + p, static_cast<size_t>(pixels - p) * sizeof(float));
    }
    step(g, p);
  }
  for (int u = 0; u < kOut; ++u) {
    for (int k = 0; k < kTaps; ++k) acc[u * kTaps + k] = a[u][k];
    bacc[u] = ba[u];
  }
}

}  // namespace

bool conv_single_channel_supported(const ConvShape& s) { return s.valid() && s.ic == 1 && s.kh == 3 && s.kw == 3; }

void conv2d_single_channel(const float* x, const float* w, const float* bias, float* y, const ConvShape& s) {
  MF_CHECK(conv_single_channel_supported(s), "conv2d_single_channel: shape ", s.to_string(),
           " is not a one-input-channel 3x3 convolution");
  MF_CHECK(x && w && y, "conv2d_single_channel: null buffer for ", s.to_string());
  const int64_t pixels = s.oh() * s.ow(), stride = padded_pixels(s), image = s.ih * s.iw;
  constexpr int kOut = 2, kPix = 4;  // measured best of (4, 2), (4, 3), (8, 2), (6, 2), (2, 4), (8, 1)
  const bool par = use_threads(s.macs());
  parallel_for(s.n, par, [&](int64_t n) {
    float* cols = thread_scratch(static_cast<size_t>(column_scratch_floats(s, stride)));
    build_columns(x + n * image, s, stride, cols);
    float* y_img = y + n * s.oc * pixels;
    int64_t o = 0;
    for (; o + kOut <= s.oc; o += kOut) forward_block<kOut, kPix>(cols, stride, pixels, w, bias, o, y_img + o * pixels);
    for (; o < s.oc; ++o) forward_block<1, kPix>(cols, stride, pixels, w, bias, o, y_img + o * pixels);
  });
}

void conv2d_grad_weight_single_channel(const float* x, const float* gy, float* gw, float* gbias,
                                       const ConvShape& s) {
  MF_CHECK(conv_single_channel_supported(s), "conv2d_grad_weight_single_channel: shape ", s.to_string(),
           " is not a one-input-channel 3x3 convolution");
  MF_CHECK(x && gy && gw, "conv2d_grad_weight_single_channel: null buffer for ", s.to_string());
  const int64_t pixels = s.oh() * s.ow(), stride = padded_pixels(s), image = s.ih * s.iw;
  constexpr int kOut = 3;
  const int64_t blocks = (s.oc + kOut - 1) / kOut;
  const bool par = use_threads(s.macs()) && blocks > 1;
  // Threads split the output channels, never the batch: every sum runs over n in order on one thread.
  // Opens a region only when it splits (Note [No empty parallel regions] in tensor/parallel_for.h).
  auto work = [&](int64_t nt, int64_t t) {
    const int64_t b0 = blocks * t / nt, b1 = blocks * (t + 1) / nt;
    const int64_t o_begin = std::min(s.oc, b0 * kOut), o_end = std::min(s.oc, b1 * kOut);
    if (o_begin < o_end) {
      // One scratch block per thread: the columns, then the vector sums (aligned to a whole vector).
      const int64_t count = o_end - o_begin;
      const int64_t col_floats = column_scratch_floats(s, stride);
      float* scratch = thread_scratch(static_cast<size_t>(col_floats + (count * (kTaps + 1) + 1) * kLanes));
      float* cols = scratch;
      // Vec needs 64-byte alignment for direct access: round the sums' start up inside the scratch.
      auto base = reinterpret_cast<uintptr_t>(scratch + col_floats);
      base = (base + sizeof(Vec) - 1) / sizeof(Vec) * sizeof(Vec);
      Vec* acc = reinterpret_cast<Vec*>(base);  // (o - o_begin) * 9 + k
      Vec* bacc = acc + count * kTaps;           // o - o_begin
      std::fill(acc, acc + count * (kTaps + 1), Vec{});
      for (int64_t n = 0; n < s.n; ++n) {
        build_columns(x + n * image, s, stride, cols);
        const float* gy_img = gy + n * s.oc * pixels;
        int64_t o = o_begin;
        for (; o + kOut <= o_end; o += kOut) {
          grad_weight_block<kOut>(cols, stride, pixels, gy_img, o, acc + (o - o_begin) * kTaps, bacc + (o - o_begin));
        }
        for (; o < o_end; ++o) {
          grad_weight_block<1>(cols, stride, pixels, gy_img, o, acc + (o - o_begin) * kTaps, bacc + (o - o_begin));
        }
      }
      for (int64_t o = o_begin; o < o_end; ++o) {
        for (int k = 0; k < kTaps; ++k) gw[o * kTaps + k] = horizontal_sum(acc[(o - o_begin) * kTaps + k]);
        if (gbias) gbias[o] = horizontal_sum(bacc[o - o_begin]);
      }
    }
  };
  parallel_team(par, work);
}

// Note [First block fused]
// Every Omniglot network starts conv (1 -> 64 channels, 3x3, padding 1) -> batch norm -> 2x2 max-pool, and
// the convolution's output there is the largest tensor of the network (n x 64 x 28 x 28: 15 MB for a query
// batch of 75). Unfused, it is written once and read three times in the forward (the statistics' two passes,
// the pooling), and the backward writes its gradient dx (as large) and reads x and dx again. Here neither is
// ever formed:
// - Statistics. With P(p) the 9 taps of output pixel p (the zero-padded 3x3 patch), x_c(p) = w_c . P(p) + b_c,
//   so over the M = n * oh * ow pixels mean_c = w_c . Pbar + b_c and var_c = w_c^T Cov w_c, with Pbar the
//   patches' mean (9 numbers) and Cov their centred second moment (9 x 9), both from the input alone:
//   9 + 45 dot products per image instead of two passes over 64 planes. Both are summed around the float
//   mean of the patches, per image in float and over images in double, as Note [Batch norm statistics].
// - Forward. Per image, the input is unfolded in window order (tap k of corner d of window q at column
//   d * ps + q), so the direct kernel's forward_block writes two channels at a time as four corner planes
//   to an L1 buffer, and normalising and pooling them is element-wise over the windows (pool_corner_planes:
//   pool2x2_plane's comparisons in its order, without its gathers). Pixels in no window (the last row or
//   column of an odd side) are not computed: only the statistics see them, through the moments.
// - Backward. With gz the pooled gradient scattered to the argmax positions, s1 = sum(gz), s0 = sum(gz * xh)
//   (the batch-norm sums) and scale = gamma * invstd, batch norm's backward is
//   dx = scale * (gz - s1 / M - xh * s0 / M), and the weight gradient sum_p dx(p) P(p) splits into a sparse
//   part and one that the moments give in closed form:
//     gw_c = scale_c * (T_c - s0 * invstd_c * (Cov w_c)),   T_c = sum_q g(q) (P(argmax q) - Pbar),
//   using sum_p (x(p) - mean) P(p) = M * Cov w; and since x - mean = w . (P - Pbar), s0 = invstd_c * (w_c . T_c)
//   comes from the same sums (the forward keeps no copy of x at the argmax). T_c adds, per pooled output q,
//   g(q) times the argmax pixel's centred patch, kept per image as a 16-float vector per pixel (9 taps, then
//   a 1 whose lane sums g into s1, then zeros). The bias gradient is zero: batch norm removes any
//   per-channel constant.
// The sums over images run in image order on one thread per channel (forward statistics: one thread), so the
// results do not depend on the thread count. Rounding differs from the unfused ops (other summation orders,
// statistics in closed form): tests/ops/test_first_block.cpp holds both to the f64 reference.

namespace {

// The patch moments of x for the fused first block: moments[0..8] = Pbar, moments[9 + 9 * k + l] = Cov[k][l].
void patch_moments(const float* x, const ConvShape& s, double* moments) {
  const int64_t pixels = s.oh() * s.ow(), stride = padded_pixels(s), image = s.ih * s.iw;
  const double count = static_cast<double>(s.n * pixels);
  const int64_t col_floats = column_scratch_floats(s, stride);
  float* scratch = thread_scratch(static_cast<size_t>(col_floats + kTaps * stride));
  float* cols = scratch;
  float* centred = scratch + col_floats;
  double sums[kTaps] = {};
  for (int64_t n = 0; n < s.n; ++n) {
    build_columns(x + n * image, s, stride, cols);
    for (int k = 0; k < kTaps; ++k) {
      const float* c = cols + k * stride;
      float acc = 0;
#pragma omp simd reduction(+ : acc)
      for (int64_t p = 0; p < pixels; ++p) acc += c[p];
      sums[k] += static_cast<double>(acc);
    }
  }
  double mean[kTaps], shift[kTaps];
  float m[kTaps];
  for (int k = 0; k < kTaps; ++k) {
    mean[k] = sums[k] / count;
    m[k] = static_cast<float>(mean[k]);
    shift[k] = mean[k] - static_cast<double>(m[k]);
  }
  double prod[kTaps][kTaps] = {};
  for (int64_t n = 0; n < s.n; ++n) {
    build_columns(x + n * image, s, stride, cols);
    for (int k = 0; k < kTaps; ++k) {
      const float* __restrict c = cols + k * stride;
      float* __restrict d = centred + k * stride;
#pragma omp simd
      for (int64_t p = 0; p < pixels; ++p) d[p] = c[p] - m[k];
    }
    for (int k = 0; k < kTaps; ++k)
      for (int l = k; l < kTaps; ++l) {
        const float* a = centred + k * stride;
        const float* b = centred + l * stride;
        float acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t p = 0; p < pixels; ++p) acc += a[p] * b[p];
        prod[k][l] += static_cast<double>(acc);
      }
  }
  // sum (P_k - m_k)(P_l - m_l) = sum (P_k - Pbar_k)(P_l - Pbar_l) + M shift_k shift_l.
  for (int k = 0; k < kTaps; ++k) {
    moments[k] = mean[k];
    for (int l = k; l < kTaps; ++l) {
      const double cov = prod[k][l] / count - shift[k] * shift[l];
      moments[kTaps + k * kTaps + l] = moments[kTaps + l * kTaps + k] = cov;
    }
  }
}

// The 2x2 max-pooling of one channel whose window corners are four planes x00 + d * ps (d = 2 di + dj), after
// v = x * scale + shift: pool2x2_plane's comparisons in its order (the same maxima, positions and ties), 16
// windows at a time. Written with vector types: GCC does not if-convert the scalar form of these selects.
// The planes hold ps >= per values (the padding is finite); nothing is written past per.
typedef int32_t IVec __attribute__((vector_size(kLanes * sizeof(int32_t))));
void pool_corner_planes(const float* __restrict x00, int64_t ps, const int32_t* __restrict corners, int64_t per,
                        int32_t w, float scale, float shift, bool relu, float* __restrict y,
                        int32_t* __restrict idx) {
  const Vec sc = splat(scale), sh = splat(shift), zero_f{};
  const IVec zero{}, one = zero + 1, right = zero + w, diagonal = zero + (w + 1);
  for (int64_t q = 0; q < per; q += kLanes) {
    const int64_t lanes = std::min(kLanes, per - q);
    const Vec r00 = load(x00 + q), r01 = load(x00 + ps + q), r10 = load(x00 + 2 * ps + q);
    const Vec r11 = load(x00 + 3 * ps + q);
    const Vec v00 = r00 * sc + sh, v01 = r01 * sc + sh, v10 = r10 * sc + sh, v11 = r11 * sc + sh;
    const IVec top_b = v01 > v00, bot_d = v11 > v10;
    const Vec top = top_b ? v01 : v00, bot = bot_d ? v11 : v10;
    const IVec take_bot = bot > top;
    // Whole vectors with fixed-size copies (one move each); the last partial one lane by lane.
    const size_t bytes = static_cast<size_t>(lanes) * sizeof(int32_t);
    IVec corner{};
    if (lanes == kLanes) {
      std::memcpy(&corner, corners + q, sizeof corner);
    } else {
      std::memcpy(&corner, corners + q, bytes);
    }
    const IVec at = corner + (take_bot ? (bot_d ? diagonal : right) : (top_b ? one : zero));
    if (lanes == kLanes) {
      std::memcpy(idx + q, &at, sizeof at);
    } else {
      std::memcpy(idx + q, &at, bytes);
    }
    const Vec best = take_bot ? bot : top;
    store_lanes(y + q, relu ? (best > zero_f ? best : zero_f) : best, lanes);  // unary relu's arithmetic
  }
}

}  // namespace

bool first_block_supported(const ConvShape& s) {
  return conv_single_channel_supported(s) && s.sh == 1 && s.sw == 1 && s.ph == 1 && s.pw == 1 && s.oh() >= 2 &&
         s.ow() >= 2;
}

void first_block_forward(const float* x, const float* w, const float* bias, const float* gamma, const float* beta,
                         double eps, bool relu, const ConvShape& s, float* y, int32_t* idx, float* mean,
                         float* invstd, double* moments) {
  MF_CHECK(first_block_supported(s), "first_block_forward: shape ", s.to_string(),
           " is not a one-input-channel 3x3 convolution with stride 1 and padding 1");
  MF_CHECK(x && w && bias && gamma && beta && y && idx && mean && invstd && moments,
           "first_block_forward: null buffer for ", s.to_string());
  patch_moments(x, s, moments);
  const double* pbar = moments;
  const double* cov = moments + kTaps;
  std::vector<float> scale(static_cast<size_t>(s.oc)), shift(static_cast<size_t>(s.oc));
  for (int64_t o = 0; o < s.oc; ++o) {
    const float* wo = w + o * kTaps;
    double mu = bias[o], var = 0;
    for (int k = 0; k < kTaps; ++k) {
      mu += static_cast<double>(wo[k]) * pbar[k];
      double row = 0;
      for (int l = 0; l < kTaps; ++l) row += cov[k * kTaps + l] * static_cast<double>(wo[l]);
      var += static_cast<double>(wo[k]) * row;
    }
    const double inv = 1.0 / std::sqrt(std::max(0.0, var) + eps);
    mean[o] = static_cast<float>(mu);
    invstd[o] = static_cast<float>(inv);
    scale[static_cast<size_t>(o)] = static_cast<float>(inv * gamma[o]);
    shift[static_cast<size_t>(o)] = static_cast<float>(beta[o] - mu * inv * gamma[o]);
  }
  const int64_t wd = s.ow(), image = s.ih * s.iw, hp = s.ih + 2, wp = s.iw + 2;
  const int64_t oh2 = s.oh() / 2, ow2 = wd / 2, per = oh2 * ow2;
  const int64_t ps = (per + kLanes - 1) / kLanes * kLanes, pixels = 4 * ps;  // four corner planes of ps
  const std::vector<int32_t> corners = pool2x2_corners(s.oh(), wd);
  const int32_t w32 = static_cast<int32_t>(wd);
  constexpr int kOut = 2, kPix = 4;  // as conv2d_single_channel
  parallel_for(s.n, use_threads(s.macs()), [&](int64_t n) {
    const int64_t padded_floats = (hp * wp + kLanes - 1) / kLanes * kLanes;
    float* scratch = thread_scratch(static_cast<size_t>(kTaps * pixels + padded_floats + kOut * pixels));
    float* cols = scratch;
    float* padded = cols + kTaps * pixels;
    float* planes = padded + padded_floats;  // kOut channels of the convolution's output at the window pixels
    // Columns in window order: tap k of corner (di, dj) of window q at cols[k][(2 di + dj) ps + q], so the
    // output comes out as four corner planes and pooling them is element-wise (no gathers).
    std::fill(padded, padded + hp * wp, 0.0f);
    for (int64_t r = 0; r < s.ih; ++r)
      std::copy(x + n * image + r * s.iw, x + n * image + (r + 1) * s.iw, padded + (r + 1) * wp + 1);
    for (int k = 0; k < kTaps; ++k) {
      const int a = k / 3, b = k % 3;
      for (int d = 0; d < 4; ++d) {
        float* __restrict row = cols + k * pixels + d * ps;
        const float* __restrict src = padded + (d / 2 + a) * wp + d % 2 + b;
        for (int64_t i = 0; i < oh2; ++i)
          for (int64_t j = 0; j < ow2; ++j) row[i * ow2 + j] = src[2 * i * wp + 2 * j];
        std::fill(row + per, row + ps, 0.0f);
      }
    }
    auto pool = [&](int64_t o, int64_t count) {
      for (int64_t u = 0; u < count; ++u) {
        const int64_t plane = (n * s.oc + o + u) * per;
        pool_corner_planes(planes + u * pixels, ps, corners.data(), per, w32, scale[static_cast<size_t>(o + u)],
                           shift[static_cast<size_t>(o + u)], relu, y + plane, idx + plane);
      }
    };
    int64_t o = 0;
    for (; o + kOut <= s.oc; o += kOut) {
      forward_block<kOut, kPix>(cols, pixels, pixels, w, bias, o, planes);
      pool(o, kOut);
    }
    for (; o < s.oc; ++o) {
      forward_block<1, kPix>(cols, pixels, pixels, w, bias, o, planes);
      pool(o, 1);
    }
  });
}

void first_block_backward(const float* x, const float* w, const float* g, const float* relu_y, const int32_t* idx,
                          const float* gamma, const float* invstd, const double* moments, const ConvShape& s,
                          float* gw, float* ggamma, float* gbeta) {
  MF_CHECK(first_block_supported(s), "first_block_backward: shape ", s.to_string(),
           " is not a one-input-channel 3x3 convolution with stride 1 and padding 1");
  MF_CHECK(x && w && g && idx && gamma && invstd && moments && gw && ggamma && gbeta,
           "first_block_backward: null buffer for ", s.to_string());
  const int64_t h = s.oh(), wd = s.ow(), per = (h / 2) * (wd / 2), image = s.ih * s.iw;
  const int64_t hp = s.ih + 2, wp = s.iw + 2;
  const double* pbar = moments;
  const double* cov = moments + kTaps;
  // Patches are stored around the float tap means m; d = Pbar - m is the rest of the exact mean.
  float m[kTaps];
  double d[kTaps];
  for (int k = 0; k < kTaps; ++k) {
    m[k] = static_cast<float>(pbar[k]);
    d[k] = pbar[k] - static_cast<double>(m[k]);
  }
  const bool par = use_threads(s.macs()) && s.oc > 1;
  // Threads split the output channels, never the batch: every sum runs over n in order on one thread.
  auto work = [&](int64_t nt, int64_t t) {
    const int64_t o_begin = s.oc * t / nt, o_end = s.oc * (t + 1) / nt, chans = o_end - o_begin;
    if (chans <= 0) return;
    // Scratch: the padded image, each pixel's centred 3x3 patch as a 16-float vector (9 taps, then a 1 so
    // that lane 9 of a sum of g * patch is the sum of g, then zeros), then the per-channel double sums.
    const int64_t padded_floats = (hp * wp + kLanes - 1) / kLanes * kLanes;
    float* scratch = thread_scratch(static_cast<size_t>(padded_floats + h * wd * kLanes + chans * kLanes * 2));
    float* padded = scratch;
    float* patches = scratch + padded_floats;  // 64-byte aligned: padded_floats is a whole number of vectors
    double* sums = reinterpret_cast<double*>(patches + h * wd * kLanes);  // (o - o_begin) * 16 + lane
    std::fill(sums, sums + chans * kLanes, 0.0);
    for (int64_t n = 0; n < s.n; ++n) {
      std::fill(padded, padded + hp * wp, 0.0f);
      for (int64_t r = 0; r < s.ih; ++r)
        std::copy(x + n * image + r * s.iw, x + n * image + (r + 1) * s.iw, padded + (r + 1) * wp + 1);
      for (int64_t r = 0; r < h; ++r)
        for (int64_t c = 0; c < wd; ++c) {
          float* patch = patches + (r * wd + c) * kLanes;
          for (int a = 0; a < 3; ++a)
            for (int b = 0; b < 3; ++b) patch[a * 3 + b] = padded[(r + a) * wp + c + b] - m[a * 3 + b];
          patch[kTaps] = 1.0f;
          std::fill(patch + kTaps + 1, patch + kLanes, 0.0f);
        }
      for (int64_t o = o_begin; o < o_end; ++o) {
        const int64_t plane = (n * s.oc + o) * per;
        const float* __restrict gp = g + plane;
        const float* __restrict yr = relu_y ? relu_y + plane : nullptr;
        const int32_t* __restrict ip = idx + plane;
        // relu_grad's g * (y > 0) when the output went through the relu.
        auto gv = [&](int64_t q) { return yr && !(yr[q] > 0.0f) ? 0.0f : gp[q]; };
        // sum_q g(q) (P(argmax q) - m) and sum_q g(q): one patch vector per pooled output, four sums.
        Vec acc[4] = {};
        int64_t q = 0;
        for (; q + 4 <= per; q += 4)
          for (int v = 0; v < 4; ++v) acc[v] += splat(gv(q + v)) * load(patches + int64_t{ip[q + v]} * kLanes);
        for (; q < per; ++q) acc[0] += splat(gv(q)) * load(patches + int64_t{ip[q]} * kLanes);
        const Vec total = (acc[0] + acc[1]) + (acc[2] + acc[3]);
        double* sum = sums + (o - o_begin) * kLanes;
        for (int k = 0; k <= kTaps; ++k) sum[k] += static_cast<double>(total[k]);
      }
    }
    for (int64_t o = o_begin; o < o_end; ++o) {
      const double inv = invstd[o], scale = static_cast<double>(gamma[o]) * inv;
      const double* sum = sums + (o - o_begin) * kLanes;
      const double s1 = sum[kTaps];
      // tap[k] = sum_q g(q) (P_k(argmax q) - Pbar_k); s0 = sum(gz * xh) = invstd * (w . tap), since
      // x - mean = w . (P - Pbar) (the bias cancels).
      double tap[kTaps], w_tap = 0;
      for (int k = 0; k < kTaps; ++k) {
        tap[k] = sum[k] - s1 * d[k];
        w_tap += static_cast<double>(w[o * kTaps + k]) * tap[k];
      }
      const double s0 = w_tap * inv;
      ggamma[o] = static_cast<float>(s0);
      gbeta[o] = static_cast<float>(s1);
      for (int k = 0; k < kTaps; ++k) {
        double cov_w = 0;
        for (int l = 0; l < kTaps; ++l) cov_w += cov[k * kTaps + l] * static_cast<double>(w[o * kTaps + l]);
        gw[o * kTaps + k] = static_cast<float>(scale * (tap[k] - s0 * inv * cov_w));
      }
    }
  };
  parallel_team(par, work);
}

}  // namespace metafew::tensor
