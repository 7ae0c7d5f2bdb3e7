#pragma once
// Shapes are short vectors of extents; tensors are always contiguous (row-major), so strides follow from them.
#include <cstdint>
#include <string>
#include <vector>

namespace metafew::tensor {

using Shape = std::vector<int64_t>;

int64_t numel(const Shape& s);
std::vector<int64_t> contiguous_strides(const Shape& s);
std::string to_string(const Shape& s);
// Normalises a possibly negative axis against a rank; throws with `op` in the message when out of range.
int64_t normalize_axis(int64_t axis, int64_t rank, const char* op);
// The numpy broadcast of two shapes; throws naming `op` and both shapes when they do not broadcast.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);
// True when `from` can be broadcast to `to` (numpy rules, `from` right-aligned).
bool broadcastable_to(const Shape& from, const Shape& to);

}  // namespace metafew::tensor
