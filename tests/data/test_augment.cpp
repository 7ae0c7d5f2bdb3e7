// Training-time augmentation (data/augment.h): the warp against independent rotations and shifts, the
// distortions' draws, determinism.
#include <doctest/doctest.h>

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
                    doctest::Contains("--augment must be none or affine (rotation, shear, scale and translation"));
}

}  // namespace
}  // namespace metafew::testing
