#include "data/augment.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/rng.h"

// Note [Augmentation]
// --augment affine distorts each training image as Koch, Zemel and Salakhutdinov (2015) did for their Omniglot
// Siamese network: each of rotation (within +-10 degrees), shear (x and y within +-0.3), scale (x and y within
// 0.8 to 1.2) and translation (x and y within +-2 pixels of a 105-pixel image, scaled to the image size) is
// applied with probability 1/2 each, about the image centre, with bilinear sampling and the border pixel
// repeated beyond the edge (Omniglot's border is background). The map is A = rotation * shear * scale, applied
// as p' = A (p - centre) + centre + translation. Image r of task i draws from Rng::from(key, {r}) with key =
// derive_key(seed, {i, "augment"}): 14 draws per image whatever is applied, so no image's draw depends on
// another's, on the thread count or on a resume. Training tasks and pretraining batches are augmented (support
// and queries alike); validation, eval, adapt and predict never are.
//
// --augment photo is the usual augmentation of the ResNet-12 papers' photographs (RFS, Meta-Baseline): a random
// resized crop as torchvision's RandomResizedCrop draws it (area 8% to 100% of the image, aspect ratio
// log-uniform in 3/4 to 4/3, place uniform), except that a side longer than the image is cut to it instead of
// the draw being repeated (so every image takes the same number of draws); the crop is sampled bilinearly back
// to the full size; a horizontal flip half the time; and colour jitter with brightness, contrast and
// saturation factors each uniform in [0.6, 1.4] (RFS's 0.4), applied in that fixed order (torchvision shuffles
// it). 8 draws per image, from the same Rng::from(key, {r}) as affine's.

namespace metafew::data {

const char* augment_name(Augment kind) {
  switch (kind) {
    case Augment::affine: return "affine";
    case Augment::photo: return "photo";
    case Augment::none: break;
  }
  return "none";
}

Augment parse_augment(const std::string& name, const std::string& flag) {
  for (Augment k : {Augment::none, Augment::affine, Augment::photo})
    if (name == augment_name(k)) return k;
  throw Error(::metafew::detail::concat(flag, " must be none, affine (rotation, shear, scale and translation of ",
                                        "characters) or photo (random resized crop, horizontal flip and colour ",
                                        "jitter), got '", name, "'"),
              ErrorKind::usage);
}

void warp_affine(const float* src, float* dst, int64_t channels, int64_t height, int64_t width, const AffineMap& map) {
  const auto& m = map.matrix;
  const double det = m[0] * m[3] - m[1] * m[2];
  MF_CHECK(std::abs(det) > 1e-12, "warp_affine: the map is singular (determinant ", det, ")");
  const double i00 = m[3] / det, i01 = -m[1] / det, i10 = -m[2] / det, i11 = m[0] / det;
  const double cx = 0.5 * static_cast<double>(width - 1), cy = 0.5 * static_cast<double>(height - 1);
  const int64_t plane = height * width;
  for (int64_t y = 0; y < height; ++y)
    for (int64_t x = 0; x < width; ++x) {
      const double ox = static_cast<double>(x) - cx - map.shift[0], oy = static_cast<double>(y) - cy - map.shift[1];
      const double sx = std::clamp(i00 * ox + i01 * oy + cx, 0.0, static_cast<double>(width - 1));
      const double sy = std::clamp(i10 * ox + i11 * oy + cy, 0.0, static_cast<double>(height - 1));
      const auto x0 = static_cast<int64_t>(std::floor(sx)), y0 = static_cast<int64_t>(std::floor(sy));
      const int64_t x1 = std::min(x0 + 1, width - 1), y1 = std::min(y0 + 1, height - 1);
      const auto fx = static_cast<float>(sx - static_cast<double>(x0)), fy = static_cast<float>(sy - static_cast<double>(y0));
      for (int64_t c = 0; c < channels; ++c) {
        const float* s = src + c * plane;
        const float top = s[y0 * width + x0] + fx * (s[y0 * width + x1] - s[y0 * width + x0]);
        const float bottom = s[y1 * width + x0] + fx * (s[y1 * width + x1] - s[y1 * width + x0]);
        dst[c * plane + y * width + x] = top + fy * (bottom - top);
      }
    }
}

AffineMap draw_affine(uint64_t key, uint64_t row, int64_t height, int64_t width) {
  core::Rng rng = core::Rng::from(key, {row});
  // Always 14 draws: a coin and a value for each of the 7 parameters.
  auto maybe = [&](double lo, double hi, double identity) {
    const bool on = rng.uniform() < 0.5;
    const double v = rng.uniform(lo, hi);
    return on ? v : identity;
  };
  const double pi = 3.14159265358979323846;
  const double theta = maybe(-10.0, 10.0, 0.0) * pi / 180.0;
  const double shear_x = maybe(-0.3, 0.3, 0.0), shear_y = maybe(-0.3, 0.3, 0.0);
  const double scale_x = maybe(0.8, 1.2, 1.0), scale_y = maybe(0.8, 1.2, 1.0);
  const double tx = maybe(-2.0, 2.0, 0.0) * static_cast<double>(width) / 105.0;
  const double ty = maybe(-2.0, 2.0, 0.0) * static_cast<double>(height) / 105.0;
  // rotation * shear * scale
  const double c = std::cos(theta), s = std::sin(theta);
  const double r[4] = {c, -s, s, c};
  const double sh[4] = {1.0, shear_x, shear_y, 1.0};
  const double rs[4] = {r[0] * sh[0] + r[1] * sh[2], r[0] * sh[1] + r[1] * sh[3], r[2] * sh[0] + r[3] * sh[2],
                        r[2] * sh[1] + r[3] * sh[3]};
  AffineMap m;
  m.matrix = {rs[0] * scale_x, rs[1] * scale_y, rs[2] * scale_x, rs[3] * scale_y};
  m.shift = {tx, ty};
  return m;
}

AffineMap crop_map(double x0, double y0, double crop_width, double crop_height, bool flip, int64_t height,
                   int64_t width) {
  // Output pixel p (centre at p, the image's centre at c = (size - 1) / 2) samples the source at
  // crop_centre + S (p - c), S = diag(+-crop_width / width, crop_height / height); as warp_affine's
  // c + inverse(A) (p - c - shift): A = inverse(S), shift = -A (crop_centre - c).
  const double sx = (flip ? -1.0 : 1.0) * crop_width / static_cast<double>(width);
  const double sy = crop_height / static_cast<double>(height);
  const double dx = x0 - 0.5 + 0.5 * crop_width - 0.5 * static_cast<double>(width - 1);
  const double dy = y0 - 0.5 + 0.5 * crop_height - 0.5 * static_cast<double>(height - 1);
  AffineMap m;
  m.matrix = {1.0 / sx, 0.0, 0.0, 1.0 / sy};
  m.shift = {-dx / sx, -dy / sy};
  return m;
}

PhotoDraw draw_photo(uint64_t key, uint64_t row, int64_t height, int64_t width) {
  core::Rng rng = core::Rng::from(key, {row});
  const double area = rng.uniform(0.08, 1.0);
  const double ratio = std::exp(rng.uniform(std::log(3.0 / 4.0), std::log(4.0 / 3.0)));
  const double ux = rng.uniform(), uy = rng.uniform();
  const bool flip = rng.uniform() < 0.5;
  PhotoDraw d;
  d.brightness = rng.uniform(0.6, 1.4);
  d.contrast = rng.uniform(0.6, 1.4);
  d.saturation = rng.uniform(0.6, 1.4);
  const auto w = static_cast<double>(width), h = static_cast<double>(height);
  const double cw = std::min(w, std::sqrt(area * w * h * ratio)), ch = std::min(h, std::sqrt(area * w * h / ratio));
  d.crop = crop_map(ux * (w - cw), uy * (h - ch), cw, ch, flip, height, width);
  return d;
}

void jitter_colour(float* image, int64_t channels, int64_t height, int64_t width, double brightness, double contrast,
                   double saturation) {
  const int64_t plane = height * width;
  auto clamp01 = [](double v) { return static_cast<float>(std::clamp(v, 0.0, 1.0)); };
  auto luminance = [&](int64_t k) {
    return channels == 3 ? 0.299 * image[k] + 0.587 * image[plane + k] + 0.114 * image[2 * plane + k]
                         : static_cast<double>(image[k]);
  };
  for (int64_t k = 0; k < channels * plane; ++k) image[k] = clamp01(brightness * image[k]);
  double mean = 0;
  for (int64_t k = 0; k < plane; ++k) mean += luminance(k);
  mean /= static_cast<double>(plane);
  for (int64_t k = 0; k < channels * plane; ++k) image[k] = clamp01(contrast * image[k] + (1.0 - contrast) * mean);
  if (channels != 3) return;
  for (int64_t k = 0; k < plane; ++k) {
    const double gray = luminance(k);
    for (int64_t c = 0; c < 3; ++c) {
      float& v = image[c * plane + k];
      v = clamp01(saturation * v + (1.0 - saturation) * gray);
    }
  }
}

void augment_images(tensor::Tensor& images, Augment kind, uint64_t key, uint64_t first_row) {
  if (kind == Augment::none || images.numel() == 0) return;
  MF_CHECK(images.dim() == 4, "augment_images: expected (N, C, H, W) images, got ", images.dim(), " dimensions");
  const int64_t n = images.size(0), c = images.size(1), h = images.size(2), w = images.size(3), px = c * h * w;
  float* data = images.data<float>();
  std::vector<float> src(static_cast<size_t>(px));
  for (int64_t i = 0; i < n; ++i) {
    std::copy(data + i * px, data + (i + 1) * px, src.begin());
    const uint64_t row = first_row + static_cast<uint64_t>(i);
    if (kind == Augment::affine) {
      warp_affine(src.data(), data + i * px, c, h, w, draw_affine(key, row, h, w));
    } else {
      const PhotoDraw d = draw_photo(key, row, h, w);
      warp_affine(src.data(), data + i * px, c, h, w, d.crop);
      jitter_colour(data + i * px, c, h, w, d.brightness, d.contrast, d.saturation);
    }
  }
}

}  // namespace metafew::data
