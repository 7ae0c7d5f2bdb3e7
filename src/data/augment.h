#pragma once
// Training-time augmentation of episode and batch images (Note [Augmentation] in augment.cpp): drawn from
// (seed, task index, image row), so a run is the same at any thread count and after a resume; validation and
// test tasks are never augmented.
#include <array>
#include <cstdint>
#include <string>

#include "tensor/tensor.h"

namespace metafew::data {

enum class Augment {
  none,
  affine,  // Koch et al.'s affine distortions for characters: rotation, shear, scale, translation
};
const char* augment_name(Augment kind);
// "none" | "affine"; throws (usage) naming `flag` and the accepted values otherwise.
Augment parse_augment(const std::string& name, const std::string& flag = "--augment");

// An affine map of the image plane about its centre: output pixel p takes the input at
// centre + inverse(matrix) * (p - centre - shift), in pixel units (x = column, y = row).
struct AffineMap {
  std::array<double, 4> matrix{1, 0, 0, 1};  // row-major [[a, b], [c, d]] applied to (x, y)
  std::array<double, 2> shift{0, 0};         // (x, y) in pixels
};
// Warps every channel of one CHW image (bilinear, the border pixel repeated outside). src != dst.
void warp_affine(const float* src, float* dst, int64_t channels, int64_t height, int64_t width, const AffineMap& map);
// The distortion image `row` of task `key` gets (Note [Augmentation]).
AffineMap draw_affine(uint64_t key, uint64_t row, int64_t height, int64_t width);

// Augments every image of an (N, C, H, W) f32 tensor in place; image n uses rows first_row + n.
void augment_images(tensor::Tensor& images, Augment kind, uint64_t key, uint64_t first_row = 0);

}  // namespace metafew::data
