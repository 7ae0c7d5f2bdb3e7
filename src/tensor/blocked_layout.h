#pragma once
// Reorders between metafew's plain layouts and the 16-blocked layouts oneDNN's direct convolution kernels
// compute in (Note [Blocked reorders] in blocked_layout.cpp). Pure data movement: the result is the same bit
// for bit whatever the thread count.
//
// Layouts (C, O, I multiples of 16; hw = H * W pixels, k = KH * KW taps):
//   nchw        [n][c][hw]                          nChw16c     [n][c / 16][hw][16 c]
//   oihw        [o][i][k]                           OIhw16i16o  [o / 16][i / 16][k][16 i][16 o]
//                                                   OIhw16o16i  [o / 16][i / 16][k][16 o][16 i]
// Buffers must not overlap. Outside an OpenMP parallel region large reorders use omp_get_max_threads()
// threads; inside one they run on the calling thread.
#include <cstdint>

namespace metafew::tensor {

enum class WeightsBlocking { i16o16, o16i16 };  // OIhw16i16o, OIhw16o16i

// requires: c % 16 == 0, n, c, hw > 0.
void nchw_to_nchw16c(const float* src, float* dst, int64_t n, int64_t c, int64_t hw);
void nchw16c_to_nchw(const float* src, float* dst, int64_t n, int64_t c, int64_t hw);

// requires: o % 16 == 0, i % 16 == 0, k > 0.
void oihw_to_blocked(const float* src, float* dst, int64_t o, int64_t i, int64_t k, WeightsBlocking blocking);
void blocked_to_oihw(const float* src, float* dst, int64_t o, int64_t i, int64_t k, WeightsBlocking blocking);

}  // namespace metafew::tensor
