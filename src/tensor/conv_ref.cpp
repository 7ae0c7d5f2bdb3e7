#include "tensor/conv_ref.h"

#include <omp.h>

#include "core/error.h"

namespace metafew::tensor {

namespace {

void check_shape(const char* op, const ConvShape& s) {
  MF_CHECK(s.valid(), op, ": invalid convolution shape ", s.to_string(),
           "; expected positive sizes and strides, non-negative padding and a kernel no larger than the "
           "padded input");
}

}  // namespace

// In all three kernels an input coordinate is p = i*sh - ph + a for output row i and kernel row a (the same
// for columns); positions outside [0, ih) read as zero. Each kernel parallelises over the two outermost
// dimensions of its own output, so every output element has exactly one writer.

template <class T>
void conv2d_ref(const T* x, const T* w, T* y, const ConvShape& s) {
  check_shape("conv2d_ref", s);
  const int64_t oh = s.oh(), ow = s.ow();
#pragma omp parallel for collapse(2) schedule(static) if (!omp_in_parallel())
  for (int64_t n = 0; n < s.n; ++n) {
    for (int64_t o = 0; o < s.oc; ++o) {
      T* yp = y + (n * s.oc + o) * oh * ow;
      for (int64_t i = 0; i < oh; ++i) {
        for (int64_t j = 0; j < ow; ++j) {
          double acc = 0.0;
          for (int64_t c = 0; c < s.ic; ++c) {
            const T* xp = x + (n * s.ic + c) * s.ih * s.iw;
            const T* wp = w + (o * s.ic + c) * s.kh * s.kw;
            for (int64_t a = 0; a < s.kh; ++a) {
              const int64_t p = i * s.sh - s.ph + a;
              if (p < 0 || p >= s.ih) continue;
              for (int64_t b = 0; b < s.kw; ++b) {
                const int64_t q = j * s.sw - s.pw + b;
                if (q < 0 || q >= s.iw) continue;
                acc += static_cast<double>(xp[p * s.iw + q]) * static_cast<double>(wp[a * s.kw + b]);
              }
            }
          }
          yp[i * ow + j] = static_cast<T>(acc);
        }
      }
    }
  }
}

// Gather form of the transposed convolution: for input position p and kernel row a the output row is
// i = (p + ph - a) / sh, which contributes only when the division is exact and 0 <= i < oh.
template <class T>
void conv2d_grad_input_ref(const T* gy, const T* w, T* gx, const ConvShape& s) {
  check_shape("conv2d_grad_input_ref", s);
  const int64_t oh = s.oh(), ow = s.ow();
#pragma omp parallel for collapse(2) schedule(static) if (!omp_in_parallel())
  for (int64_t n = 0; n < s.n; ++n) {
    for (int64_t c = 0; c < s.ic; ++c) {
      T* gxp = gx + (n * s.ic + c) * s.ih * s.iw;
      for (int64_t p = 0; p < s.ih; ++p) {
        for (int64_t q = 0; q < s.iw; ++q) {
          double acc = 0.0;
          for (int64_t o = 0; o < s.oc; ++o) {
            const T* gyp = gy + (n * s.oc + o) * oh * ow;
            const T* wp = w + (o * s.ic + c) * s.kh * s.kw;
            for (int64_t a = 0; a < s.kh; ++a) {
              const int64_t ti = p + s.ph - a;
              if (ti < 0 || ti % s.sh != 0 || ti / s.sh >= oh) continue;
              const int64_t i = ti / s.sh;
              for (int64_t b = 0; b < s.kw; ++b) {
                const int64_t tj = q + s.pw - b;
                if (tj < 0 || tj % s.sw != 0 || tj / s.sw >= ow) continue;
                const int64_t j = tj / s.sw;
                acc += static_cast<double>(gyp[i * ow + j]) * static_cast<double>(wp[a * s.kw + b]);
              }
            }
          }
          gxp[p * s.iw + q] = static_cast<T>(acc);
        }
      }
    }
  }
}

template <class T>
void conv2d_grad_weight_ref(const T* x, const T* gy, T* gw, const ConvShape& s) {
  check_shape("conv2d_grad_weight_ref", s);
  const int64_t oh = s.oh(), ow = s.ow();
#pragma omp parallel for collapse(2) schedule(static) if (!omp_in_parallel())
  for (int64_t o = 0; o < s.oc; ++o) {
    for (int64_t c = 0; c < s.ic; ++c) {
      T* gwp = gw + (o * s.ic + c) * s.kh * s.kw;
      for (int64_t a = 0; a < s.kh; ++a) {
        for (int64_t b = 0; b < s.kw; ++b) {
          double acc = 0.0;
          for (int64_t n = 0; n < s.n; ++n) {
            const T* xp = x + (n * s.ic + c) * s.ih * s.iw;
            const T* gyp = gy + (n * s.oc + o) * oh * ow;
            for (int64_t i = 0; i < oh; ++i) {
              const int64_t p = i * s.sh - s.ph + a;
              if (p < 0 || p >= s.ih) continue;
              for (int64_t j = 0; j < ow; ++j) {
                const int64_t q = j * s.sw - s.pw + b;
                if (q < 0 || q >= s.iw) continue;
                acc += static_cast<double>(gyp[i * ow + j]) * static_cast<double>(xp[p * s.iw + q]);
              }
            }
          }
          gwp[a * s.kw + b] = static_cast<T>(acc);
        }
      }
    }
  }
}

template void conv2d_ref<float>(const float*, const float*, float*, const ConvShape&);
template void conv2d_ref<double>(const double*, const double*, double*, const ConvShape&);
template void conv2d_grad_input_ref<float>(const float*, const float*, float*, const ConvShape&);
template void conv2d_grad_input_ref<double>(const double*, const double*, double*, const ConvShape&);
template void conv2d_grad_weight_ref<float>(const float*, const float*, float*, const ConvShape&);
template void conv2d_grad_weight_ref<double>(const double*, const double*, double*, const ConvShape&);

}  // namespace metafew::tensor
