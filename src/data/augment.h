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
  photo,   // for photographs: random resized crop, horizontal flip, colour jitter (brightness, contrast, saturation)
};
const char* augment_name(Augment kind);
// "none" | "affine" | "photo"; throws (usage) naming `flag` and the accepted values otherwise.
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

// The map that samples the crop [x0, x0 + crop_width) x [y0, y0 + crop_height) of a width x height image (in
// pixel edges: pixel i spans [i, i + 1)) onto the whole image, mirrored left to right when `flip`.
AffineMap crop_map(double x0, double y0, double crop_width, double crop_height, bool flip, int64_t height,
                   int64_t width);
// What --augment photo draws for image `row` of task `key` (Note [Augmentation]).
struct PhotoDraw {
  AffineMap crop;  // the random resized crop and the flip
  double brightness = 1, contrast = 1, saturation = 1;
};
PhotoDraw draw_photo(uint64_t key, uint64_t row, int64_t height, int64_t width);
// Colour jitter of one CHW image (values in [0, 1]) in place, as torchvision's ColorJitter defines each part,
// in this order: brightness (v * b), contrast (blend with the mean luminance of the image), saturation (blend
// with each pixel's luminance; colour images only); each step clamps to [0, 1]. Luminance is
// 0.299 R + 0.587 G + 0.114 B, or the one channel.
void jitter_colour(float* image, int64_t channels, int64_t height, int64_t width, double brightness, double contrast,
                   double saturation);

// Augments every image of an (N, C, H, W) f32 tensor in place; image n uses rows first_row + n.
void augment_images(tensor::Tensor& images, Augment kind, uint64_t key, uint64_t first_row = 0);

}  // namespace metafew::data
