// Kernels that move data without arithmetic on it (copies, permutes, slices, concatenation, gathers) and index_add.
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


}  // namespace metafew::tensor
