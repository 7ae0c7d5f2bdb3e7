#include "tensor/blocked_layout.h"

#include <omp.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <cstdint>
#include <utility>
#include <vector>

#include "core/error.h"
#include "tensor/parallel_for.h"
#include "tensor/vec16.h"

namespace metafew::tensor {

// Note [Blocked reorders]
// oneDNN's direct convolution kernels compute in 16-blocked layouts (nChw16c activations, OIhw16i16o and
// OIhw16o16i weights) and metafew's tensors are plain, so a blocked convolution reorders its operands at the
// boundary (Note [Conv layout] in backend/dnnl/conv.cpp). oneDNN 2.6's own reorders for these pairs were the
// gap between the engine and the bare primitive (bench/results/conv.md): ~10 us for the 147 KB weight
// gradient of a 64->64 3x3 layer, where the convolution at 3x3 pixels and batch 5 takes ~27 us.
// Every one of these reorders is a set of 16 x 16 transposes between rows of 16 floats: a row of the blocked
// layout is one pixel's (or one tap's) 16 channels; a row of the plain layout is 16 consecutive pixels of one
// channel (or, for weights, 16 consecutive (input channel, tap) entries of one output channel, since oihw
// keeps the taps of an input channel together). transpose16 loads 16 rows from any 16 addresses, transposes
// them in registers in four butterfly stages (stage d swaps the off-diagonal d x d blocks of every 2d x 2d
// block: 16 two-source shuffles), and stores the 16 columns to any 16 addresses. So the only work per layout
// is computing row addresses:
//   nchw -> nChw16c       tile (16 channels x 16 pixels): rows = channels (stride hw), columns -> pixels.
//                          A last partial tile of pixels (hw % 16) is read or written with masked
//                          vector loads and stores (element by element without AVX-512).
//   oihw -> OIhw16i16o    per (16 o, 16 i) block the plain rows of output channel o hold 16 k entries
//                          ordered (i, tap); tile t covers entries 16t..16t+15 of all 16 o and transposes
//                          to the blocked rows (tap, i) holding 16 o.
//   oihw -> OIhw16o16i    the same into a [i][tap][o] scratch block, then per tap a second transpose from
//                          its 16 rows (i) of 16 o into the blocked rows (tap, o) holding 16 i.
// and the inverse directions swap sources and destinations. With AVX-512 the first two butterfly stages are
// done by the loads (see transpose16).
// Two more things matter for large activations. (1) The plain rows of a channel block start anywhere within
// a cache line (a 7x7 plane is 49 floats), so blocked -> plain first transposes a block into an aligned
// staging block in L1 and then copies the block, which is contiguous in nchw, out in whole aligned vectors.
// (2) A reorder writing 16 MB or more (batch 2560 here) streams its stores past the caches: the destination
// cannot stay in L2 anyway, and a streamed line is not read before it is written.
// These beat oneDNN 2.6's reorders at every conv-4 shape measured, so the conv backend uses them for every
// whole-block pair (the timings, and what the staging block and streamed stores each bought: bench/results/conv.md,
// "Blocked reorders").

namespace {

constexpr int64_t kB = vec16::kLanes;  // block = vector width in floats
// Reorders of fewer floats than this stay on the calling thread.
constexpr int64_t kParallelFloats = int64_t{1} << 16;

// Activation reorders writing at least this many bytes use streaming stores (Note [Blocked reorders]).
constexpr int64_t kStreamBytes = int64_t{16} << 20;

bool may_split(int64_t floats) {
  return worth_splitting(floats, kParallelFloats);
}

using vec16::load;
using vec16::store;
using vec16::Vec;
typedef int32_t Mask __attribute__((vector_size(kB * sizeof(int32_t))));

// A store that bypasses the caches (p 64-byte aligned); a plain store without AVX-512.
inline void stream_store(float* p, const Vec& v) {
#if defined(__AVX512F__)
  _mm512_stream_ps(p, reinterpret_cast<__m512>(v));
#else
  store(p, v);
#endif
}

// Masks of butterfly stage D: rows a (bit D clear) and b = a + D exchange their off-diagonal halves.
// new a[c] = c has bit D ? b[c - D] : a[c];  new b[c] = c has bit D ? b[c] : a[c + D].
template <int D, std::size_t... C>
constexpr Mask low_mask(std::index_sequence<C...>) {
  return Mask{((C & D) ? static_cast<int32_t>(kB + C - D) : static_cast<int32_t>(C))...};
}
template <int D, std::size_t... C>
constexpr Mask high_mask(std::index_sequence<C...>) {
  return Mask{((C & D) ? static_cast<int32_t>(kB + C) : static_cast<int32_t>(C + D))...};
}

#if defined(__clang__)
// clang (the fuzz and sanitizer builds) has no __builtin_shuffle; its __builtin_shufflevector takes the same
// indices as constants.
template <int D, std::size_t... C>
inline Vec shuffle_low(const Vec& x, const Vec& y, std::index_sequence<C...>) {
  return __builtin_shufflevector(x, y, ((C & D) ? static_cast<int>(kB + C - D) : static_cast<int>(C))...);
}
template <int D, std::size_t... C>
inline Vec shuffle_high(const Vec& x, const Vec& y, std::index_sequence<C...>) {
  return __builtin_shufflevector(x, y, ((C & D) ? static_cast<int>(kB + C) : static_cast<int>(C + D))...);
}
#endif

template <int D>
inline void butterfly(Vec (&r)[kB]) {
#if !defined(__clang__)
  constexpr Mask lo = low_mask<D>(std::make_index_sequence<kB>{});
  constexpr Mask hi = high_mask<D>(std::make_index_sequence<kB>{});
#endif
  for (int a = 0; a < kB; ++a) {
    if (a & D) continue;
    const Vec x = r[a], y = r[a + D];
#if defined(__clang__)
    r[a] = shuffle_low<D>(x, y, std::make_index_sequence<kB>{});
    r[a + D] = shuffle_high<D>(x, y, std::make_index_sequence<kB>{});
#else
    r[a] = __builtin_shuffle(x, y, lo);
    r[a + D] = __builtin_shuffle(x, y, hi);
#endif
  }
}

// dst[j][r] = src[r][j] for r, j < 16: 16 rows of 16 floats from any addresses to any addresses.
// With AVX-512 the first two butterfly stages happen in the loads: after stages 8 and 4, lane q (4 floats)
// of row r holds row (r & 3) | 4q, columns (r & 12) .. (r & 12) + 3 of the source, one 16-byte load each
// (folded into vinsertf32x4, which can issue on two ports; the two-source shuffles of the butterfly issue
// on one). Stages 2 and 1 then work within lanes.
template <bool Stream = false>
inline void transpose16(const float* const (&src)[kB], float* const (&dst)[kB]) {
  Vec r[kB];
#if defined(__AVX512F__)
  for (int row = 0; row < kB; ++row) {
    const int first = row & 3, column = row & 12;
    __m512 v = _mm512_castps128_ps512(_mm_loadu_ps(src[first] + column));
    v = _mm512_insertf32x4(v, _mm_loadu_ps(src[first | 4] + column), 1);
    v = _mm512_insertf32x4(v, _mm_loadu_ps(src[first | 8] + column), 2);
    v = _mm512_insertf32x4(v, _mm_loadu_ps(src[first | 12] + column), 3);
    r[row] = reinterpret_cast<Vec>(v);
  }
#else
  for (int i = 0; i < kB; ++i) r[i] = load(src[i]);
  butterfly<8>(r);
  butterfly<4>(r);
#endif
  butterfly<2>(r);
  butterfly<1>(r);
  for (int i = 0; i < kB; ++i) {
    if constexpr (Stream) {
      stream_store(dst[i], r[i]);
    } else {
      store(dst[i], r[i]);
    }
  }
}

// The last `width` < 16 pixels of one (image, channel block), from pixel p0: a partial tile. With AVX-512 the
// short rows are read and written with masked loads and stores (masked-off lanes are neither read nor
// written); otherwise element by element.
template <bool ToBlocked>
void activation_tail(const float* src, float* dst, int64_t hw, int64_t p0, int64_t width) {
#if defined(__AVX512F__)
  const __mmask16 part = static_cast<__mmask16>((1u << width) - 1);
  Vec r[kB];
  for (int j = 0; j < kB; ++j) {
    if constexpr (ToBlocked) {
      r[j] = reinterpret_cast<Vec>(_mm512_maskz_loadu_ps(part, src + j * hw + p0));  // channel j
    } else {
      r[j] = j < width ? load(src + (p0 + j) * kB) : Vec{};  // pixel p0 + j
    }
  }
  butterfly<8>(r);
  butterfly<4>(r);
  butterfly<2>(r);
  butterfly<1>(r);
  for (int j = 0; j < kB; ++j) {
    if constexpr (ToBlocked) {
      if (j < width) store(dst + (p0 + j) * kB, r[j]);
    } else {
      _mm512_mask_storeu_ps(dst + j * hw + p0, part, reinterpret_cast<__m512>(r[j]));
    }
  }
#else
  for (int64_t p = p0; p < p0 + width; ++p) {
    for (int64_t c = 0; c < kB; ++c) {
      if constexpr (ToBlocked) {
        dst[p * kB + c] = src[c * hw + p];
      } else {
        dst[c * hw + p] = src[p * kB + c];
      }
    }
  }
#endif
}

// One (image, channel block): plain [16][hw] <-> blocked [hw][16].
template <bool ToBlocked, bool Stream = false>
void activation_block(const float* src, float* dst, int64_t hw) {
  const int64_t full = hw / kB * kB;
  for (int64_t p0 = 0; p0 < full; p0 += kB) {
    const float* rows_in[kB];
    float* rows_out[kB];
    for (int j = 0; j < kB; ++j) {
      if constexpr (ToBlocked) {
        rows_in[j] = src + j * hw + p0;     // channel j, pixels p0..p0+15
        rows_out[j] = dst + (p0 + j) * kB;  // pixel p0 + j, channels 0..15
      } else {
        rows_in[j] = src + (p0 + j) * kB;
        rows_out[j] = dst + j * hw + p0;
      }
    }
    transpose16<Stream && ToBlocked>(rows_in, rows_out);
  }
  if (full < hw) activation_tail<ToBlocked>(src, dst, hw, full, hw - full);
}

template <bool ToBlocked>
void activations(const float* src, float* dst, int64_t n, int64_t c, int64_t hw) {
  MF_CHECK(n > 0 && c > 0 && hw > 0 && c % kB == 0, "blocked reorder: activations need positive sizes and a "
           "channel count divisible by 16, got n=", n, " c=", c, " hw=", hw);
  const int64_t blocks = n * (c / kB);
  const int64_t block_floats = kB * hw;
  // Image-major channel blocks: block b is image b / (c / 16), channels 16 (b % (c / 16)) onwards, at the
  // same offset b * 16 * hw in both layouts.
  const bool stream = blocks * block_floats * static_cast<int64_t>(sizeof(float)) >= kStreamBytes &&
                      reinterpret_cast<uintptr_t>(dst) % sizeof(Vec) == 0;
  parallel_for(blocks, may_split(blocks * block_floats), [&](int64_t b) {
    float* out = dst + b * block_floats;
    if constexpr (ToBlocked) {
      if (stream) {
        activation_block<true, true>(src + b * block_floats, out, hw);
      } else {
        activation_block<true>(src + b * block_floats, out, hw);
      }
    } else if (!stream && hw < kB) {
      activation_block<false>(src + b * block_floats, out, hw);  // one partial tile: masked stores
    } else {
      // The plain rows of a block start anywhere within a cache line, so the transposed rows would be written
      // across line boundaries; the block as a whole (16 * hw floats) is contiguous: transpose into an aligned
      // staging block in L1, then copy that out in whole vectors (streamed when large).
      thread_local std::vector<Vec> staging;
      staging.resize(static_cast<std::size_t>(hw));
      float* stage = reinterpret_cast<float*>(staging.data());
      activation_block<false>(src + b * block_floats, stage, hw);
      if (stream) {
        for (int64_t v = 0; v < hw; ++v) stream_store(out + v * kB, staging[v]);
      } else {
        for (int64_t v = 0; v < hw; ++v) store(out + v * kB, staging[v]);
      }
    }
  });
  if (stream) {
#if defined(__AVX512F__)
    _mm_sfence();  // order the streamed stores before whatever reads dst next
#endif
  }
}

// The rows of one (16 o, 16 i) block of OIhw16o16i, (tap, o) holding 16 i, <-> rows (i, tap) holding 16 o
// in `io` (row (i, tap) at (i * k + tap) * 16).
template <bool ToBlocked>
void o16i16_pass(float* io, float* blocked, int64_t k) {
  for (int64_t tap = 0; tap < k; ++tap) {
    const float* rows_in[kB];
    float* rows_out[kB];
    for (int j = 0; j < kB; ++j) {
      float* io_row = io + (j * k + tap) * kB;           // (i = j, tap)
      float* blocked_row = blocked + (tap * kB + j) * kB;  // (tap, o = j)
      rows_in[j] = ToBlocked ? io_row : blocked_row;
      rows_out[j] = ToBlocked ? blocked_row : io_row;
    }
    transpose16(rows_in, rows_out);
  }
}

// One (16 o, 16 i) weights block between `plain`, element (o0, i0, 0) of the oihw tensor (output channel j of
// the block at plain + j * row_stride, its 16 * k entries ordered (i, tap)), and `blocked`, the block's
// 16 * 16 * k floats. Rows (i, tap) of 16 o are the block itself for OIhw16i16o (row (i, tap) at
// (tap * 16 + i) * 16) and `scratch` (16 * 16 * k floats, row (i, tap) at (i * k + tap) * 16) for OIhw16o16i;
// io_offsets[e] is the offset of row e = i * k + tap there (precomputed: no divisions in the loop).
template <bool ToBlocked>
void weights_block(float* plain, float* blocked, int64_t row_stride, int64_t k, WeightsBlocking blocking,
                   float* scratch, const int64_t* io_offsets) {
  const bool i16o16 = blocking == WeightsBlocking::i16o16;
  float* io = i16o16 ? blocked : scratch;
  if (!ToBlocked && !i16o16) o16i16_pass<false>(io, blocked, k);
  for (int64_t t = 0; t < kB * k; t += kB) {
    const float* rows_in[kB];
    float* rows_out[kB];
    for (int j = 0; j < kB; ++j) {
      float* plain_row = plain + j * row_stride + t;  // output channel j, entries t..t+15
      float* io_row = io + io_offsets[t + j];         // entry t + j, 16 output channels
      rows_in[j] = ToBlocked ? plain_row : io_row;
      rows_out[j] = ToBlocked ? io_row : plain_row;
    }
    transpose16(rows_in, rows_out);
  }
  if (ToBlocked && !i16o16) o16i16_pass<true>(io, blocked, k);
}

template <bool ToBlocked>
void weights(const float* src, float* dst, int64_t o, int64_t i, int64_t k, WeightsBlocking blocking) {
  MF_CHECK(o > 0 && i > 0 && k > 0 && o % kB == 0 && i % kB == 0, "blocked reorder: weights need positive "
           "sizes and channel counts divisible by 16, got o=", o, " i=", i, " k=", k);
  const int64_t ob = o / kB, ib = i / kB, block_floats = kB * kB * k, row_stride = i * k;
  // The kernels take both sides as writable; only the destination is written.
  float* plain = const_cast<float*>(ToBlocked ? src : dst);
  float* blocked = const_cast<float*>(ToBlocked ? dst : src);
  // Row offsets of the (i, tap) rows, rebuilt only when the kernel size or blocking changes.
  thread_local struct {
    int64_t k = 0;
    WeightsBlocking blocking = WeightsBlocking::i16o16;
    std::vector<int64_t> offsets;
  } table;
  if (table.k != k || table.blocking != blocking) {
    table.offsets.resize(kB * k);
    for (int64_t e = 0; e < kB * k; ++e) {
      const int64_t in = e / k, tap = e % k;
      table.offsets[e] = blocking == WeightsBlocking::i16o16 ? (tap * kB + in) * kB : e * kB;
    }
    table.k = k;
    table.blocking = blocking;
  }
  const int64_t* offsets = table.offsets.data();
  // The OIhw16o16i pass goes through one block of scratch per thread, kept for later calls.
  auto run = [&](int64_t b) {
    thread_local std::vector<float> scratch;
    if (blocking == WeightsBlocking::o16i16 && static_cast<int64_t>(scratch.size()) < block_floats) {
      scratch.resize(block_floats);
    }
    const int64_t bo = b / ib, bi = b % ib;
    weights_block<ToBlocked>(plain + bo * kB * row_stride + bi * kB * k, blocked + b * block_floats, row_stride,
                             k, blocking, scratch.data(), offsets);
  };
  parallel_for(ob * ib, may_split(ob * ib * block_floats), run);
}

}  // namespace

void nchw_to_nchw16c(const float* src, float* dst, int64_t n, int64_t c, int64_t hw) {
  activations<true>(src, dst, n, c, hw);
}

void nchw16c_to_nchw(const float* src, float* dst, int64_t n, int64_t c, int64_t hw) {
  activations<false>(src, dst, n, c, hw);
}

void oihw_to_blocked(const float* src, float* dst, int64_t o, int64_t i, int64_t k, WeightsBlocking blocking) {
  weights<true>(src, dst, o, i, k, blocking);
}

void blocked_to_oihw(const float* src, float* dst, int64_t o, int64_t i, int64_t k, WeightsBlocking blocking) {
  weights<false>(src, dst, o, i, k, blocking);
}

}  // namespace metafew::tensor
