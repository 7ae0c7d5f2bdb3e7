// Training-time augmentation (data/augment.h): the warp against independent rotations and shifts, the
// distortions' draws, determinism.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/rng.h"
#include "data/augment.h"
#include "data/dataset.h"

namespace metafew::testing {
namespace {

std::vector<float> pattern(int64_t c, int64_t h, int64_t w) {
  std::vector<float> img(static_cast<size_t>(c * h * w));
  core::Rng rng(5);
  for (float& v : img) v = static_cast<float>(rng.uniform());
  return img;
}

TEST_CASE("data: warp_affine is the identity, a pixel shift and a quarter turn where it should be") {
  const int64_t c = 3, h = 9, w = 9;
  const std::vector<float> src = pattern(c, h, w);
  std::vector<float> out(src.size());
  data::warp_affine(src.data(), out.data(), c, h, w, {});
  CHECK(out == src);
  // One pixel to the right: column x shows column x - 1; the first column repeats the border.
  data::AffineMap shift;
  shift.shift = {1.0, 0.0};
  data::warp_affine(src.data(), out.data(), c, h, w, shift);
  for (int64_t ch = 0; ch < c; ++ch)
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x)
        CHECK(out[static_cast<size_t>((ch * h + y) * w + x)] ==
              src[static_cast<size_t>((ch * h + y) * w + std::max<int64_t>(x - 1, 0))]);
  // A rotation by -90 degrees in (column, row) coordinates (rows grow downwards) is numpy.rot90's quarter turn
  // counter-clockwise, which Dataset::read_image implements on its own: out[i][j] = in[j][W - 1 - i].
  data::AffineMap turn;
  turn.matrix = {0, 1, -1, 0};
  data::warp_affine(src.data(), out.data(), c, h, w, turn);
  for (int64_t ch = 0; ch < c; ++ch)
    for (int64_t i = 0; i < h; ++i)
      for (int64_t j = 0; j < w; ++j)
        CHECK(out[static_cast<size_t>((ch * h + i) * w + j)] == src[static_cast<size_t>((ch * h + j) * w + (w - 1 - i))]);
  // Half a pixel: the mean of neighbours.
  shift.shift = {0.5, 0.0};
  data::warp_affine(src.data(), out.data(), 1, h, w, shift);
  CHECK(out[4] == doctest::Approx(0.5 * (src[3] + src[4])));
  data::AffineMap singular;
  singular.matrix = {1, 2, 2, 4};
  CHECK_THROWS_WITH(data::warp_affine(src.data(), out.data(), c, h, w, singular), doctest::Contains("singular"));
}

TEST_CASE("data: affine distortions are drawn within Koch et al.'s ranges, each part half the time") {
  int identity = 0;
  for (uint64_t row = 0; row < 4000; ++row) {
    const data::AffineMap m = data::draw_affine(11, row, 28, 28);
    const auto& a = m.matrix;
    const double det = a[0] * a[3] - a[1] * a[2];
    // det = sx * sy * (1 - shear_x * shear_y)
    CHECK(det >= 0.8 * 0.8 * (1 - 0.09) - 1e-12);
    CHECK(det <= 1.2 * 1.2 * (1 + 0.09) + 1e-12);
    CHECK(std::abs(m.shift[0]) <= 2.0 * 28 / 105 + 1e-12);
    CHECK(std::abs(m.shift[1]) <= 2.0 * 28 / 105 + 1e-12);
    identity += a == std::array<double, 4>{1, 0, 0, 1} && m.shift == std::array<double, 2>{0, 0};
    // A pure function of (key, row).
    const data::AffineMap again = data::draw_affine(11, row, 28, 28);
    CHECK(again.matrix == m.matrix);
  }
  // All seven parts off: 1/128 of 4000 = 31 expected (a 99.99% interval is 12 to 56).
  CHECK(identity >= 12);
  CHECK(identity <= 56);
  CHECK(data::draw_affine(11, 0, 28, 28).matrix != data::draw_affine(12, 0, 28, 28).matrix);
}

TEST_CASE("data: augment_images distorts each image by its own row and leaves none alone when told") {
  tensor::Tensor a = tensor::Tensor::empty({6, 1, 12, 12});
  const std::vector<float> src = pattern(6, 12, 12);
  std::copy(src.begin(), src.end(), a.data<float>());
  tensor::Tensor b = a.clone(), none = a.clone();
  data::augment_images(none, data::Augment::none, 3);
  CHECK(std::equal(src.begin(), src.end(), none.data<float>()));
  data::augment_images(a, data::Augment::affine, 3);
  // Rows 2..5 alone, numbered from 2, come out as in the whole batch.
  tensor::Tensor tail = tensor::Tensor::empty({4, 1, 12, 12});
  std::copy(src.begin() + 2 * 144, src.end(), tail.data<float>());
  data::augment_images(tail, data::Augment::affine, 3, 2);
  CHECK(std::equal(tail.data<float>(), tail.data<float>() + 4 * 144, a.data<float>() + 2 * 144));
  data::augment_images(b, data::Augment::affine, 4);
  CHECK_FALSE(std::equal(a.data<float>(), a.data<float>() + a.numel(), b.data<float>()));
  CHECK_THROWS_WITH(data::parse_augment("crop"),
                    doctest::Contains("--augment must be none, affine (rotation, shear, scale and translation"));
}

// --augment photo (Note [Augmentation]): the crop map against values known by hand, the draws within their
// ranges, the jitter against its formulas, and the same per-row independence as affine's.
TEST_CASE("data: a crop map samples the crop onto the image, mirrored when flipped") {
  const int64_t h = 6, w = 8;
  // A ramp along x (and a second along y in channel 2): bilinear sampling reproduces it exactly.
  std::vector<float> src(static_cast<size_t>(2 * h * w)), out(src.size());
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      src[static_cast<size_t>(y * w + x)] = static_cast<float>(x);
      src[static_cast<size_t>(h * w + y * w + x)] = static_cast<float>(y);
    }
  // The whole image: the identity; flipped: columns reversed.
  data::warp_affine(src.data(), out.data(), 2, h, w, data::crop_map(0, 0, w, h, false, h, w));
  for (size_t k = 0; k < src.size(); ++k) CHECK(out[k] == doctest::Approx(src[k]).epsilon(1e-12));
  data::warp_affine(src.data(), out.data(), 2, h, w, data::crop_map(0, 0, w, h, true, h, w));
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      CHECK(out[static_cast<size_t>(y * w + x)] == doctest::Approx(w - 1 - x).epsilon(1e-12));
      CHECK(out[static_cast<size_t>(h * w + y * w + x)] == doctest::Approx(y).epsilon(1e-12));
    }
  // The crop [2, 6) x [1, 4): output column u samples x = 2 + (u + 0.5) * 4 / 8 - 0.5, row v samples
  // y = 1 + (v + 0.5) * 3 / 6 - 0.5.
  data::warp_affine(src.data(), out.data(), 2, h, w, data::crop_map(2, 1, 4, 3, false, h, w));
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      CHECK(out[static_cast<size_t>(y * w + x)] == doctest::Approx(2 + (x + 0.5) * 0.5 - 0.5).epsilon(1e-6));
      CHECK(out[static_cast<size_t>(h * w + y * w + x)] == doctest::Approx(1 + (y + 0.5) * 0.5 - 0.5).epsilon(1e-6));
    }
}

TEST_CASE("data: photo draws crops of 8-100% of the image within the aspect ratios, flips half the time") {
  const int64_t h = 20, w = 20;
  int flips = 0;
  double least_area = 1, most_area = 0, least_factor = 2, most_factor = 0;
  for (uint64_t row = 0; row < 4000; ++row) {
    const data::PhotoDraw d = data::draw_photo(7, row, h, w);
    // crop_map's matrix is diag(+-width / crop_width, height / crop_height).
    const double cw = w / std::abs(d.crop.matrix[0]), ch = h / d.crop.matrix[3];
    CHECK(d.crop.matrix[1] == 0);
    CHECK(d.crop.matrix[2] == 0);
    flips += d.crop.matrix[0] < 0;
    const double area = cw * ch / (w * h);
    least_area = std::min(least_area, area);
    most_area = std::max(most_area, area);
    CHECK(cw <= w + 1e-9);
    CHECK(ch <= h + 1e-9);
    if (cw < w - 1e-9 && ch < h - 1e-9) {  // neither side cut to the image: the ratio as drawn
      CHECK(cw / ch >= 0.75 - 1e-9);
      CHECK(cw / ch <= 4.0 / 3.0 + 1e-9);
      CHECK(area >= 0.08 - 1e-9);
    }
    for (double f : {d.brightness, d.contrast, d.saturation}) {
      least_factor = std::min(least_factor, f);
      most_factor = std::max(most_factor, f);
    }
    // The crop lies inside the image: its centre's offset leaves room for its half sides.
    const double centre_x = std::abs(d.crop.shift[0] / d.crop.matrix[0]), centre_y = std::abs(d.crop.shift[1] / d.crop.matrix[3]);
    CHECK(centre_x <= (w - cw) / 2 + 1e-9);
    CHECK(centre_y <= (h - ch) / 2 + 1e-9);
  }
  CHECK(flips > 1800);
  CHECK(flips < 2200);
  CHECK(least_area < 0.1);
  CHECK(most_area > 0.9);
  CHECK(least_factor >= 0.6);
  CHECK(least_factor < 0.61);
  CHECK(most_factor <= 1.4);
  CHECK(most_factor > 1.39);
}

TEST_CASE("data: colour jitter scales brightness, blends contrast with the mean and saturation with the gray") {
  // Two pixels of RGB: (0.2, 0.4, 0.6) and (0.8, 0.5, 0.1).
  const std::vector<float> px{0.2f, 0.8f, 0.4f, 0.5f, 0.6f, 0.1f};
  auto lum = [](double r, double g, double b) { return 0.299 * r + 0.587 * g + 0.114 * b; };
  std::vector<float> img = px;
  data::jitter_colour(img.data(), 3, 1, 2, 1.2, 0.5, 1.5);
  std::vector<double> v(px.begin(), px.end());
  for (double& x : v) x = std::clamp(1.2 * x, 0.0, 1.0);
  const double mean = (lum(v[0], v[2], v[4]) + lum(v[1], v[3], v[5])) / 2;
  for (double& x : v) x = std::clamp(0.5 * x + 0.5 * mean, 0.0, 1.0);
  for (int k = 0; k < 2; ++k) {
    const double gray = lum(v[k], v[2 + k], v[4 + k]);
    for (int c = 0; c < 3; ++c) v[c * 2 + k] = std::clamp(1.5 * v[c * 2 + k] - 0.5 * gray, 0.0, 1.0);
  }
  for (size_t k = 0; k < v.size(); ++k) CHECK(img[k] == doctest::Approx(v[k]).epsilon(1e-6));
  // Factors of 1 leave the image alone; a gray image has no saturation to change.
  img = px;
  data::jitter_colour(img.data(), 3, 1, 2, 1, 1, 1);
  for (size_t k = 0; k < px.size(); ++k) CHECK(img[k] == doctest::Approx(px[k]).epsilon(1e-7));
  std::vector<float> gray{0.25f, 0.75f};
  data::jitter_colour(gray.data(), 1, 1, 2, 1, 1, 0.1);
  CHECK(gray[0] == doctest::Approx(0.25).epsilon(1e-7));
  CHECK(gray[1] == doctest::Approx(0.75).epsilon(1e-7));
}

TEST_CASE("data: augment_images photo changes each image by its own row and stays in [0, 1]") {
  tensor::Tensor a = tensor::Tensor::empty({5, 3, 10, 10});
  const std::vector<float> src = pattern(5 * 3, 10, 10);
  std::copy(src.begin(), src.end(), a.data<float>());
  tensor::Tensor b = a.clone();
  data::augment_images(a, data::Augment::photo, 3);
  tensor::Tensor tail = tensor::Tensor::empty({2, 3, 10, 10});
  std::copy(src.begin() + 3 * 300, src.end(), tail.data<float>());
  data::augment_images(tail, data::Augment::photo, 3, 3);
  CHECK(std::equal(tail.data<float>(), tail.data<float>() + 600, a.data<float>() + 3 * 300));
  for (int64_t i = 0; i < 5; ++i) CHECK_FALSE(std::equal(src.begin() + i * 300, src.begin() + (i + 1) * 300, a.data<float>() + i * 300));
  for (int64_t k = 0; k < a.numel(); ++k) {
    CHECK(a.data<float>()[k] >= 0.0f);
    CHECK(a.data<float>()[k] <= 1.0f);
  }
  data::augment_images(b, data::Augment::photo, 4);
  CHECK_FALSE(std::equal(a.data<float>(), a.data<float>() + a.numel(), b.data<float>()));
  CHECK(data::parse_augment("photo") == data::Augment::photo);
}

}  // namespace
}  // namespace metafew::testing
