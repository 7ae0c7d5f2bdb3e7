#include "data/glyphs.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/error.h"
#include "core/rng.h"
#include "data/hash.h"

// Note [Glyphs]
// A class is a "character": 2-4 strokes in the unit square, each a line segment or a quadratic Bezier arc of
// length 0.25-0.6; after the first, a stroke starts on an earlier one (its end, start or a point along it)
// with probability 0.6, so glyphs are connected shapes rather than scattered marks. A sample redraws its
// class with
//   * a random affine about the centre: rotation N(0, 0.1 rad) clipped to +-0.25, scale U[0.88, 1.12] with
//     aspect U[0.93, 1.07], shear U[-0.15, 0.15], translation U[-0.08, 0.08] of the side per axis;
//   * every control point moved by N(0, kPointNoise) per axis (kPointNoise = 0.03 of the side, ~0.8 px at
//   28);
//   * every stroke's width scaled by U[0.8, 1.25] (base width 0.055-0.085 of the side, per class and stroke);
// and is drawn antialiased: a pixel's value is the max over strokes of clamp(w/2 + 0.5 - d, 0, 1), d the
// distance from its centre to the stroke (Bezier arcs flattened into 8 segments). The jitter is sized so that
// two samples of a class differ by more than two different classes sometimes do in pixel space: pixel-space
// 1-NN reaches only part of the way (tests/data/test_glyphs.cpp measures it) while the shapes remain
// unambiguous to a learned, translation-tolerant embedding. Each class draws from Rng::from(seed,
// {hash("glyphs"), class}) and each sample from its own stream, so generation is deterministic under OpenMP.

namespace metafew::data {
namespace {

constexpr double kPointNoise = 0.03;

struct P {
  double x, y;
};
P operator+(P a, P b) {
  return {a.x + b.x, a.y + b.y};
}
P operator-(P a, P b) {
  return {a.x - b.x, a.y - b.y};
}
P operator*(double s, P a) {
  return {s * a.x, s * a.y};
}

struct Stroke {
  bool curve = false;
  P p0{}, p1{}, p2{};
  double width = 0.07;
};

P on_stroke(const Stroke& s, double t) {
  if (!s.curve) return s.p0 + t * (s.p2 - s.p0);
  const double u = 1 - t;
  return (u * u) * s.p0 + (2 * u * t) * s.p1 + (t * t) * s.p2;
}

double clampd(double v, double lo, double hi) {
  return std::min(hi, std::max(lo, v));
}

std::vector<Stroke> make_glyph(core::Rng& rng) {
  const auto n = static_cast<int>(2 + rng.below(3));
  std::vector<Stroke> strokes;
  for (int s = 0; s < n; ++s) {
    Stroke st;
    if (s > 0 && rng.uniform() < 0.6) {
      const Stroke& prev = strokes[rng.below(static_cast<uint64_t>(s))];
      const double r = rng.uniform();
      st.p0 = on_stroke(prev, r < 0.35 ? 1.0 : r < 0.6 ? 0.0 : rng.uniform(0.2, 0.8));
    } else {
      st.p0 = {rng.uniform(0.15, 0.85), rng.uniform(0.15, 0.85)};
    }
    const double angle = rng.uniform(0, 2 * M_PI), len = rng.uniform(0.25, 0.6);
    st.p2 = {clampd(st.p0.x + len * std::cos(angle), 0.1, 0.9),
             clampd(st.p0.y + len * std::sin(angle), 0.1, 0.9)};
    st.curve = rng.uniform() < 0.55;
    const double bend = rng.uniform(-0.35, 0.35) * len;
    const P mid = 0.5 * (st.p0 + st.p2);
    st.p1 = st.curve ? P{mid.x - bend * std::sin(angle), mid.y + bend * std::cos(angle)} : mid;
    st.width = rng.uniform(0.055, 0.085);
    strokes.push_back(st);
  }
  return strokes;
}

// Draws one jittered sample into `out` (h*w floats, zeroed by the caller).
void draw_sample(const std::vector<Stroke>& glyph, core::Rng& rng, int64_t h, int64_t w, float* out) {
  const double theta = clampd(0.1 * rng.normal(), -0.25, 0.25), scale = rng.uniform(0.88, 1.12);
  const double sx = scale, sy = scale * rng.uniform(0.93, 1.07), shear = rng.uniform(-0.15, 0.15);
  const double tx = rng.uniform(-0.08, 0.08), ty = rng.uniform(-0.08, 0.08);
  const double c = std::cos(theta), s = std::sin(theta);
  // M = R(theta) * [[sx, shear * sy], [0, sy]], applied about the centre.
  const double m00 = c * sx, m01 = c * shear * sy - s * sy, m10 = s * sx, m11 = s * shear * sy + c * sy;
  auto warp = [&](P p) {
    const P q{p.x - 0.5 + kPointNoise * rng.normal(), p.y - 0.5 + kPointNoise * rng.normal()};
    return P{(m00 * q.x + m01 * q.y + 0.5 + tx) * static_cast<double>(w),
             (m10 * q.x + m11 * q.y + 0.5 + ty) * static_cast<double>(h)};
  };
  const double side = static_cast<double>(std::min(h, w));
  for (const Stroke& st : glyph) {
    Stroke px{st.curve, warp(st.p0), warp(st.p1), warp(st.p2), st.width * side * rng.uniform(0.8, 1.25)};
    const int segments = st.curve ? 8 : 1;
    const double hw = 0.5 * px.width;
    P a = on_stroke(px, 0);
    for (int k = 1; k <= segments; ++k) {
      const P b = on_stroke(px, static_cast<double>(k) / segments);
      const P ab = b - a;
      const double len2 = std::max(1e-12, ab.x * ab.x + ab.y * ab.y);
      const auto x0 = std::max<int64_t>(0, static_cast<int64_t>(std::floor(std::min(a.x, b.x) - hw - 1)));
      const auto x1 = std::min<int64_t>(w - 1, static_cast<int64_t>(std::ceil(std::max(a.x, b.x) + hw + 1)));
      const auto y0 = std::max<int64_t>(0, static_cast<int64_t>(std::floor(std::min(a.y, b.y) - hw - 1)));
      const auto y1 = std::min<int64_t>(h - 1, static_cast<int64_t>(std::ceil(std::max(a.y, b.y) + hw + 1)));
      for (int64_t y = y0; y <= y1; ++y)
        for (int64_t x = x0; x <= x1; ++x) {
          const P p{static_cast<double>(x) + 0.5, static_cast<double>(y) + 0.5};
          const P ap = p - a;
          const double t = clampd((ap.x * ab.x + ap.y * ab.y) / len2, 0, 1);
          const P d = ap - t * ab;
          const auto v = static_cast<float>(clampd(hw + 0.5 - std::sqrt(d.x * d.x + d.y * d.y), 0, 1));
          float& o = out[y * w + x];
          o = std::max(o, v);
        }
      a = b;
    }
  }
}

}  // namespace

Dataset::Contents glyph_contents(uint64_t seed, const ImageSpec& image, const GlyphConfig& config) {
  check_image_spec(image, "builtin:glyphs");
  MF_USAGE_CHECK(config.classes > 0 && config.samples > 0 && config.train_classes > 0 &&
                     config.val_classes >= 0 && config.train_classes + config.val_classes < config.classes,
                 "builtin:glyphs: bad config: ", config.classes, " classes of ", config.samples, " samples, ",
                 config.train_classes, " train and ", config.val_classes, " val classes");
  Dataset::Contents c;
  c.source = "builtin:glyphs";
  c.layout = Layout::glyphs;
  c.image = image;
  c.preprocessing = "procedural stroke glyphs (seed " + std::to_string(seed) + "), drawn antialiased at " +
                    std::to_string(image.height) + "x" + std::to_string(image.width) +
                    ", quantised to 8 bits, served as f32 in [0, 1] (strokes 1.0)";
  c.cache.state = "in memory";
  const int64_t h = image.height, w = image.width, plane = h * w, px = image.pixels();
  c.pixels.assign(static_cast<size_t>(config.classes * config.samples * px), 0);
  for (int64_t k = 0; k < config.classes; ++k) {
    char name[32];
    std::snprintf(name, sizeof(name), "glyph%04lld", static_cast<long long>(k));
    c.classes.push_back({name, k * config.samples, config.samples});
  }
  const uint64_t tag = hash_string("glyphs");
#pragma omp parallel for schedule(dynamic, 8)
  for (int64_t k = 0; k < config.classes; ++k) {
    core::Rng crng = core::Rng::from(seed, {tag, static_cast<uint64_t>(k)});
    const std::vector<Stroke> glyph = make_glyph(crng);
    std::vector<float> buf(static_cast<size_t>(plane));
    for (int64_t i = 0; i < config.samples; ++i) {
      core::Rng srng = core::Rng::from(seed, {tag, static_cast<uint64_t>(k), static_cast<uint64_t>(i) + 1});
      std::fill(buf.begin(), buf.end(), 0.0f);
      draw_sample(glyph, srng, h, w, buf.data());
      uint8_t* dst = c.pixels.data() + (k * config.samples + i) * px;
      for (int64_t ch = 0; ch < image.channels; ++ch)
        for (int64_t j = 0; j < plane; ++j)
          dst[ch * plane + j] = static_cast<uint8_t>(std::lround(buf[static_cast<size_t>(j)] * 255.0f));
    }
  }
  std::vector<int32_t> ids[3];
  for (int64_t k = 0; k < config.classes; ++k)
    ids[k < config.train_classes                        ? 0
        : k < config.train_classes + config.val_classes ? 1
                                                        : 2]
        .push_back(static_cast<int32_t>(k));
  const char* names[3] = {"train", "val", "test"};
  for (int p = 0; p < 3; ++p) {
    if (ids[p].empty()) continue;
    Split s;
    s.name = names[p];
    for (int32_t id : ids[p]) s.classes.push_back({id, 0});
    c.splits.push_back(std::move(s));
  }
  return c;
}

std::shared_ptr<const Dataset> make_glyph_dataset(uint64_t seed, const ImageSpec& image,
                                                  const GlyphConfig& config) {
  return std::make_shared<const Dataset>(glyph_contents(seed, image, config));
}

}  // namespace metafew::data
