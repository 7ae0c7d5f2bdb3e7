// Element-wise kernels with broadcasting, their reductions to a shape, and comparisons for tests.
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

bool may_parallelize(int64_t work) {
  return worth_splitting(work, int64_t{1} << 15);
}

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  check_same_dtype(a, b, "binary");
  Shape out = broadcast_shapes(a.shape(), b.shape(), "binary");
  Tensor y = Tensor::empty(out, a.dtype());
  if (y.numel() == 0) return y;
  Plan p = make_plan(out, {contiguous_strides(out), broadcast_strides(a.shape(), out),
                           broadcast_strides(b.shape(), out)});
  dispatch_float(a.dtype(), "binary", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pa = a.data<T>();
    const T* pb = b.data<T>();
    T* py = y.data<T>();
    switch (op) {
      case BinaryOp::add: binary_loop(p, pa, pb, py, y.numel(), [](T u, T v) { return u + v; }); break;
      case BinaryOp::sub: binary_loop(p, pa, pb, py, y.numel(), [](T u, T v) { return u - v; }); break;
      case BinaryOp::mul: binary_loop(p, pa, pb, py, y.numel(), [](T u, T v) { return u * v; }); break;
      case BinaryOp::div: binary_loop(p, pa, pb, py, y.numel(), [](T u, T v) { return u / v; }); break;
    }
  });
  return y;
}

Tensor unary(UnaryOp op, const Tensor& a, double param) {
  MF_CHECK(a.defined(), "unary: the operand is undefined");
  Tensor y = Tensor::empty(a.shape(), a.dtype());
  dispatch_float(a.dtype(), "unary", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* x0 = a.data<T>();
    T* o0 = y.data<T>();
    const T c = static_cast<T>(param);
    auto run = [&](auto f) {
      parallel_range(a.numel(), [=](int64_t b, int64_t e) {
        const T* __restrict x = x0;
        T* __restrict o = o0;
#pragma omp simd
        for (int64_t i = b; i < e; ++i) o[i] = f(x[i]);
      });
    };
    switch (op) {
      case UnaryOp::neg: run([](T v) { return -v; }); break;
      case UnaryOp::exp: run([](T v) { return std::exp(v); }); break;
      case UnaryOp::log: run([](T v) { return std::log(v); }); break;
      case UnaryOp::sqrt: run([](T v) { return std::sqrt(v); }); break;
      case UnaryOp::rsqrt: run([](T v) { return T(1) / std::sqrt(v); }); break;
      case UnaryOp::relu: run([](T v) { return v > T(0) ? v : T(0); }); break;
      case UnaryOp::leaky_relu: run([c](T v) { return v > T(0) ? v : c * v; }); break;
      case UnaryOp::step: run([](T v) { return v > T(0) ? T(1) : T(0); }); break;
      case UnaryOp::pow:
        if (param == 2.0)
          run([](T v) { return v * v; });
        else
          run([c](T v) { return std::pow(v, c); });
        break;
      case UnaryOp::add_scalar: run([c](T v) { return v + c; }); break;
      case UnaryOp::mul_scalar: run([c](T v) { return v * c; }); break;
    }
  });
  return y;
}

Tensor relu_grad(const Tensor& g, const Tensor& x) {
  check_same_dtype(g, x, "relu_grad");
  MF_CHECK(g.shape() == x.shape(), "relu_grad: gradient ", to_string(g.shape()), " and input ", to_string(x.shape()),
           " differ in shape");
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  dispatch_float(x.dtype(), "relu_grad", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pg0 = g.data<T>();
    const T* px0 = x.data<T>();
    T* py0 = y.data<T>();
    parallel_range(x.numel(), [=](int64_t b, int64_t e) {
      // Local restrict pointers and unconditional loads: the loop vectorises to a compare and a blend.
      const T* __restrict pg = pg0;
      const T* __restrict px = px0;
      T* __restrict py = py0;
#pragma omp simd
      for (int64_t i = b; i < e; ++i) {
        const T gv = pg[i];
        py[i] = px[i] > T(0) ? gv : T(0);
      }
    });
  });
  return y;
}

Tensor leaky_relu_grad(const Tensor& g, const Tensor& x, double slope) {
  check_same_dtype(g, x, "leaky_relu_grad");
  MF_CHECK(g.shape() == x.shape(), "leaky_relu_grad: gradient ", to_string(g.shape()), " and input ",
           to_string(x.shape()), " differ in shape");
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  dispatch_float(x.dtype(), "leaky_relu_grad", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pg0 = g.data<T>();
    const T* px0 = x.data<T>();
    T* py0 = y.data<T>();
    const T s = static_cast<T>(slope);
    parallel_range(x.numel(), [=](int64_t b, int64_t e) {
      const T* __restrict pg = pg0;
      const T* __restrict px = px0;
      T* __restrict py = py0;
#pragma omp simd
      for (int64_t i = b; i < e; ++i) py[i] = px[i] > T(0) ? pg[i] : s * pg[i];
    });
  });
  return y;
}

Tensor sum_to(const Tensor& x, const Shape& target) {
  MF_CHECK(broadcastable_to(target, x.shape()), "sum_to: cannot sum shape ", to_string(x.shape()), " down to ",
           to_string(target));
  if (x.shape() == target) return x;
  Tensor y = Tensor::zeros(target, x.dtype());
  if (x.numel() == 0) return y;
  Plan p = make_plan(x.shape(), {contiguous_strides(x.shape()), broadcast_strides(target, x.shape())});
  dispatch_float(x.dtype(), "sum_to", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = x.data<T>();
    T* py = y.data<T>();
    const int64_t iy = p.strides[1].back();
    // Serial on purpose: a fixed summation order keeps results independent of the thread count.
    for_runs<2>(p, 0, x.numel(), [&](const int64_t* off, int64_t len) {
      const T* xx = px + off[0];
      T* yy = py + off[1];
      if (iy == 0) {
        // The simd reduction fixes one summation order (lane-wise, then across lanes) at compile time.
        T acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t j = 0; j < len; ++j) acc += xx[j];
        yy[0] += acc;
      } else if (iy == 1) {
#pragma omp simd
        for (int64_t j = 0; j < len; ++j) yy[j] += xx[j];
      } else {
        for (int64_t j = 0; j < len; ++j) yy[j * iy] += xx[j];
      }
    });
  });
  return y;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  MF_CHECK(a.shape() == b.shape(), "max_abs_diff: shapes ", to_string(a.shape()), " and ", to_string(b.shape()));
  auto va = a.to_vector(), vb = b.to_vector();
  double m = 0;
  for (size_t i = 0; i < va.size(); ++i) m = std::max(m, std::abs(va[i] - vb[i]));
  return m;
}

double max_abs(const Tensor& a) {
  double m = 0;
  for (double v : a.to_vector()) m = std::max(m, std::abs(v));
  return m;
}

}  // namespace metafew::tensor
