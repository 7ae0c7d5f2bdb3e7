#include "tensor/conv_small_image.h"

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <vector>

#include "core/error.h"
#include "tensor/parallel_for.h"
#include "tensor/vec16.h"

namespace metafew::tensor {

// Note [Small-image weight gradient]
// The last conv-4 layer sees 3x3 pixels. oneDNN's backward-weights primitive wants its operands in the
// 16-channel-blocked layouts and writes a blocked weight gradient, so through the engine it runs between
// three reorders, and at small batches the reorder of the weight gradient alone is a large share of the
// convolution's time (figures in bench/results/conv.md), which held the engine well below the bare primitive.
// Here the gradient is one matrix product that reads NCHW and writes OIHW as they are:
//   rows    k = (n, p): every output pixel p of every image n, K = N * OH * OW of them;
//   columns r = (c, t): input channel c and kernel tap t, R = C * KH * KW: exactly the order of OIHW's row;
//   cols[k][r] = x[n][c] at the pixel under tap t when the kernel sits at p (0 in the padding), and
//   gw[o][r]   = sum_k gy[n][o][p] * cols[k][r], gbias[o] = sum_k gy[n][o][p].
// Unfolding (struct Unfolding below): where every 16-float vector of a row draws on at most 32 consecutive
// floats of the image (3x3 taps on planes of up to about 10 pixels: conv-4's case), vector j of row p is one
// two-source permute of the image's floats at base[j], padding lanes zeroed by a mask, and rows are written
// front to back in aligned vectors. Otherwise a plane (at most 16 pixels) is one vector, the taps of one
// output pixel are one permute of it, and the results are stored at r = c * taps with overlapping stores,
// each one's spare lanes overwritten by the next channel's. At batch 5 on conv-4's shape the unfolding (bias
// sums included) took 25% of the kernel's profile samples the second way and 16% the first.
// Product: register blocks of 4 output channels x 6 column vectors (24 sums, 6 loaded column vectors and one
// broadcast gy value: 31 of AVX-512's 32 registers), over the rows in order. The rows go in chunks of about
// kChunkRows so that a block's column panel (rows x 6 vectors, ~35 KB) stays in L1 while the 16 blocks of
// output channels sweep it; a chunk after the first starts its sums from gw, which continues the same sum
// in the same order. So every gw[o][r] is summed over k = 0, 1, ..., K - 1 in order, on whichever thread
// owns its block: the result is the same at any thread count.
// Threads (outside a parallel region, above kThreadMacs multiply-adds) split the (panel, channel block)
// pairs, panel-major; each unfolds the column vectors of its own panels into its own scratch, so no thread
// waits for or reads what another wrote (a shared unfolding with barriers scaled 1.4x from 1 to 2 threads).

namespace {

using vec16::kLanes;
using vec16::load;
using vec16::load_lanes;
using vec16::splat;
using vec16::store;
using vec16::store_lanes;
using vec16::thread_scratch;
using vec16::Vec;
typedef int32_t Index __attribute__((vector_size(kLanes * sizeof(int32_t))));

constexpr int64_t kMaxPlane = kLanes;  // pixels per input plane (one vector)
constexpr int64_t kMaxTaps = kLanes;   // taps per kernel (one vector)
constexpr int kRows = 4;               // output channels per register block
constexpr int kVectors = 6;            // column vectors per register block
constexpr int64_t kChunkRows = 96;
constexpr int64_t kThreadMacs = int64_t{1} << 21;  // as Note [Conv threads] in backend/dnnl/conv.cpp

struct Geometry {
  int64_t plane = 0;   // input pixels per plane
  int64_t pixels = 0;  // output pixels per image
  int64_t taps = 0;    // kh * kw
  int64_t r = 0;       // ic * taps: floats per row of gw, and meaningful floats per row of cols
  int64_t stride = 0;  // floats per row of cols: r, one spare vector, rounded up to whole vectors
  int64_t vectors = 0;         // column vectors per row that hold data: ceil(r / 16)
  int64_t chunk_images = 0;    // images per chunk
  int64_t image_floats = 0;    // floats of x per image, plus two vectors of overread
};

Geometry geometry(const ConvShape& s) {
  Geometry g;
  g.plane = s.ih * s.iw;
  g.pixels = s.oh() * s.ow();
  g.taps = s.kh * s.kw;
  g.r = s.ic * g.taps;
  g.stride = (g.r + 2 * kLanes - 1) / kLanes * kLanes;
  g.vectors = (g.r + kLanes - 1) / kLanes;
  g.chunk_images = std::max<int64_t>(1, kChunkRows / g.pixels);
  g.image_floats = s.ic * g.plane + 2 * kLanes;
  return g;
}

// The gather of output pixel p from one plane: lane t < taps holds the input pixel under tap t; valid lanes
// are those with a pixel inside the image (padding and lanes t >= taps are zeroed).
struct Pattern {
  Index index;
  Index valid;  // all ones (-1) or 0 per lane
};

// How the rows of one shape are unfolded (Note [Small-image weight gradient]), built once per shape and
// thread. Two ways:
//  - whole vectors (when each 16-float vector of a row draws on at most 32 consecutive floats of the image,
//    e.g. 3x3 taps on 3x3 planes): vector j of row p is one two-source permute of the 32 floats at
//    base[j]; the permute depends on p and on j's phase (16 j mod taps), so there are pixels x phases of
//    them. Rows are written front to back in aligned vectors.
//  - per channel (otherwise): one permute per (channel, pixel), stored at r = c * taps, overlapping.
struct Unfolding {
  ConvShape shape;
  bool built = false;
  std::vector<Pattern> pixel;  // [p]
  bool whole = false;
  int64_t phases = 0;
  std::vector<Pattern> vector;  // [p * phases + phase]: indices into 32 floats
  std::vector<int64_t> base;    // [j]: first float of the image that vector j draws on
  Index last_valid{};           // lanes of a row's last data vector below r
  Index lanes[kLanes + 1]{};    // [k]: the first k lanes
};

const Unfolding& unfolding(const ConvShape& s, const Geometry& g) {
  thread_local Unfolding u;
  if (u.built && u.shape == s) return u;
  u.shape = s;
  u.pixel.assign(static_cast<size_t>(g.pixels), Pattern{});
  for (int64_t oy = 0; oy < s.oh(); ++oy) {
    for (int64_t ox = 0; ox < s.ow(); ++ox) {
      Pattern& pat = u.pixel[static_cast<size_t>(oy * s.ow() + ox)];
      for (int64_t a = 0; a < s.kh; ++a) {
        for (int64_t b = 0; b < s.kw; ++b) {
          const int64_t iy = oy * s.sh - s.ph + a, ix = ox * s.sw - s.pw + b, t = a * s.kw + b;
          if (iy >= 0 && iy < s.ih && ix >= 0 && ix < s.iw) {
            pat.index[t] = static_cast<int32_t>(iy * s.iw + ix);
            pat.valid[t] = -1;
          }
        }
      }
    }
  }
  u.phases = g.taps / std::gcd(kLanes, g.taps);
  u.vector.assign(static_cast<size_t>(g.pixels * u.phases), Pattern{});
  u.base.resize(static_cast<size_t>(g.vectors));
  for (int64_t j = 0; j < g.vectors; ++j) u.base[static_cast<size_t>(j)] = j * kLanes / g.taps * g.plane;
  for (int64_t lane = 0; lane < kLanes; ++lane) u.last_valid[lane] = (g.vectors - 1) * kLanes + lane < g.r ? -1 : 0;
  for (int64_t k = 0; k <= kLanes; ++k) {
    for (int64_t lane = 0; lane < kLanes; ++lane) u.lanes[k][lane] = lane < k ? -1 : 0;
  }
  u.whole = true;
  for (int64_t p = 0; p < g.pixels && u.whole; ++p) {
    for (int64_t phase = 0; phase < u.phases && u.whole; ++phase) {
      // Vector `phase` stands for every j with the same phase: the offsets below are relative to base[j].
      const Pattern& pix = u.pixel[static_cast<size_t>(p)];
      Pattern& pat = u.vector[static_cast<size_t>(p * u.phases + phase)];
      const int64_t c0 = phase * kLanes / g.taps;
      for (int64_t lane = 0; lane < kLanes; ++lane) {
        const int64_t r = phase * kLanes + lane, c = r / g.taps, t = r % g.taps;
        if (!pix.valid[t]) continue;
        const int64_t from = (c - c0) * g.plane + pix.index[t];
        if (from >= 2 * kLanes) {
          u.whole = false;
          break;
        }
        pat.index[lane] = static_cast<int32_t>(from);
        pat.valid[lane] = -1;
      }
    }
  }
  u.built = true;
  return u;
}

// Per-channel bias sums of the calling thread.
Vec* bias_scratch(int64_t count) {
  thread_local std::vector<Vec> sums;
  if (static_cast<int64_t>(sums.size()) < count) sums.resize(static_cast<size_t>(count));
  return sums.data();
}

// Unfolds one image into its g.pixels rows of cols (row stride g.stride, 64-byte aligned); copy: scratch of
// g.image_floats floats. Lanes past r in a row's last data vector end up 0 (the product reads them). With the
// whole-vector unfolding only the column vectors [j_begin, j_end) are written; otherwise all of them.
void unfold_image(const float* x_image, int64_t channels, const Geometry& g, const Unfolding& u, int64_t j_begin,
                  int64_t j_end, float* rows, float* copy) {
  const int64_t plane = g.plane, taps = g.taps, stride = g.stride, pixels = g.pixels, r = g.r;
  // A copy with spare zeros after it, so that every load below stays inside it.
  const int64_t floats = channels * plane;
  std::memcpy(copy, x_image, static_cast<size_t>(floats) * sizeof(float));
  std::fill(copy + floats, copy + g.image_floats, 0.0f);
  if (u.whole) {
    const int64_t vectors = g.vectors, phases = u.phases;
    for (int64_t p = 0; p < pixels; ++p) {
      const Pattern* pats = u.vector.data() + p * phases;
      float* row = rows + p * stride;
      for (int64_t j = j_begin, phase = j_begin % phases; j < j_end;
           ++j, phase = phase + 1 == phases ? 0 : phase + 1) {
        const float* from = copy + u.base[static_cast<size_t>(j)];
        const Vec picked = vec16::shuffle(load(from), load(from + kLanes), pats[phase].index);
        *reinterpret_cast<Vec*>(row + j * kLanes) = pats[phase].valid ? picked : Vec{};
      }
      // Lanes past r (channels past the last) drew on the zeros after the copy or on the next vector's
      // floats: zero them.
      if (j_end == vectors) {
        Vec& last = *reinterpret_cast<Vec*>(row + (vectors - 1) * kLanes);
        last = u.last_valid ? last : Vec{};
      }
    }
    return;
  }
  for (int64_t c = 0; c < channels; ++c) {
    const Vec v = load(copy + c * plane);
    float* out = rows + c * taps;
    for (int64_t p = 0; p < pixels; ++p, out += stride) {
      const Vec picked = vec16::shuffle(v, u.pixel[static_cast<size_t>(p)].index);
      store(out, u.pixel[static_cast<size_t>(p)].valid ? picked : Vec{});
    }
  }
  // The lanes past r of each row's last data vector: read by the product, never stored.
  for (int64_t p = 0; p < pixels; ++p) store(rows + p * stride + r, Vec{});
}

// gw[o0 + u][16 (j0 + j) + lane] (+)= sum over the chunk's rows, for u < count (rows past count repeat
// the last one and are not stored) and j < NR; the last vector stores `last_lanes` lanes.
//   cols: the chunk's rows at column j0 * 16; gy: gy of the chunk's first image at channel o0.
template <int NR>
void product_block(const float* cols, const Geometry& g, int64_t images, const float* gy, int64_t gy_image,
                   int64_t count, float* out, int64_t last_lanes, bool accumulate) {
  Vec acc[kRows][NR];
  const float* a[kRows];
  for (int u = 0; u < kRows; ++u) {
    a[u] = gy + std::min<int64_t>(u, count - 1) * g.pixels;
    for (int j = 0; j < NR; ++j) {
      const int64_t lanes = j == NR - 1 ? last_lanes : kLanes;
      acc[u][j] = accumulate && u < count ? load_lanes(out + u * g.r + j * kLanes, lanes) : Vec{};
    }
  }
  const float* c = cols;
  for (int64_t i = 0; i < images; ++i) {
    for (int64_t p = 0; p < g.pixels; ++p, c += g.stride) {
      Vec b[NR];
      for (int j = 0; j < NR; ++j) b[j] = *reinterpret_cast<const Vec*>(c + j * kLanes);
      for (int u = 0; u < kRows; ++u) {
        const Vec av = splat(a[u][p]);
        for (int j = 0; j < NR; ++j) acc[u][j] += av * b[j];
      }
    }
    for (int u = 0; u < kRows; ++u) a[u] += gy_image;
  }
  for (int u = 0; u < count; ++u) {
    for (int j = 0; j < NR - 1; ++j) store(out + u * g.r + j * kLanes, acc[u][j]);
    store_lanes(out + u * g.r + (NR - 1) * kLanes, acc[u][NR - 1], last_lanes);
  }
}

using ProductFn = void (*)(const float*, const Geometry&, int64_t, const float*, int64_t, int64_t, float*, int64_t,
                           bool);
constexpr ProductFn kProducts[kVectors + 1] = {nullptr,          product_block<1>, product_block<2>,
                                               product_block<3>, product_block<4>, product_block<5>,
                                               product_block<6>};

}  // namespace

bool conv_small_image_supported(const ConvShape& s) {
  return s.valid() && s.ih * s.iw <= kMaxPlane && s.kh * s.kw <= kMaxTaps;
}

void conv2d_grad_weight_small_image(const float* x, const float* gy, float* gw, float* gbias, const ConvShape& s) {
  MF_CHECK(conv_small_image_supported(s), "conv2d_grad_weight_small_image: shape ", s.to_string(),
           " is not a small-image convolution (expected at most ", kMaxPlane, " input pixels per plane and ",
           kMaxTaps, " kernel taps)");
  MF_CHECK(x && gy && gw, "conv2d_grad_weight_small_image: null buffer for ", s.to_string());
  const Geometry g = geometry(s);
  const Unfolding& u = unfolding(s, g);
  const int64_t oc = s.oc, gy_image = oc * g.pixels, x_image = s.ic * g.plane;
  const int64_t blocks = (oc + kRows - 1) / kRows, panels = (g.vectors + kVectors - 1) / kVectors;
  const int64_t tiles = blocks * panels, chunks = (s.n + g.chunk_images - 1) / g.chunk_images;
  const int64_t chunk_rows = g.chunk_images * g.pixels;
  const bool par = worth_splitting(s.macs(), kThreadMacs);

  auto work = [&](int64_t nt, int64_t t) {
    // The bias: per channel, lane-wise sums of its planes' 16-pixel pieces over n (channels side by side, so
    // the chains are independent), then the lanes in order. Channels split over threads.
    if (gbias) {
      const int64_t o_begin = oc * t / nt, o_end = oc * (t + 1) / nt, total = s.n * gy_image;
      Vec* sums = bias_scratch(o_end - o_begin);
      std::fill(sums, sums + (o_end - o_begin), Vec{});
      for (int64_t n = 0; n < s.n; ++n) {
        for (int64_t o = o_begin; o < o_end; ++o) {
          const int64_t at = n * gy_image + o * g.pixels;
          for (int64_t q = 0; q < g.pixels; q += kLanes) {
            const int64_t lanes = std::min<int64_t>(kLanes, g.pixels - q);
            if (lanes == kLanes) {
              sums[o - o_begin] += load(gy + at + q);
            } else if (at + q + kLanes <= total) {  // a whole vector stays inside gy: mask the lanes past
              sums[o - o_begin] += u.lanes[lanes] ? load(gy + at + q) : Vec{};
            } else {
              sums[o - o_begin] += load_lanes(gy + at + q, lanes);
            }
          }
        }
      }
      for (int64_t o = o_begin; o < o_end; ++o) {
        float sum = 0;
        for (int64_t lane = 0; lane < kLanes; ++lane) sum += sums[o - o_begin][lane];
        gbias[o] = sum;
      }
    }
    // This thread's tiles, and the column vectors [j_begin, j_end) of the panels they cover: the thread
    // unfolds those itself, into its own scratch, so threads share nothing but the inputs.
    const int64_t tile_begin = tiles * t / nt, tile_end = tiles * (t + 1) / nt;
    if (tile_begin == tile_end) return;
    const int64_t j_begin = tile_begin / blocks * kVectors;
    const int64_t j_end = std::min(g.vectors, ((tile_end - 1) / blocks + 1) * kVectors);
    float* cols = thread_scratch(static_cast<size_t>(chunk_rows * g.stride + g.image_floats));
    float* copy = cols + chunk_rows * g.stride;
    for (int64_t chunk = 0; chunk < chunks; ++chunk) {
      const int64_t n0 = chunk * g.chunk_images, images = std::min(g.chunk_images, s.n - n0);
      for (int64_t i = 0; i < images; ++i) {
        unfold_image(x + (n0 + i) * x_image, s.ic, g, u, j_begin, j_end, cols + i * g.pixels * g.stride, copy);
      }
      for (int64_t tile = tile_begin; tile < tile_end; ++tile) {
        const int64_t panel = tile / blocks, block = tile % blocks;
        const int64_t j0 = panel * kVectors, nr = std::min<int64_t>(kVectors, g.vectors - j0);
        const int64_t o0 = block * kRows, count = std::min<int64_t>(kRows, oc - o0);
        const int64_t last_lanes = j0 + nr == g.vectors ? g.r - (g.vectors - 1) * kLanes : kLanes;
        kProducts[nr](cols + j0 * kLanes, g, images, gy + n0 * gy_image + o0 * g.pixels, gy_image, count,
                      gw + o0 * g.r + j0 * kLanes, last_lanes, chunk > 0);
      }
    }
  };
  parallel_team(par, work);
}

}  // namespace metafew::tensor
