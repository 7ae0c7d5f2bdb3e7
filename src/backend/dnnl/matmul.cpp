#include "backend/dnnl/matmul.h"

#include "oneapi/dnnl/dnnl.h"
#include "tensor/serial_scope.h"

namespace metafew::backend::dnnl_backend {

using tensor::DType;
using tensor::Tensor;

Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) {
  MF_CHECK(a.defined() && b.defined() && a.dtype() == b.dtype(), "matmul: operands must be defined and of one dtype");
  MF_CHECK(a.dim() == 2 && b.dim() == 2, "matmul: expected 2-D operands, got ", tensor::to_string(a.shape()), " and ",
           tensor::to_string(b.shape()));
  const int64_t m = trans_a ? a.shape()[1] : a.shape()[0];
  const int64_t k = trans_a ? a.shape()[0] : a.shape()[1];
  const int64_t kb = trans_b ? b.shape()[1] : b.shape()[0];
  const int64_t n = trans_b ? b.shape()[0] : b.shape()[1];
  MF_CHECK(k == kb, "matmul: inner extents differ: ", tensor::to_string(a.shape()), (trans_a ? "^T" : ""), " @ ",
           tensor::to_string(b.shape()), (trans_b ? "^T" : ""));
  Tensor y = Tensor::empty({m, n}, a.dtype());
  if (m == 0 || n == 0) return y;
  if (k == 0) {
    y.fill_(0.0);
    return y;
  }
  const int64_t lda = a.shape()[1], ldb = b.shape()[1];
  if (a.dtype() == DType::f32) {
    tensor::SerialScope serial;  // Note [Deterministic oneDNN]
    dnnl_status_t st = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, 1.0f, a.data<float>(), lda,
                                  b.data<float>(), ldb, 0.0f, y.data<float>(), n);
    MF_CHECK(st == dnnl_success, "matmul: oneDNN sgemm failed with status ", static_cast<int>(st));
    return y;
  }
  tensor::dispatch_float(a.dtype(), "matmul", [&](auto tag) {
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

}  // namespace metafew::backend::dnnl_backend
