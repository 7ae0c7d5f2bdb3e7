#pragma once
// builtin:glyphs: a procedural dataset of stroke characters (Note [Glyphs] in glyphs.cpp).
//
// 1200 classes x 20 samples, generated from a seed in memory (no files, no disk cache), split by class into
// 960 train / 120 val / 120 test. Each class is 2-4 strokes (line segments and quadratic Bezier arcs, often
// attached to an earlier stroke); each sample redraws them with per-point noise, a per-stroke width change
// and a random affine (rotation, scale, shear, translation), antialiased. Images are f32 in [0, 1] when
// served, strokes 1.0 on background 0.0, like Omniglot.
#include <cstdint>

#include "data/dataset.h"

namespace metafew::data {

struct GlyphConfig {
  int64_t classes = 1200;
  int64_t samples = 20;
  int64_t train_classes = 960;
  int64_t val_classes = 120;  // test: the rest
};

// Deterministic in (seed, image, config) at any thread count. requires: image.channels 1 or 3 (3 repeats
// the plane), config counts positive and train + val < classes.
Dataset::Contents glyph_contents(uint64_t seed, const ImageSpec& image, const GlyphConfig& config = {});
std::shared_ptr<const Dataset> make_glyph_dataset(uint64_t seed, const ImageSpec& image = {},
                                                  const GlyphConfig& config = {});

}  // namespace metafew::data
