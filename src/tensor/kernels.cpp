#include "tensor/kernels.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "oneapi/dnnl/dnnl.h"
#include "tensor/parallel_for.h"
#include "tensor/pool2x2.h"
#include "tensor/serial_scope.h"

namespace metafew::tensor {

bool may_parallelize(int64_t work) {
  return worth_splitting(work, int64_t{1} << 15);
}

namespace {

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

void check_same_dtype(const Tensor& a, const Tensor& b, const char* op) {
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

Plan make_plan(const Shape& out, const std::vector<std::vector<int64_t>>& operand_strides) {
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
std::vector<int64_t> broadcast_strides(const Shape& in, const Shape& out) {
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

}  // namespace

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

namespace {
// Copies src into a fresh tensor of `out_shape`, reading src at the given strides (in out's index space).
Tensor strided_copy(const Tensor& src, const Shape& out_shape, const std::vector<int64_t>& src_strides,
                    int64_t src_offset = 0) {
  Tensor y = Tensor::empty(out_shape, src.dtype());
  if (y.numel() == 0) return y;
  Plan p = make_plan(out_shape, {contiguous_strides(out_shape), src_strides});
  const size_t es = dtype_size(src.dtype());
  const char* s = static_cast<const char*>(src.raw_data()) + src_offset * static_cast<int64_t>(es);
  char* d = static_cast<char*>(y.raw_data());
  const int64_t is = p.strides[1].back();
  // Element-typed loops for 4- and 8-byte elements: a broadcast (is == 0) is a fill and a permute a strided
  // gather, neither one memcpy call per element.
  auto typed = [&](auto word) {
    using W = decltype(word);
    parallel_range(y.numel(), [&](int64_t b, int64_t e) {
      for_runs<2>(p, b, e, [&](const int64_t* off, int64_t len) {
        W* __restrict dd = reinterpret_cast<W*>(d) + off[0];
        const W* __restrict ss = reinterpret_cast<const W*>(s) + off[1];
        if (is == 1) {
          std::memcpy(dd, ss, static_cast<size_t>(len) * sizeof(W));
        } else if (is == 0) {
          const W v = ss[0];
          for (int64_t j = 0; j < len; ++j) dd[j] = v;
        } else {
          for (int64_t j = 0; j < len; ++j) dd[j] = ss[j * is];
        }
      });
    });
  };
  if (es == 4) {
    typed(uint32_t{});
    return y;
  }
  if (es == 8) {
    typed(uint64_t{});
    return y;
  }
  parallel_range(y.numel(), [&](int64_t b, int64_t e) {
    for_runs<2>(p, b, e, [&](const int64_t* off, int64_t len) {
      if (is == 1) {
        std::memcpy(d + off[0] * es, s + off[1] * es, static_cast<size_t>(len) * es);
      } else {
        for (int64_t j = 0; j < len; ++j) std::memcpy(d + (off[0] + j) * es, s + (off[1] + j * is) * es, es);
      }
    });
  });
  return y;
}
}  // namespace

Tensor broadcast_to(const Tensor& x, const Shape& target) {
  MF_CHECK(broadcastable_to(x.shape(), target), "broadcast_to: cannot broadcast ", to_string(x.shape()), " to ",
           to_string(target));
  if (x.shape() == target) return x;
  return strided_copy(x, target, broadcast_strides(x.shape(), target));
}

Tensor permute(const Tensor& x, const std::vector<int64_t>& perm) {
  MF_CHECK(static_cast<int64_t>(perm.size()) == x.dim(), "permute: permutation of length ", perm.size(),
           " for a tensor of rank ", x.dim());
  std::vector<bool> seen(perm.size(), false);
  Shape out(perm.size());
  auto cs = contiguous_strides(x.shape());
  std::vector<int64_t> st(perm.size());
  for (size_t i = 0; i < perm.size(); ++i) {
    int64_t a = normalize_axis(perm[i], x.dim(), "permute");
    MF_CHECK(!seen[a], "permute: axis ", a, " appears twice");
    seen[a] = true;
    out[i] = x.shape()[a];
    st[i] = cs[a];
  }
  return strided_copy(x, out, st);
}

Tensor slice(const Tensor& x, int64_t axis, int64_t start, int64_t end) {
  int64_t a = normalize_axis(axis, x.dim(), "slice");
  MF_CHECK(0 <= start && start <= end && end <= x.shape()[a], "slice: range [", start, ", ", end,
           ") is outside [0, ", x.shape()[a], "] on axis ", a, " of ", to_string(x.shape()));
  Shape out = x.shape();
  out[a] = end - start;
  auto cs = contiguous_strides(x.shape());
  return strided_copy(x, out, cs, start * cs[a]);
}

Tensor slice_scatter(const Tensor& g, const Shape& full, int64_t axis, int64_t start) {
  int64_t a = normalize_axis(axis, static_cast<int64_t>(full.size()), "slice_scatter");
  Shape expect = full;
  expect[a] = g.shape()[a];
  MF_CHECK(g.shape() == expect && start >= 0 && start + g.shape()[a] <= full[a], "slice_scatter: ",
           to_string(g.shape()), " at ", start, " does not fit into ", to_string(full), " on axis ", a);
  Tensor y = Tensor::zeros(full, g.dtype());
  const size_t es = dtype_size(g.dtype());
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < a; ++i) outer *= full[i];
  for (size_t i = a + 1; i < full.size(); ++i) inner *= full[i];
  const int64_t len = g.shape()[a];
  char* d = static_cast<char*>(y.raw_data());
  const char* s = static_cast<const char*>(g.raw_data());
  for (int64_t o = 0; o < outer; ++o)
    std::memcpy(d + ((o * full[a] + start) * inner) * es, s + (o * len * inner) * es,
                static_cast<size_t>(len * inner) * es);
  return y;
}

Tensor concat(const std::vector<Tensor>& xs, int64_t axis) {
  MF_CHECK(!xs.empty(), "concat: no tensors given");
  int64_t a = normalize_axis(axis, xs[0].dim(), "concat");
  Shape out = xs[0].shape();
  out[a] = 0;
  for (const Tensor& x : xs) {
    Shape s = x.shape();
    MF_CHECK(x.dtype() == xs[0].dtype() && x.dim() == xs[0].dim(), "concat: tensors differ in dtype or rank");
    s[a] = 0;
    Shape ref = xs[0].shape();
    ref[a] = 0;
    MF_CHECK(s == ref, "concat: shapes ", to_string(x.shape()), " and ", to_string(xs[0].shape()),
             " differ outside axis ", a);
    out[a] += x.shape()[a];
  }
  Tensor y = Tensor::empty(out, xs[0].dtype());
  const size_t es = dtype_size(y.dtype());
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < a; ++i) outer *= out[i];
  for (size_t i = a + 1; i < out.size(); ++i) inner *= out[i];
  char* d = static_cast<char*>(y.raw_data());
  int64_t at = 0;
  for (const Tensor& x : xs) {
    const int64_t len = x.shape()[a];
    const char* s = static_cast<const char*>(x.raw_data());
    for (int64_t o = 0; o < outer; ++o)
      std::memcpy(d + ((o * out[a] + at) * inner) * es, s + (o * len * inner) * es,
                  static_cast<size_t>(len * inner) * es);
    at += len;
  }
  return y;
}

namespace {
void check_index(const Tensor& index, int64_t size, const char* op) {
  MF_CHECK(index.dtype() == DType::i32 && index.dim() == 1, op, ": expected a 1-D i32 index, got ",
           dtype_name(index.dtype()), " ", to_string(index.shape()));
  const int32_t* ix = index.data<int32_t>();
  for (int64_t i = 0; i < index.numel(); ++i)
    MF_CHECK(ix[i] >= 0 && ix[i] < size, op, ": index ", ix[i], " at position ", i, " is outside [0, ", size, ")");
}
}  // namespace

Tensor index_select(const Tensor& x, int64_t axis, const Tensor& index) {
  int64_t a = normalize_axis(axis, x.dim(), "index_select");
  check_index(index, x.shape()[a], "index_select");
  Shape out = x.shape();
  out[a] = index.numel();
  Tensor y = Tensor::empty(out, x.dtype());
  const size_t es = dtype_size(x.dtype());
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < a; ++i) outer *= out[i];
  for (size_t i = a + 1; i < out.size(); ++i) inner *= out[i];
  const int32_t* ix = index.data<int32_t>();
  const char* s = static_cast<const char*>(x.raw_data());
  char* d = static_cast<char*>(y.raw_data());
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t k = 0; k < index.numel(); ++k)
      std::memcpy(d + ((o * index.numel() + k) * inner) * es, s + ((o * x.shape()[a] + ix[k]) * inner) * es,
                  static_cast<size_t>(inner) * es);
  return y;
}

Tensor index_add(const Tensor& g, int64_t axis, const Tensor& index, int64_t size) {
  int64_t a = normalize_axis(axis, g.dim(), "index_add");
  check_index(index, size, "index_add");
  MF_CHECK(g.shape()[a] == index.numel(), "index_add: ", index.numel(), " indices for extent ", g.shape()[a]);
  Shape out = g.shape();
  out[a] = size;
  Tensor y = Tensor::zeros(out, g.dtype());
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < a; ++i) outer *= out[i];
  for (size_t i = a + 1; i < out.size(); ++i) inner *= out[i];
  const int32_t* ix = index.data<int32_t>();
  dispatch_float(g.dtype(), "index_add", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* s = g.data<T>();
    T* d = y.data<T>();
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t k = 0; k < index.numel(); ++k) {
        T* dd = d + (o * size + ix[k]) * inner;
        const T* ss = s + (o * index.numel() + k) * inner;
        for (int64_t j = 0; j < inner; ++j) dd[j] += ss[j];
      }
  });
  return y;
}

Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) {
  check_same_dtype(a, b, "matmul");
  MF_CHECK(a.dim() == 2 && b.dim() == 2, "matmul: expected 2-D operands, got ", to_string(a.shape()), " and ",
           to_string(b.shape()));
  const int64_t m = trans_a ? a.shape()[1] : a.shape()[0];
  const int64_t k = trans_a ? a.shape()[0] : a.shape()[1];
  const int64_t kb = trans_b ? b.shape()[1] : b.shape()[0];
  const int64_t n = trans_b ? b.shape()[0] : b.shape()[1];
  MF_CHECK(k == kb, "matmul: inner extents differ: ", to_string(a.shape()), (trans_a ? "^T" : ""), " @ ",
           to_string(b.shape()), (trans_b ? "^T" : ""));
  Tensor y = Tensor::empty({m, n}, a.dtype());
  if (m == 0 || n == 0) return y;
  if (k == 0) {
    y.fill_(0.0);
    return y;
  }
  const int64_t lda = a.shape()[1], ldb = b.shape()[1];
  if (a.dtype() == DType::f32) {
    SerialScope serial;  // Note [Deterministic oneDNN]
    dnnl_status_t st = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, 1.0f, a.data<float>(), lda,
                                  b.data<float>(), ldb, 0.0f, y.data<float>(), n);
    MF_CHECK(st == dnnl_success, "matmul: oneDNN sgemm failed with status ", static_cast<int>(st));
    return y;
  }
  dispatch_float(a.dtype(), "matmul", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pa = a.data<T>();
    const T* pb = b.data<T>();
    T* py = y.data<T>();
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        T acc = 0;
        for (int64_t l = 0; l < k; ++l) {
          T av = trans_a ? pa[l * lda + i] : pa[i * lda + l];
          T bv = trans_b ? pb[j * ldb + l] : pb[l * ldb + j];
          acc += av * bv;
        }
        py[i * n + j] = acc;
      }
  });
  return y;
}

namespace {

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

}  // namespace

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

Tensor batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps, Tensor* mean,
                  Tensor* invstd) {
  MF_CHECK(x.dim() == 4 || x.dim() == 2, "batch_norm: expected NCHW or NC input, got ", to_string(x.shape()));
  const int64_t n = x.shape()[0], c = x.shape()[1], hw = x.dim() == 4 ? x.shape()[2] * x.shape()[3] : 1;
  MF_CHECK(gamma.numel() == c && beta.numel() == c, "batch_norm: gamma ", to_string(gamma.shape()), " and beta ",
           to_string(beta.shape()), " must have ", c, " elements (the channels of ", to_string(x.shape()), ")");
  MF_CHECK(n * hw > 0, "batch_norm: no elements to normalise in ", to_string(x.shape()));
  check_same_dtype(x, gamma, "batch_norm");
  check_same_dtype(x, beta, "batch_norm");
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  Tensor m = Tensor::empty({c}, x.dtype()), is = Tensor::empty({c}, x.dtype());
  dispatch_float(x.dtype(), "batch_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = x.data<T>();
    const T* pg = gamma.data<T>();
    const T* pb = beta.data<T>();
    T* py = y.data<T>();
    T* pm = m.data<T>();
    T* ps = is.data<T>();
    const bool par = may_parallelize(x.numel());
    parallel_for(c, par, [&](int64_t ch) {
      // Named copies, not a structured binding: clang 14 cannot capture bindings into the simd region.
      const std::pair<T, T> affine = channel_affine(px, pg, pb, n, c, hw, ch, eps, pm, ps);
      const T scale = affine.first, shift = affine.second;
      for (int64_t i = 0; i < n; ++i) {
        const T* p = px + (i * c + ch) * hw;
        T* q = py + (i * c + ch) * hw;
#pragma omp simd
        for (int64_t j = 0; j < hw; ++j) q[j] = p[j] * scale + shift;
      }
    });
  });
  if (mean) *mean = m;
  if (invstd) *invstd = is;
  return y;
}

constexpr int64_t kScatterChunk = 64;

namespace {
// unary relu's arithmetic, in place on a plane just written (still in L1).
template <typename T>
void relu_in_place(T* __restrict p, int64_t count) {
#pragma omp simd
  for (int64_t o = 0; o < count; ++o) p[o] = p[o] > T(0) ? p[o] : T(0);
}
}  // namespace

std::pair<Tensor, Tensor> batch_norm_max_pool(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps,
                                              Tensor* mean, Tensor* invstd, Tensor* selected, bool relu) {
  MF_CHECK(x.dim() == 4, "batch_norm_max_pool: expected NCHW input, got ", to_string(x.shape()));
  const int64_t n = x.shape()[0], c = x.shape()[1], h = x.shape()[2], w = x.shape()[3], hw = h * w;
  MF_CHECK(h >= 2 && w >= 2, "batch_norm_max_pool: input ", to_string(x.shape()), " is smaller than the 2x2 window");
  MF_CHECK(gamma.numel() == c && beta.numel() == c, "batch_norm_max_pool: gamma ", to_string(gamma.shape()),
           " and beta ", to_string(beta.shape()), " must have ", c, " elements (the channels of ",
           to_string(x.shape()), ")");
  check_same_dtype(x, gamma, "batch_norm_max_pool");
  check_same_dtype(x, beta, "batch_norm_max_pool");
  const int64_t oh = h / 2, ow = w / 2;
  Tensor y = Tensor::empty({n, c, oh, ow}, x.dtype());
  Tensor idx = Tensor::empty({n, c, oh, ow}, DType::i32), sel = Tensor::empty({n, c, oh, ow}, x.dtype());
  Tensor m = Tensor::empty({c}, x.dtype()), is = Tensor::empty({c}, x.dtype());
  const std::vector<int32_t> corners = pool2x2_corners(h, w);
  dispatch_float(x.dtype(), "batch_norm_max_pool", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = x.data<T>();
    const T* pg = gamma.data<T>();
    const T* pb = beta.data<T>();
    T* py = y.data<T>();
    int32_t* pi = idx.data<int32_t>();
    T* pr = sel.data<T>();
    T* pm = m.data<T>();
    T* ps = is.data<T>();
    const bool par = may_parallelize(x.numel());
    parallel_for(c, par, [&](int64_t ch) {
      const std::pair<T, T> affine = channel_affine(px, pg, pb, n, c, hw, ch, eps, pm, ps);  // as batch_norm
      const T scale = affine.first, shift = affine.second;
      for (int64_t i = 0; i < n; ++i) {
        const int64_t plane = i * c + ch;
        pool2x2_plane<true>(px + plane * hw, w, corners.data(), oh * ow, scale, shift, py + plane * oh * ow,
                            pi + plane * oh * ow, pr + plane * oh * ow);
        if (relu) relu_in_place(py + plane * oh * ow, oh * ow);
      }
    });
  });
  if (mean) *mean = m;
  if (invstd) *invstd = is;
  if (selected) *selected = sel;
  return {y, idx};
}

std::pair<Tensor, Tensor> batch_norm_max_pool_backward(const Tensor& g, const Tensor& index, const Tensor& selected,
                                                       const Tensor& x, const Tensor& gamma, const Tensor& mean,
                                                       const Tensor& invstd, bool want_dx, const Tensor* relu_y) {
  MF_CHECK(x.dim() == 4 && g.dim() == 4 && g.shape() == index.shape() && g.shape() == selected.shape(),
           "batch_norm_max_pool_backward: gradient ", to_string(g.shape()), ", index ", to_string(index.shape()),
           ", selected ", to_string(selected.shape()), " and input ", to_string(x.shape()), " do not fit");
  const int64_t n = x.shape()[0], c = x.shape()[1], h = x.shape()[2], w = x.shape()[3], hw = h * w;
  const int64_t oh = g.shape()[2], ow = g.shape()[3], per = oh * ow;
  MF_CHECK(g.shape()[0] == n && g.shape()[1] == c && oh == h / 2 && ow == w / 2,
           "batch_norm_max_pool_backward: gradient ", to_string(g.shape()), " is not the 2x2 pooling of ",
           to_string(x.shape()));
  MF_CHECK(gamma.numel() == c && mean.numel() == c && invstd.numel() == c,
           "batch_norm_max_pool_backward: per-channel tensors must have ", c, " elements");
  check_same_dtype(g, x, "batch_norm_max_pool_backward");
  check_same_dtype(selected, x, "batch_norm_max_pool_backward");
  Tensor sums = Tensor::empty({2, c}, x.dtype());
  Tensor dx = want_dx ? Tensor::empty(x.shape(), x.dtype()) : Tensor();
  const double count = static_cast<double>(n * hw);
  dispatch_float(x.dtype(), "batch_norm_max_pool_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pg = g.data<T>();
    const int32_t* pi = index.data<int32_t>();
    const T* pr = selected.data<T>();
    const T* px = x.data<T>();
    const T* pgam = gamma.data<T>();
    const T* pm = mean.data<T>();
    const T* ps = invstd.data<T>();
    T* out = sums.data<T>();
    T* pd = want_dx ? dx.data<T>() : nullptr;
    const T* pyr = relu_y ? relu_y->data<T>() : nullptr;
    const bool par = may_parallelize(x.numel());
    // With relu_y, the gradient is relu_grad's g * (y > 0), taken as it is read (kRelu).
    auto run = [&](auto relu) {
      constexpr bool kRelu = decltype(relu)::value;
      parallel_for(c, par, [&](int64_t ch) {
        // gz is zero outside the argmax positions, so its sums only visit those.
        // (Per-plane sums in T as batch_norm_grad_sums.)
        double sgx = 0, sg = 0;
        const double mu = pm[ch];
        const T m = pm[ch];
        for (int64_t i = 0; i < n; ++i) {
          const T* __restrict a = pg + (i * c + ch) * per;
          const T* __restrict b = pr + (i * c + ch) * per;  // x at the argmax positions, kept by the forward
          const T* __restrict yr = kRelu ? pyr + (i * c + ch) * per : nullptr;
          T agx = 0, ag = 0;
#pragma omp simd reduction(+ : agx, ag)
          for (int64_t o = 0; o < per; ++o) {
            const T av = kRelu ? (yr[o] > T(0) ? a[o] : T(0)) : a[o];
            agx += av * (b[o] - m);
            ag += av;
          }
          sgx += static_cast<double>(agx);
          sg += static_cast<double>(ag);
        }
        const T s0 = static_cast<T>(sgx * ps[ch]), s1 = static_cast<T>(sg);
        out[ch] = s0;
        out[c + ch] = s1;
        if (!want_dx) return;
        // dx = a gz + b x + k with per-channel a, b, k (batch_norm_grad_input's arithmetic): the dense part
        // first, then a * g added at each argmax.
        const double inv = ps[ch], scale = pgam[ch] * inv;
        const double kk = static_cast<double>(s0) / count * inv;
        const T a = static_cast<T>(scale);
        const T b = static_cast<T>(-scale * kk);
        const T k = static_cast<T>(scale * (kk * mu - static_cast<double>(s1) / count));
        for (int64_t i = 0; i < n; ++i) {
          const T* xx = px + (i * c + ch) * hw;
          T* yy = pd + (i * c + ch) * hw;
#pragma omp simd
          for (int64_t j = 0; j < hw; ++j) yy[j] = b * xx[j] + k;
          const T* gg = pg + (i * c + ch) * per;
          const T* rr = pr + (i * c + ch) * per;
          const T* yr = kRelu ? pyr + (i * c + ch) * per : nullptr;
          const int32_t* at = pi + (i * c + ch) * per;
          // The argmax positions of a plane are distinct (the windows do not overlap): a conflict-free scatter,
          // of values computed densely first.
          T vals[kScatterChunk];
          for (int64_t o0 = 0; o0 < per; o0 += kScatterChunk) {
            const int64_t len = std::min(kScatterChunk, per - o0);
#pragma omp simd
            for (int64_t o = 0; o < len; ++o) {
              const T gv = kRelu ? (yr[o0 + o] > T(0) ? gg[o0 + o] : T(0)) : gg[o0 + o];
              vals[o] = a * gv + b * rr[o0 + o] + k;
            }
            for (int64_t o = 0; o < len; ++o) yy[at[o0 + o]] = vals[o];
          }
        }
      });
    };
    if (pyr) {
      run(std::true_type{});
    } else {
      run(std::false_type{});
    }
  });
  return {dx, sums};
}

namespace {
struct BnDims {
  int64_t n, c, hw;
};
BnDims bn_dims(const Tensor& x, const char* op) {
  MF_CHECK(x.dim() == 4 || x.dim() == 2, op, ": expected NCHW or NC input, got ", to_string(x.shape()));
  return {x.shape()[0], x.shape()[1], x.dim() == 4 ? x.shape()[2] * x.shape()[3] : 1};
}
}  // namespace

void batch_norm_stats(const Tensor& x, double eps, Tensor* mean, Tensor* invstd) {
  // batch_norm's statistics (channel_stats, stored as channel_affine stores them), without its output.
  const BnDims d = bn_dims(x, "batch_norm_stats");
  MF_CHECK(d.n * d.hw > 0, "batch_norm_stats: no elements in ", to_string(x.shape()));
  Tensor m = Tensor::empty({d.c}, x.dtype()), is = Tensor::empty({d.c}, x.dtype());
  dispatch_float(x.dtype(), "batch_norm_stats", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = x.data<T>();
    T* pm = m.data<T>();
    T* ps = is.data<T>();
    parallel_for(d.c, may_parallelize(x.numel()), [&](int64_t ch) {
      const auto [mu, inv] = channel_stats(px, d.n, d.c, d.hw, ch, eps);
      pm[ch] = static_cast<T>(mu);
      ps[ch] = static_cast<T>(inv);
    });
  });
  if (mean) *mean = m;
  if (invstd) *invstd = is;
}

Tensor batch_norm_grad_sums(const Tensor& g, const Tensor& x, const Tensor& mean, const Tensor& invstd) {
  const BnDims d = bn_dims(x, "batch_norm_grad_sums");
  MF_CHECK(g.shape() == x.shape(), "batch_norm_grad_sums: gradient ", to_string(g.shape()), " and input ",
           to_string(x.shape()), " differ");
  check_same_dtype(g, x, "batch_norm_grad_sums");
  Tensor sums = Tensor::empty({2, d.c}, x.dtype());
  dispatch_float(x.dtype(), "batch_norm_grad_sums", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pg = g.data<T>();
    const T* px = x.data<T>();
    const T* pm = mean.data<T>();
    const T* ps = invstd.data<T>();
    T* out = sums.data<T>();
    const bool par = may_parallelize(x.numel());
    parallel_for(d.c, par, [&](int64_t ch) {
      // Per-plane sums in T, plane sums in double (Note [Batch norm statistics]).
      double sgx = 0, sg = 0;
      const T m = pm[ch];
      for (int64_t i = 0; i < d.n; ++i) {
        const T* a = pg + (i * d.c + ch) * d.hw;
        const T* b = px + (i * d.c + ch) * d.hw;
        T agx = 0, ag = 0;
#pragma omp simd reduction(+ : agx, ag)
        for (int64_t j = 0; j < d.hw; ++j) {
          agx += a[j] * (b[j] - m);
          ag += a[j];
        }
        sgx += static_cast<double>(agx);
        sg += static_cast<double>(ag);
      }
      out[ch] = static_cast<T>(sgx * ps[ch]);
      out[d.c + ch] = static_cast<T>(sg);
    });
  });
  return sums;
}

namespace {
// Batch norm's input gradient for one channel as dx = a g + b x + c: gamma, invstd r, mean mu, the channel's
// sums s0 = sum(g xh) and s1 = sum(g) over its m values. Shared by batch_norm_grad_input and the sums rule
// (gamma = u0 there), so both round alike.
struct BnInputCoefficients {
  double a, b, c;
};
BnInputCoefficients bn_input_coefficients(double gamma, double r, double mu, double s0, double s1, double m) {
  const double scale = gamma * r;
  const double k = s0 / m * r;  // xh * sum(g xh) / M = (x - mu) k
  return {scale, -scale * k, scale * (k * mu - s1 / m)};
}
}  // namespace

Tensor batch_norm_grad_input(const Tensor& g, const Tensor& x, const Tensor& gamma, const Tensor& mean,
                             const Tensor& invstd, const Tensor& sums) {
  const BnDims d = bn_dims(x, "batch_norm_grad_input");
  MF_CHECK(g.shape() == x.shape() && gamma.numel() == d.c && sums.numel() == 2 * d.c,
           "batch_norm_grad_input: shapes do not fit: g ", to_string(g.shape()), ", x ", to_string(x.shape()),
           ", gamma ", to_string(gamma.shape()), ", sums ", to_string(sums.shape()));
  Tensor dx = Tensor::empty(x.shape(), x.dtype());
  const double m = static_cast<double>(d.n * d.hw);
  dispatch_float(x.dtype(), "batch_norm_grad_input", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pg = g.data<T>();
    const T* px = x.data<T>();
    const T* pgam = gamma.data<T>();
    const T* pm = mean.data<T>();
    const T* ps = invstd.data<T>();
    const T* sm = sums.data<T>();
    T* py = dx.data<T>();
    const bool par = may_parallelize(x.numel());
    parallel_for(d.n * d.c, par, [&](int64_t plane) {
      const int64_t i = plane / d.c, ch = plane % d.c;
      const BnInputCoefficients co = bn_input_coefficients(pgam[ch], ps[ch], pm[ch], sm[ch], sm[d.c + ch], m);
      const T a = static_cast<T>(co.a), b = static_cast<T>(co.b), c = static_cast<T>(co.c);
      const T* gg = pg + (i * d.c + ch) * d.hw;
      const T* xx = px + (i * d.c + ch) * d.hw;
      T* yy = py + (i * d.c + ch) * d.hw;
#pragma omp simd
      for (int64_t j = 0; j < d.hw; ++j) yy[j] = a * gg[j] + b * xx[j] + c;
    });
  });
  return dx;
}

namespace {
// The shapes of a batch-norm rule's gradient g: x's, or with `index`, 2x2-pooled (g scattered to x's shape by
// index, at most one position per window).
int64_t rule_g_per_plane(const Tensor& g, const Tensor& x, const Tensor* index, const BnDims& d, const char* op) {
  if (!index) {
    MF_CHECK(g.shape() == x.shape(), op, ": gradient ", to_string(g.shape()), " and input ", to_string(x.shape()),
             " differ");
    return d.hw;
  }
  MF_CHECK(x.dim() == 4 && g.dim() == 4 && index->shape() == g.shape() && index->dtype() == DType::i32 &&
               g.shape()[0] == d.n && g.shape()[1] == d.c && g.shape()[2] == x.shape()[2] / 2 &&
               g.shape()[3] == x.shape()[3] / 2,
           op, ": pooled gradient ", to_string(g.shape()), " and index ", to_string(index->shape()),
           " are not the 2x2 pooling of ", to_string(x.shape()));
  return g.shape()[2] * g.shape()[3];
}
}  // namespace

BnGradInputRule batch_norm_grad_input_rule(const Tensor& v, const Tensor& g, const Tensor& x, const Tensor& gamma,
                                           const Tensor& mean, const Tensor& invstd, const Tensor& sums,
                                           bool want_dg, bool want_dx, const Tensor* index) {
  const char* op = "batch_norm_grad_input_rule";
  const BnDims d = bn_dims(x, op);
  const int64_t per = rule_g_per_plane(g, x, index, d, op);
  MF_CHECK(v.shape() == x.shape() && gamma.numel() == d.c && mean.numel() == d.c && invstd.numel() == d.c &&
               sums.numel() == 2 * d.c,
           op, ": shapes do not fit: v ", to_string(v.shape()), ", x ", to_string(x.shape()), ", gamma ",
           to_string(gamma.shape()), ", sums ", to_string(sums.shape()));
  check_same_dtype(v, x, op);
  check_same_dtype(g, x, op);
  BnGradInputRule out;
  out.dgamma = Tensor::empty({d.c}, x.dtype());
  out.dsums = Tensor::empty({2, d.c}, x.dtype());
  if (want_dg) out.dg = Tensor::empty(g.shape(), x.dtype());
  if (want_dx) out.dx = Tensor::empty(x.shape(), x.dtype());
  const double m = static_cast<double>(d.n * d.hw);
  const int32_t* pi = index ? index->data<int32_t>() : nullptr;
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pv = v.data<T>();
    const T* pg = g.data<T>();
    const T* px = x.data<T>();
    const T* pgam = gamma.data<T>();
    const T* pm = mean.data<T>();
    const T* ps = invstd.data<T>();
    const T* sm = sums.data<T>();
    T* dgamma = out.dgamma.data<T>();
    T* dsums = out.dsums.data<T>();
    T* pdg = want_dg ? out.dg.data<T>() : nullptr;
    T* pdx = want_dx ? out.dx.data<T>() : nullptr;
    parallel_for(d.c, may_parallelize(x.numel()), [&](int64_t ch) {
      // Pass 1: Sv = sum(v), Svh = sum(v xh), Svg = sum(v g) (with index: over g's positions only); per-plane
      // sums in T, plane sums in double (Note [Batch norm statistics]).
      double sv = 0, svx = 0, svg = 0;
      const T mt = pm[ch];
      for (int64_t i = 0; i < d.n; ++i) {
        const T* a = pv + (i * d.c + ch) * d.hw;
        const T* b = px + (i * d.c + ch) * d.hw;
        const T* e = pg + (i * d.c + ch) * per;
        T av = 0, ax = 0, ag = 0;
        if (pi) {
          const int32_t* at = pi + (i * d.c + ch) * per;
#pragma omp simd reduction(+ : av, ax)
          for (int64_t j = 0; j < d.hw; ++j) {
            av += a[j];
            ax += a[j] * (b[j] - mt);
          }
          for (int64_t o = 0; o < per; ++o) ag += a[at[o]] * e[o];
        } else {
#pragma omp simd reduction(+ : av, ax, ag)
          for (int64_t j = 0; j < d.hw; ++j) {
            av += a[j];
            ax += a[j] * (b[j] - mt);
            ag += a[j] * e[j];
          }
        }
        sv += static_cast<double>(av);
        svx += static_cast<double>(ax);
        svg += static_cast<double>(ag);
      }
      const double r = ps[ch], mu = pm[ch], gam = pgam[ch], s0 = sm[ch], s1 = sm[d.c + ch];
      const double svh = svx * r;
      const double svg_c = svg - s1 * sv / m;  // sum(v g) - s1 Sv / M
      dgamma[ch] = static_cast<T>(r * (svg_c - s0 * svh / m));
      dsums[ch] = static_cast<T>(-gam * r / m * svh);
      dsums[d.c + ch] = static_cast<T>(-gam * r / m * sv);
      if (!want_dg && !want_dx) return;
      // Pass 2: dg = gamma r v (with index: at g's positions); dx = a1 r (v - Sv / M - xh 2 Svh / M) + a2 xh
      // with a1 = -gamma r s0 / M and a2 = -gamma r^2 svg_c / M, written as A v + B x + K.
      const T ag = static_cast<T>(gam * r);
      const double a1 = -gam * r * s0 / m, a2 = -gam * r * r * svg_c / m;
      const double bh = (a2 - 2.0 * a1 * r * svh / m) * r;  // coefficient of x
      const T av = static_cast<T>(a1 * r);
      const T bx = static_cast<T>(bh);
      const T k = static_cast<T>(-a1 * r * sv / m - bh * mu);
      for (int64_t i = 0; i < d.n; ++i) {
        const int64_t off = (i * d.c + ch) * d.hw;
        const T* a = pv + off;
        const T* b = px + off;
        if (want_dg) {
          T* q = pdg + (i * d.c + ch) * per;
          if (pi) {
            const int32_t* at = pi + (i * d.c + ch) * per;
            for (int64_t o = 0; o < per; ++o) q[o] = ag * a[at[o]];
          } else {
#pragma omp simd
            for (int64_t j = 0; j < d.hw; ++j) q[j] = ag * a[j];
          }
        }
        if (want_dx) {
          T* q = pdx + off;
#pragma omp simd
          for (int64_t j = 0; j < d.hw; ++j) q[j] = av * a[j] + bx * b[j] + k;
        }
      }
    });
  });
  return out;
}

std::pair<Tensor, Tensor> batch_norm_grad_sums_rule(const Tensor& u, const Tensor& g, const Tensor& x,
                                                    const Tensor& mean, const Tensor& invstd, const Tensor& sums,
                                                    bool want_dg, bool want_dx, const Tensor* index) {
  const char* op = "batch_norm_grad_sums_rule";
  const BnDims d = bn_dims(x, op);
  const int64_t per = rule_g_per_plane(g, x, index, d, op);
  MF_CHECK(u.numel() == 2 * d.c && sums.numel() == 2 * d.c && mean.numel() == d.c && invstd.numel() == d.c,
           op, ": shapes do not fit: u ", to_string(u.shape()), ", x ", to_string(x.shape()), ", sums ",
           to_string(sums.shape()));
  check_same_dtype(g, x, op);
  check_same_dtype(u, x, op);
  Tensor dg = want_dg ? Tensor::empty(g.shape(), x.dtype()) : Tensor();
  Tensor dx = want_dx ? Tensor::empty(x.shape(), x.dtype()) : Tensor();
  if (!want_dg && !want_dx) return {dg, dx};
  const double m = static_cast<double>(d.n * d.hw);
  const int32_t* pi = index ? index->data<int32_t>() : nullptr;
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pu = u.data<T>();
    const T* pg = g.data<T>();
    const T* px = x.data<T>();
    const T* pm = mean.data<T>();
    const T* ps = invstd.data<T>();
    const T* sm = sums.data<T>();
    T* pdg = want_dg ? dg.data<T>() : nullptr;
    T* pdx = want_dx ? dx.data<T>() : nullptr;
    parallel_for(d.n * d.c, may_parallelize(x.numel()), [&](int64_t plane) {
      const int64_t ch = plane % d.c;
      const double r = ps[ch], mu = pm[ch], u0 = pu[ch], u1 = pu[d.c + ch];
      // dg = u0 r (x - mean) + u1; dx = a g + b x + c as batch_norm_grad_input with gamma = u0.
      const T ga = static_cast<T>(u0 * r), gc = static_cast<T>(u1 - u0 * r * mu);
      const BnInputCoefficients co = bn_input_coefficients(u0, r, mu, sm[ch], sm[d.c + ch], m);
      const T a = static_cast<T>(co.a), b = static_cast<T>(co.b), c = static_cast<T>(co.c);
      const T* gg = pg + plane * per;
      const T* xx = px + plane * d.hw;
      const int32_t* at = pi ? pi + plane * per : nullptr;
      if (want_dg) {
        T* q = pdg + plane * per;
        if (at) {
          for (int64_t o = 0; o < per; ++o) q[o] = ga * xx[at[o]] + gc;
        } else {
#pragma omp simd
          for (int64_t j = 0; j < d.hw; ++j) q[j] = ga * xx[j] + gc;
        }
      }
      if (want_dx) {
        T* q = pdx + plane * d.hw;
        if (at) {
          // g scattered: the dense part, then a g added at each of g's (distinct) positions.
#pragma omp simd
          for (int64_t j = 0; j < d.hw; ++j) q[j] = b * xx[j] + c;
          for (int64_t o = 0; o < per; ++o) q[at[o]] += a * gg[o];
        } else {
#pragma omp simd
          for (int64_t j = 0; j < d.hw; ++j) q[j] = a * gg[j] + b * xx[j] + c;
        }
      }
    });
  });
  return {dg, dx};
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
