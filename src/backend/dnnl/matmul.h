#pragma once
// Matrix product a @ b (2-D, either operand transposed): f32 through oneDNN's sgemm, run single-threaded
// (Note [Deterministic oneDNN]); f64 (gradient checks) by a plain loop.
#include "tensor/tensor.h"

namespace metafew::backend::dnnl_backend {

tensor::Tensor matmul(const tensor::Tensor& a, const tensor::Tensor& b, bool trans_a = false, bool trans_b = false);

}  // namespace metafew::backend::dnnl_backend
