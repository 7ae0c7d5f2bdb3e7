// Sizes that come from untrusted numbers (settings, files) must fail as errors, never wrap into a small
// allocation that is then written past its end (issue 25, crash 1).
#include <doctest/doctest.h>

#include <cstdint>
#include <limits>

#include "core/error.h"
#include "tensor/tensor.h"

namespace metafew::testing {
namespace {

using tensor::Tensor;

TEST_CASE("tensor sizes: overflowing element and byte counts are errors, not small allocations") {
  const int64_t big = std::numeric_limits<int64_t>::max();
  CHECK_THROWS_AS(tensor::numel({big, 2}), Error);
  CHECK_THROWS_AS(tensor::numel({int64_t{1} << 32, int64_t{1} << 32}), Error);
  CHECK_THROWS_AS(tensor::numel({3, -1}), Error);
  CHECK(tensor::numel({int64_t{1} << 31, int64_t{1} << 31}) == int64_t{1} << 62);
  // 2^62 floats: the element count fits, the byte count does not.
  CHECK_THROWS_WITH_AS(Tensor::empty({int64_t{1} << 31, int64_t{1} << 31}), doctest::Contains("2^62 bytes"), Error);
  // 4096 x 4096 x 3 x 3 filters times 2^40: the product wraps around 2^64 in unchecked arithmetic.
  CHECK_THROWS_AS(Tensor::empty({4096, 4096, 3, int64_t{1} << 40}), Error);
  // An allocation the machine cannot give is an error that says so (the size is possible, the memory is not).
  CHECK_THROWS_WITH_AS(Tensor::empty({int64_t{1} << 61}, tensor::DType::i32),
                       doctest::Contains("2^62 bytes"), Error);
  CHECK_THROWS_WITH_AS(Tensor::empty({int64_t{1} << 58}, tensor::DType::f32), doctest::Contains("out of memory"),
                       Error);
  CHECK(Tensor::empty({0, 5}).numel() == 0);
}

}  // namespace
}  // namespace metafew::testing
