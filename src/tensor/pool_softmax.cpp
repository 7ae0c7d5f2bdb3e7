// Max-pooling (with its scatter and gather) and softmax / log-softmax.
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

std::pair<Tensor, Tensor> max_pool2d(const Tensor& x, int64_t kernel, int64_t stride) {
  MF_CHECK(x.dim() == 4, "max_pool2d: expected NCHW input, got ", to_string(x.shape()));
  MF_CHECK(kernel >= 1 && stride >= 1, "max_pool2d: kernel ", kernel, " and stride ", stride, " must be >= 1");
  const int64_t n = x.shape()[0], c = x.shape()[1], h = x.shape()[2], w = x.shape()[3];
  MF_CHECK(h >= kernel && w >= kernel, "max_pool2d: input ", to_string(x.shape()), " is smaller than the ",
           kernel, "x", kernel, " window");
  const int64_t oh = (h - kernel) / stride + 1, ow = (w - kernel) / stride + 1;
  Tensor y = Tensor::empty({n, c, oh, ow}, x.dtype());
  Tensor idx = Tensor::empty({n, c, oh, ow}, DType::i32);
  dispatch_float(x.dtype(), "max_pool2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = x.data<T>();
    T* py = y.data<T>();
    int32_t* pi = idx.data<int32_t>();
    if (kernel == 2 && stride == 2) {
      const std::vector<int32_t> corners = pool2x2_corners(h, w);
      parallel_range(n * c, [&](int64_t b, int64_t e) {
        for (int64_t plane = b; plane < e; ++plane)
          pool2x2_plane<false>(px + plane * h * w, w, corners.data(), oh * ow, T(1), T(0), py + plane * oh * ow,
                               pi + plane * oh * ow);
      }, h * w);
      return;
    }
    parallel_range(n * c * oh * ow, [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) {
        const int64_t plane = o / (oh * ow), r = o % (oh * ow), i = r / ow, j = r % ow;
        const T* src = px + plane * h * w;
        int64_t best = (i * stride) * w + j * stride;
        T bv = src[best];
        for (int64_t di = 0; di < kernel; ++di)
          for (int64_t dj = 0; dj < kernel; ++dj) {
            int64_t at = (i * stride + di) * w + j * stride + dj;
            if (src[at] > bv) {
              bv = src[at];
              best = at;
            }
          }
        py[o] = bv;
        pi[o] = static_cast<int32_t>(best);
      }
    });
  });
  return {y, idx};
}

Tensor pool_scatter(const Tensor& g, const Tensor& index, const Shape& input_shape) {
  MF_CHECK(g.shape() == index.shape() && g.dim() == 4 && input_shape.size() == 4, "pool_scatter: gradient ",
           to_string(g.shape()), " and index ", to_string(index.shape()), " must match");
  const int64_t planes = g.shape()[0] * g.shape()[1], per = g.shape()[2] * g.shape()[3];
  const int64_t hw = input_shape[2] * input_shape[3];
  const int32_t* pi = index.data<int32_t>();
  const int64_t oh = g.shape()[2], ow = g.shape()[3], w = input_shape[3];
  // When the output's 2x2 cells tile the input and every argmax lies in its own cell (2x2 max-pool, stride 2,
  // even sides), each input element is written exactly once: no zero fill, no accumulation. An index outside
  // its cell (another pooling geometry) sends the work to the general path below.
  if (input_shape[2] == 2 * oh && w == 2 * ow) {
    Tensor y = Tensor::empty(input_shape, g.dtype());
    std::atomic<bool> in_cells{true};
    dispatch_float(g.dtype(), "pool_scatter", [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T* pg = g.data<T>();
      T* py = y.data<T>();
      parallel_range(planes, [&](int64_t b, int64_t e) {
        bool ok = true;
        for (int64_t p = b; p < e; ++p)
          for (int64_t i = 0; i < oh; ++i)
            for (int64_t j = 0; j < ow; ++j) {
              const int64_t o = p * per + i * ow + j, cell = 2 * i * w + 2 * j, top = p * hw + cell;
              const int64_t d = pi[o] - cell;
              ok = ok && (d == 0 || d == 1 || d == w || d == w + 1);
              py[top] = py[top + 1] = py[top + w] = py[top + w + 1] = T(0);
              if (ok) py[top + d] = pg[o];
            }
        if (!ok) in_cells.store(false);
      }, hw);
    });
    if (in_cells.load()) return y;
  }
  Tensor y = Tensor::zeros(input_shape, g.dtype());
  dispatch_float(g.dtype(), "pool_scatter", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pg = g.data<T>();
    T* py = y.data<T>();
    // One plane per thread: collisions (overlapping windows) add up in a fixed order.
    parallel_range(planes * per, [&](int64_t b, int64_t e) {
      for (int64_t p = b / per; p < (e + per - 1) / per; ++p) {
        if (p * per < b) continue;  // a plane belongs to the thread holding its first element
        for (int64_t o = p * per; o < (p + 1) * per; ++o) py[p * hw + pi[o]] += pg[o];
      }
    });
  });
  return y;
}

Tensor pool_gather(const Tensor& x, const Tensor& index, const Shape& output_shape) {
  MF_CHECK(index.shape() == output_shape && x.dim() == 4, "pool_gather: index ", to_string(index.shape()),
           " must have the output shape ", to_string(output_shape));
  Tensor y = Tensor::empty(output_shape, x.dtype());
  const int64_t per = output_shape[2] * output_shape[3], hw = x.shape()[2] * x.shape()[3];
  const int32_t* pi = index.data<int32_t>();
  dispatch_float(x.dtype(), "pool_gather", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = x.data<T>();
    T* py = y.data<T>();
    // Plane by plane (no division per element).
    parallel_for(y.numel() / std::max<int64_t>(per, 1), may_parallelize(y.numel()), [&](int64_t p) {
      const T* src = px + p * hw;
      const int32_t* at = pi + p * per;
      T* dst = py + p * per;
      for (int64_t o = 0; o < per; ++o) dst[o] = src[at[o]];
    });
  });
  return y;
}

namespace {
template <bool kLog>
Tensor softmax_impl(const Tensor& x, int64_t axis, const char* op) {
  int64_t a = normalize_axis(axis, x.dim(), op);
  int64_t outer = 1, inner = 1, c = x.shape()[a];
  for (int64_t i = 0; i < a; ++i) outer *= x.shape()[i];
  for (int64_t i = a + 1; i < x.dim(); ++i) inner *= x.shape()[i];
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = x.data<T>();
    T* py = y.data<T>();
    parallel_range(outer * inner * c, [&](int64_t b, int64_t e) {
      for (int64_t r = b / c; r < (e + c - 1) / c; ++r) {
        if (r * c < b) continue;
        const int64_t o = r / inner, i = r % inner;
        const T* s = px + o * c * inner + i;
        T* d = py + o * c * inner + i;
        T mx = -std::numeric_limits<T>::infinity();
        for (int64_t k = 0; k < c; ++k) mx = std::max(mx, s[k * inner]);
        T sum = 0;
        for (int64_t k = 0; k < c; ++k) sum += std::exp(s[k * inner] - mx);
        if constexpr (kLog) {
          const T lse = mx + std::log(sum);
          for (int64_t k = 0; k < c; ++k) d[k * inner] = s[k * inner] - lse;
        } else {
          for (int64_t k = 0; k < c; ++k) d[k * inner] = std::exp(s[k * inner] - mx) / sum;
        }
      }
    });
  });
  return y;
}
}  // namespace

Tensor log_softmax(const Tensor& x, int64_t axis) { return softmax_impl<true>(x, axis, "log_softmax"); }
Tensor softmax(const Tensor& x, int64_t axis) { return softmax_impl<false>(x, axis, "softmax"); }

}  // namespace metafew::tensor
