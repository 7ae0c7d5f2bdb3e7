#pragma once
// Accuracy of a fused op against the composition of ops it replaces: both in f32, measured against that
// composition in f64 (tests/ops/test_first_block.cpp, tests/ops/test_blocked_block.cpp).
#include <doctest/doctest.h>
#include <omp.h>

#include <string>
#include <vector>

#include "tensor/kernels.h"
#include "tensor/tensor.h"

namespace metafew::testing {

// Relative error of each output against the reference: max |a - ref| / (1 + max |ref|).
inline std::vector<double> relative_errors(const std::vector<tensor::Tensor>& a,
                                           const std::vector<tensor::Tensor>& ref) {
  std::vector<double> e;
  for (size_t i = 0; i < a.size(); ++i)
    e.push_back(tensor::max_abs_diff(a[i], ref[i]) / (1 + tensor::max_abs(ref[i])));
  return e;
}

// Allowed: twice the composition's own error, plus 8 f32 rounding units of the largest value. A fused op sums
// in other orders, so it is not bit-identical to the composition, but it must not be less accurate.
inline bool as_accurate(double fused, double composition) {
  return fused <= 2 * composition + 8 * 6e-8;
}

// Every output of `fused` as accurate as the same output of `composition` (both relative_errors against the
// same f64 reference); `what` names the outputs in order for the failure message.
inline void check_as_accurate(const std::vector<double>& fused, const std::vector<double>& composition,
                              const char* what) {
  REQUIRE(fused.size() == composition.size());
  const std::string outputs = what;
  for (size_t i = 0; i < fused.size(); ++i) {
    CAPTURE(outputs);
    CAPTURE(i);
    CAPTURE(fused[i]);
    CAPTURE(composition[i]);
    CHECK(as_accurate(fused[i], composition[i]));
  }
}

// fn() run with the OpenMP thread count set to `threads` (restored after).
template <class Fn>
auto at_threads(int threads, Fn&& fn) {
  const int before = omp_get_max_threads();
  omp_set_num_threads(threads);
  auto out = fn();
  omp_set_num_threads(before);
  return out;
}

}  // namespace metafew::testing
