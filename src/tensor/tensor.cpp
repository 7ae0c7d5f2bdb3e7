#include "tensor/tensor.h"

#include <cstring>

namespace metafew::tensor {

size_t dtype_size(DType d) {
  switch (d) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::i32: return 4;
  }
  return 0;
}

const char* dtype_name(DType d) {
  switch (d) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::i32: return "i32";
  }
  return "?";
}

int64_t Tensor::size(int64_t axis) const {
  return shape_[normalize_axis(axis, dim(), "Tensor::size")];
}

Tensor Tensor::empty(const Shape& shape, DType dtype) {
  for (int64_t d : shape) MF_CHECK(d >= 0, "Tensor::empty: negative extent in shape ", to_string(shape));
  Tensor t;
  t.shape_ = shape;
  t.numel_ = tensor::numel(shape);
  t.dtype_ = dtype;
  size_t bytes = 0;
  MF_CHECK(!__builtin_mul_overflow(static_cast<size_t>(t.numel_), dtype_size(dtype), &bytes) &&
               bytes <= (size_t{1} << 62),
           "Tensor::empty: shape ", to_string(shape), " needs more than 2^62 bytes");
  t.storage_ = std::make_shared<Storage>(bytes);
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype) {
  Tensor t = empty(shape, dtype);
  if (t.numel_) std::memset(t.raw_data(), 0, static_cast<size_t>(t.numel_) * dtype_size(dtype));
  return t;
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype) {
  Tensor t = empty(shape, dtype);
  t.fill_(value);
  return t;
}

Tensor Tensor::from_vector(const std::vector<double>& values, const Shape& shape, DType dtype) {
  MF_CHECK(static_cast<int64_t>(values.size()) == tensor::numel(shape), "Tensor::from_vector: ", values.size(),
           " values for shape ", to_string(shape), " (", tensor::numel(shape), " elements)");
  Tensor t = empty(shape, dtype);
  switch (dtype) {
    case DType::f32:
      for (size_t i = 0; i < values.size(); ++i) t.data<float>()[i] = static_cast<float>(values[i]);
      break;
    case DType::f64:
      for (size_t i = 0; i < values.size(); ++i) t.data<double>()[i] = values[i];
      break;
    case DType::i32:
      for (size_t i = 0; i < values.size(); ++i) t.data<int32_t>()[i] = static_cast<int32_t>(values[i]);
      break;
  }
  return t;
}

Tensor Tensor::from_indices(const std::vector<int32_t>& values, const Shape& shape) {
  MF_CHECK(static_cast<int64_t>(values.size()) == tensor::numel(shape), "Tensor::from_indices: ", values.size(),
           " values for shape ", to_string(shape));
  Tensor t = empty(shape, DType::i32);
  if (!values.empty()) std::memcpy(t.raw_data(), values.data(), values.size() * sizeof(int32_t));
  return t;
}

Tensor Tensor::reshape(const Shape& shape) const {
  Shape s = shape;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      MF_CHECK(infer < 0, "reshape: more than one -1 in ", to_string(shape));
      infer = static_cast<int64_t>(i);
    } else {
      MF_CHECK(s[i] >= 0, "reshape: negative extent in ", to_string(shape));
      known *= s[i];
    }
  }
  if (infer >= 0) {
    MF_CHECK(known > 0 && numel_ % known == 0, "reshape: cannot infer -1 in ", to_string(shape), " for ",
             numel_, " elements");
    s[infer] = numel_ / known;
  }
  MF_CHECK(tensor::numel(s) == numel_, "reshape: shape ", to_string(shape_), " (", numel_, " elements) cannot become ",
           to_string(shape));
  Tensor t = *this;
  t.shape_ = s;
  return t;
}

Tensor Tensor::clone() const {
  Tensor t = empty(shape_, dtype_);
  if (numel_) std::memcpy(t.raw_data(), raw_data(), static_cast<size_t>(numel_) * dtype_size(dtype_));
  return t;
}

namespace {
template <class From, class To>
void convert(const From* src, To* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<To>(src[i]);
}
template <class To>
void convert_from(const Tensor& src, To* dst) {
  switch (src.dtype()) {
    case DType::f32: convert(src.data<float>(), dst, src.numel()); break;
    case DType::f64: convert(src.data<double>(), dst, src.numel()); break;
    case DType::i32: convert(src.data<int32_t>(), dst, src.numel()); break;
  }
}
}  // namespace

Tensor Tensor::to(DType dtype) const {
  MF_CHECK(defined(), "Tensor::to: the tensor is undefined");
  if (dtype == dtype_) return *this;
  Tensor t = empty(shape_, dtype);
  switch (dtype) {
    case DType::f32: convert_from(*this, t.data<float>()); break;
    case DType::f64: convert_from(*this, t.data<double>()); break;
    case DType::i32: convert_from(*this, t.data<int32_t>()); break;
  }
  return t;
}

double Tensor::item() const {
  MF_CHECK(numel_ == 1, "Tensor::item: expected one element, the tensor has shape ", to_string(shape_));
  return to_vector()[0];
}

std::vector<double> Tensor::to_vector() const {
  std::vector<double> out(static_cast<size_t>(numel_));
  if (numel_) convert_from(*this, out.data());
  return out;
}

void Tensor::fill_(double value) {
  if (storage_) storage_->touch();  // Note [Storage generation]
  switch (dtype_) {
    case DType::f32: {
      float* p = data<float>();
      for (int64_t i = 0; i < numel_; ++i) p[i] = static_cast<float>(value);
      break;
    }
    case DType::f64: {
      double* p = data<double>();
      for (int64_t i = 0; i < numel_; ++i) p[i] = value;
      break;
    }
    case DType::i32: {
      int32_t* p = data<int32_t>();
      for (int64_t i = 0; i < numel_; ++i) p[i] = static_cast<int32_t>(value);
      break;
    }
  }
}

void Tensor::copy_(const Tensor& src) {
  MF_CHECK(src.shape_ == shape_ && src.dtype_ == dtype_, "Tensor::copy_: source ", to_string(src.shape_), " ",
           dtype_name(src.dtype_), " does not match destination ", to_string(shape_), " ", dtype_name(dtype_));
  if (storage_) storage_->touch();  // Note [Storage generation]
  if (numel_) std::memcpy(raw_data(), src.raw_data(), static_cast<size_t>(numel_) * dtype_size(dtype_));
}

}  // namespace metafew::tensor
