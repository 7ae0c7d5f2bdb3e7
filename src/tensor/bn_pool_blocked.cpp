#include "tensor/bn_pool_blocked.h"

#include <algorithm>
#include <cmath>

#include "tensor/parallel_for.h"
#include "tensor/vec16.h"

namespace metafew::tensor {

// Note [Blocked batch norm and pooling]
// In nChw16c a pixel's 16 channels of one block are one vector, so everything batch_norm_max_pool does per
// plane becomes element-wise on vectors: the four corners of a pooling window are four loads, their maxima
// three compares and selects, and the backward writes each pixel of a window once, the argmax corner with
// a * gz added (batch_norm_max_pool_backward's dx = a gz + b x + k). No gathers, no scatter, no index
// arithmetic per element. Per channel the arithmetic is batch_norm_max_pool's: two-pass statistics in double
// from per-plane sums in f32 (four interleaved partial sums per lane instead of a SIMD tree), the same
// scale and shift, the same comparisons in the same order (ties keep the first corner), the same a, b, k.
// Only the order of the f32 partial sums differs, so results agree with the NCHW kernels to rounding. The
// NCHW tensors (the pooled output, its gradient) are a quarter of the convolution's output; they are moved
// through a small per-image transpose in L1.
// Work is split over channel blocks (each block's statistics need all images first); a block's result does
// not depend on which thread computes it.

namespace {

using vec16::IVec;
using vec16::kLanes;
using vec16::load;
using vec16::store;
using vec16::Vec;

inline IVec splat_i(int32_t k) {
  return IVec{k, k, k, k, k, k, k, k, k, k, k, k, k, k, k, k};
}

// Sum over the hw vectors at p, four partial sums interleaved.
inline Vec plane_sum(const float* p, int64_t hw) {
  Vec a0{}, a1{}, a2{}, a3{};
  int64_t j = 0;
  for (; j + 4 <= hw; j += 4) {
    a0 += load(p + (j + 0) * kLanes);
    a1 += load(p + (j + 1) * kLanes);
    a2 += load(p + (j + 2) * kLanes);
    a3 += load(p + (j + 3) * kLanes);
  }
  for (; j < hw; ++j) a0 += load(p + j * kLanes);
  return (a0 + a1) + (a2 + a3);
}

inline Vec plane_sq_dev(const float* p, int64_t hw, const Vec& m) {
  Vec a0{}, a1{}, a2{}, a3{};
  int64_t j = 0;
  for (; j + 4 <= hw; j += 4) {
    const Vec d0 = load(p + (j + 0) * kLanes) - m, d1 = load(p + (j + 1) * kLanes) - m;
    const Vec d2 = load(p + (j + 2) * kLanes) - m, d3 = load(p + (j + 3) * kLanes) - m;
    a0 += d0 * d0;
    a1 += d1 * d1;
    a2 += d2 * d2;
    a3 += d3 * d3;
  }
  for (; j < hw; ++j) {
    const Vec d = load(p + j * kLanes) - m;
    a0 += d * d;
  }
  return (a0 + a1) + (a2 + a3);
}

bool split(int64_t blocks, int64_t floats) {
  return blocks > 1 && worth_splitting(floats, int64_t{1} << 15);
}

}  // namespace

void bn_max_pool_nchw16c(const float* yb, const float* gamma, const float* beta, double eps, bool relu,
                         int64_t n, int64_t c, int64_t h, int64_t w, float* out, int32_t* code, float* sel,
                         float* mean, float* invstd) {
  const int64_t blocks = c / kLanes, hw = h * w, oh = h / 2, ow = w / 2, per = oh * ow;
  const double count = static_cast<double>(n * hw);
  parallel_for(blocks, split(blocks, n * c * hw), [&](int64_t cb) {
    // Statistics (Note [Batch norm statistics] in kernel_helpers.h), lane l = channel 16 cb + l.
    double s[kLanes] = {}, v[kLanes] = {};
    for (int64_t i = 0; i < n; ++i) {
      const Vec a = plane_sum(yb + (i * blocks + cb) * hw * kLanes, hw);
      for (int64_t l = 0; l < kLanes; ++l) s[l] += static_cast<double>(a[l]);
    }
    double mu[kLanes];
    Vec m;
    for (int64_t l = 0; l < kLanes; ++l) {
      mu[l] = s[l] / count;
      m[l] = static_cast<float>(mu[l]);
    }
    for (int64_t i = 0; i < n; ++i) {
      const Vec a = plane_sq_dev(yb + (i * blocks + cb) * hw * kLanes, hw, m);
      for (int64_t l = 0; l < kLanes; ++l) v[l] += static_cast<double>(a[l]);
    }
    Vec scale, shift;
    for (int64_t l = 0; l < kLanes; ++l) {
      const int64_t ch = cb * kLanes + l;
      const double sh = mu[l] - static_cast<double>(m[l]);
      const double inv = 1.0 / std::sqrt(std::max(0.0, v[l] / count - sh * sh) + eps);
      mean[ch] = static_cast<float>(mu[l]);
      invstd[ch] = static_cast<float>(inv);
      scale[l] = static_cast<float>(inv * gamma[ch]);
      shift[l] = static_cast<float>(beta[ch] - mu[l] * inv * gamma[ch]);
    }
    // Pooling: per image, the window maxima into a blocked scratch, then transposed into the 16 NCHW planes.
    float* pooled = vec16::thread_scratch(static_cast<size_t>(per * kLanes));
    const Vec zero{};
    for (int64_t i = 0; i < n; ++i) {
      const float* p = yb + (i * blocks + cb) * hw * kLanes;
      const int64_t base = (i * blocks + cb) * per * kLanes;
      for (int64_t po = 0; po < oh; ++po) {
        for (int64_t qo = 0; qo < ow; ++qo) {
          const float* c00 = p + (2 * po * w + 2 * qo) * kLanes;
          const Vec r00 = load(c00), r01 = load(c00 + kLanes), r10 = load(c00 + w * kLanes),
                    r11 = load(c00 + (w + 1) * kLanes);
          const Vec v00 = r00 * scale + shift, v01 = r01 * scale + shift, v10 = r10 * scale + shift,
                    v11 = r11 * scale + shift;
          const IVec top_b = v01 > v00, bot_d = v11 > v10;
          const Vec top = top_b ? v01 : v00, bot = bot_d ? v11 : v10;
          const Vec top_r = top_b ? r01 : r00, bot_r = bot_d ? r11 : r10;
          const IVec take_bot = bot > top;
          const IVec top_c = top_b ? splat_i(1) : splat_i(0), bot_c = bot_d ? splat_i(3) : splat_i(2);
          const int64_t o = po * ow + qo;
          Vec y = take_bot ? bot : top;
          if (relu) y = y > zero ? y : zero;
          store(pooled + o * kLanes, y);
          store(code + base + o * kLanes, take_bot ? bot_c : top_c);
          store(sel + base + o * kLanes, take_bot ? bot_r : top_r);
        }
      }
      float* q = out + (i * c + cb * kLanes) * per;
      for (int64_t l = 0; l < kLanes; ++l)
        for (int64_t o = 0; o < per; ++o) q[l * per + o] = pooled[o * kLanes + l];
    }
  });
}

void bn_max_pool_nchw16c_backward(const float* g, const float* relu_out, const int32_t* code,
                                  const float* sel, const float* yb, const float* gamma, const float* mean,
                                  const float* invstd, int64_t n, int64_t c, int64_t h, int64_t w,
                                  float* sums, float* gyb) {
  const int64_t blocks = c / kLanes, hw = h * w, oh = h / 2, ow = w / 2, per = oh * ow;
  const double count = static_cast<double>(n * hw);
  parallel_for(blocks, split(blocks, n * c * hw), [&](int64_t cb) {
    // gz of every image of the block, blocked (n * per vectors), with the relu mask applied.
    float* gz = vec16::thread_scratch(static_cast<size_t>(n * per * kLanes));
    double sgx[kLanes] = {}, sg[kLanes] = {};
    Vec m;
    for (int64_t l = 0; l < kLanes; ++l) m[l] = mean[cb * kLanes + l];
    for (int64_t i = 0; i < n; ++i) {
      const float* gi = g + (i * c + cb * kLanes) * per;
      const float* yi = relu_out ? relu_out + (i * c + cb * kLanes) * per : nullptr;
      float* zi = gz + i * per * kLanes;
      for (int64_t l = 0; l < kLanes; ++l) {
        for (int64_t o = 0; o < per; ++o) {
          const float gv = gi[l * per + o];
          zi[o * kLanes + l] = yi ? (yi[l * per + o] > 0.0f ? gv : 0.0f) : gv;
        }
      }
      const float* si = sel + (i * blocks + cb) * per * kLanes;
      Vec agx{}, ag{};
      for (int64_t o = 0; o < per; ++o) {
        const Vec z = load(zi + o * kLanes);
        agx += z * (load(si + o * kLanes) - m);
        ag += z;
      }
      for (int64_t l = 0; l < kLanes; ++l) {
        sgx[l] += static_cast<double>(agx[l]);
        sg[l] += static_cast<double>(ag[l]);
      }
    }
    Vec a, b, k;
    for (int64_t l = 0; l < kLanes; ++l) {
      const int64_t ch = cb * kLanes + l;
      const float s0 = static_cast<float>(sgx[l] * invstd[ch]), s1 = static_cast<float>(sg[l]);
      sums[ch] = s0;
      sums[c + ch] = s1;
      // batch_norm_max_pool_backward's coefficients.
      const double inv = invstd[ch], sc = gamma[ch] * inv, mu = mean[ch];
      const double kk = static_cast<double>(s0) / count * inv;
      a[l] = static_cast<float>(sc);
      b[l] = static_cast<float>(-sc * kk);
      k[l] = static_cast<float>(sc * (kk * mu - static_cast<double>(s1) / count));
    }
    if (!gyb) return;
    for (int64_t i = 0; i < n; ++i) {
      const float* x = yb + (i * blocks + cb) * hw * kLanes;
      float* d = gyb + (i * blocks + cb) * hw * kLanes;
      const float* zi = gz + i * per * kLanes;
      const int32_t* ci = code + (i * blocks + cb) * per * kLanes;
      for (int64_t r = 0; r < h; ++r) {
        const bool in_rows = r < 2 * oh;
        for (int64_t q = 0; q < w; ++q) {
          const int64_t px = r * w + q;
          const Vec xv = load(x + px * kLanes);
          Vec dv = b * xv + k;
          if (in_rows && q < 2 * ow) {
            const int64_t o = (r / 2) * ow + q / 2;
            const auto corner = static_cast<int32_t>((r & 1) * 2 + (q & 1));
            const IVec hit = load(ci + o * kLanes) == splat_i(corner);
            const Vec at = a * load(zi + o * kLanes) + b * xv + k;
            dv = hit ? at : dv;
          }
          store(d + px * kLanes, dv);
        }
      }
    }
  });
}

void pool_code_to_index(const int32_t* code, int64_t n, int64_t c, int64_t h, int64_t w, int32_t* index) {
  const int64_t blocks = c / kLanes, oh = h / 2, ow = w / 2, per = oh * ow;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t cb = 0; cb < blocks; ++cb)
      for (int64_t o = 0; o < per; ++o)
        for (int64_t l = 0; l < kLanes; ++l) {
          const int32_t k = code[((i * blocks + cb) * per + o) * kLanes + l];
          const int64_t r = 2 * (o / ow) + k / 2, q = 2 * (o % ow) + k % 2;
          index[(i * c + cb * kLanes + l) * per + o] = static_cast<int32_t>(r * w + q);
        }
}

}  // namespace metafew::tensor
