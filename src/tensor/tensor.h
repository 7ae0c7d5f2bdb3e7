#pragma once
// Tensor: a contiguous, row-major array of f32, f64 (for gradient checks) or i32 (labels, pooling indices),
// held by a shared, 64-byte aligned Storage. Copies share storage; reshape shares storage; every kernel
// writes a fresh tensor unless its name ends in an underscore (in place).
#include <cstdint>
#include <memory>
#include <vector>

#include "core/error.h"
#include "tensor/shape.h"
#include "tensor/storage.h"

namespace metafew::tensor {

enum class DType : uint8_t { f32, f64, i32 };

size_t dtype_size(DType d);
const char* dtype_name(DType d);

template <class T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() { return DType::f32; }
template <>
constexpr DType dtype_of<double>() { return DType::f64; }
template <>
constexpr DType dtype_of<int32_t>() { return DType::i32; }

class Tensor {
 public:
  Tensor() = default;

  static Tensor empty(const Shape& shape, DType dtype = DType::f32);
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32);
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32);
  static Tensor from_vector(const std::vector<double>& values, const Shape& shape, DType dtype = DType::f32);
  static Tensor from_indices(const std::vector<int32_t>& values, const Shape& shape);
  static Tensor scalar(double value, DType dtype = DType::f32) { return full({}, value, dtype); }

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int64_t dim() const { return static_cast<int64_t>(shape_.size()); }
  int64_t size(int64_t axis) const;
  int64_t numel() const { return numel_; }
  DType dtype() const { return dtype_; }
  bool is_floating() const { return dtype_ != DType::i32; }

  template <class T>
  T* data() const {
    MF_CHECK(defined(), "Tensor::data: the tensor is undefined");
    MF_CHECK(dtype_of<T>() == dtype_, "Tensor::data: tensor holds ", dtype_name(dtype_), ", requested ",
             dtype_name(dtype_of<T>()));
    return static_cast<T*>(storage_->data());
  }
  void* raw_data() const { return storage_ ? storage_->data() : nullptr; }
  const std::shared_ptr<Storage>& storage() const { return storage_; }

  // Same storage, new shape (one extent may be -1); numel must match.
  Tensor reshape(const Shape& shape) const;
  Tensor clone() const;
  Tensor to(DType dtype) const;
  double item() const;
  std::vector<double> to_vector() const;
  void fill_(double value);
  void copy_(const Tensor& src);  // same shape and dtype

 private:
  std::shared_ptr<Storage> storage_;
  Shape shape_;
  int64_t numel_ = 0;
  DType dtype_ = DType::f32;
};

template <class T>
struct TypeTag {
  using type = T;
};

// Calls fn(TypeTag<T>{}) with T the C++ type of a floating dtype (f32 or f64); `op` names the caller in the
// error for other dtypes. Inside fn: `using T = typename decltype(tag)::type;`.
template <class Fn>
decltype(auto) dispatch_float(DType dtype, const char* op, Fn&& fn) {
  switch (dtype) {
    case DType::f32: return fn(TypeTag<float>{});
    case DType::f64: return fn(TypeTag<double>{});
    default: break;
  }
  throw Error(detail::concat(op, ": expected a floating tensor (f32 or f64), got ", dtype_name(dtype)));
}

}  // namespace metafew::tensor
