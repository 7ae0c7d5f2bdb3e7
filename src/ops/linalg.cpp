#include "ops/detail.h"

#include "backend/dnnl/matmul.h"

namespace metafew::ops {

using detail::make_result;

Variable matmul(const Variable& a, const Variable& b, bool trans_a, bool trans_b) {
  return make_result(backend::dnnl_backend::matmul(a.data(), b.data(), trans_a, trans_b), "matmul", {a, b}, MF_BACKWARD {
    // C = op(A) op(B); each case writes dA and dB as products with g, transposes folded into the flags.
    const Variable& A = in[0];
    const Variable& B = in[1];
    Variable da, db;
    if (!trans_a && !trans_b) {
      if (need[0]) da = matmul(g, B, false, true);
      if (need[1]) db = matmul(A, g, true, false);
    } else if (!trans_a && trans_b) {
      if (need[0]) da = matmul(g, B, false, false);
      if (need[1]) db = matmul(g, A, true, false);
    } else if (trans_a && !trans_b) {
      if (need[0]) da = matmul(B, g, false, true);
      if (need[1]) db = matmul(A, g, false, false);
    } else {
      if (need[0]) da = matmul(B, g, true, true);
      if (need[1]) db = matmul(g, A, true, true);
    }
    return {da, db};
  });
}

Variable linear(const Variable& x, const Variable& w, const Variable& b) {
  MF_CHECK(x.dim() == 2 && w.dim() == 2 && x.shape()[1] == w.shape()[1], "linear: input ",
           tensor::to_string(x.shape()), " and weight ", tensor::to_string(w.shape()),
           " do not fit (expected (N, in) and (out, in))");
  Variable y = matmul(x, w, false, true);
  if (!b.defined()) return y;
  MF_CHECK(b.dim() == 1 && b.shape()[0] == w.shape()[0], "linear: bias ", tensor::to_string(b.shape()),
           " must have ", w.shape()[0], " elements");
  return add(y, b);
}

}  // namespace metafew::ops
