#include "tensor/conv_single_channel.h"

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "tensor/parallel_for.h"
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


// Output channels [o0, o0 + kOut) of one image: y_img is (oc, P) for this image. kPix pixel vectors at a time:
// kOut x kPix independent sums of 9 products.
template <int kOut, int kPix>
void forward_block(const float* cols, int64_t stride, int64_t pixels, const float* w, const float* bias,
                   int64_t o0, float* y_img) {
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
      for (int v = 0; v < kPix; ++v) store(y_img + (o0 + u) * pixels + p + v * kLanes, acc[v][u]);
  }
  for (; p < pixels; p += kLanes) {  // the columns are zero-padded to a whole vector
    Vec acc[kOut];
    for (int u = 0; u < kOut; ++u) acc[u] = init[u];
    for (int k = 0; k < kTaps; ++k) {
      const Vec c = load(cols + k * stride + p);
      for (int u = 0; u < kOut; ++u) acc[u] += c * wk[u][k];
    }
    for (int u = 0; u < kOut; ++u) store_lanes(y_img + (o0 + u) * pixels + p, acc[u], std::min(kLanes, pixels - p));
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
    for (; o + kOut <= s.oc; o += kOut) forward_block<kOut, kPix>(cols, stride, pixels, w, bias, o, y_img);
    for (; o < s.oc; ++o) forward_block<1, kPix>(cols, stride, pixels, w, bias, o, y_img);
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

}  // namespace metafew::tensor
