// Episode sampling: layout of an episode, determinism across repeats and thread counts; built-in datasets.
#include <doctest/doctest.h>
#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <set>

#include "data/data_support.h"
#include "data/episode.h"
#include "data/glyphs.h"
#include "data/sinusoid.h"

namespace metafew::testing {
namespace {

std::shared_ptr<const data::Dataset> glyphs() {
  static const auto ds = data::make_glyph_dataset(1);
  return ds;
}

// Hashes of episodes [0, n): serially, then in an OpenMP loop with 1 and with 2 threads; all must agree.
void check_deterministic(const data::EpisodeSampler& s, int64_t n) {
  std::vector<uint64_t> serial(static_cast<size_t>(n)), again(serial.size());
  for (int64_t i = 0; i < n; ++i)
    serial[static_cast<size_t>(i)] = episode_hash(s.episode(static_cast<uint64_t>(i)));
  for (int64_t i = 0; i < n; ++i)
    again[static_cast<size_t>(i)] = episode_hash(s.episode(static_cast<uint64_t>(i)));
  CHECK(serial == again);
  for (int threads : {1, 2}) {
    std::vector<uint64_t> par(serial.size());
#pragma omp parallel for num_threads(threads) schedule(dynamic, 7)
    for (int64_t i = 0; i < n; ++i)
      par[static_cast<size_t>(i)] = episode_hash(s.episode(static_cast<uint64_t>(i)));
    CHECK_MESSAGE(par == serial, threads, " thread(s)");
  }
  CHECK(std::set<uint64_t>(serial.begin(), serial.end()).size() == serial.size());  // episodes differ
}

TEST_CASE("data: episode layout is class-major with labels from 0 to ways - 1") {
  data::EpisodeSampler s(glyphs(), "train", {5, 2, 3}, 42);
  const data::Episode ep = s.episode(17);
  CHECK(ep.support_x.shape() == tensor::Shape{10, 1, 28, 28});
  CHECK(ep.query_x.shape() == tensor::Shape{15, 1, 28, 28});
  CHECK(ep.support_y.dtype() == tensor::DType::i32);
  const int32_t* sy = ep.support_y.data<int32_t>();
  const int32_t* qy = ep.query_y.data<int32_t>();
  for (int i = 0; i < 10; ++i) CHECK(sy[i] == i / 2);
  for (int i = 0; i < 15; ++i) CHECK(qy[i] == i / 3);
  CHECK(std::set<std::string>(ep.class_names.begin(), ep.class_names.end()).size() == 5);
  // No image is both support and query: within a way all 5 images differ.
  const float* sx = ep.support_x.data<float>();
  const float* qx = ep.query_x.data<float>();
  for (int w = 0; w < 5; ++w)
    for (int q = 0; q < 3; ++q)
      for (int k = 0; k < 2; ++k)
        CHECK(std::memcmp(qx + (w * 3 + q) * 784, sx + (w * 2 + k) * 784, 784 * sizeof(float)) != 0);
  float mn = 1, mx = 0;
  for (int64_t i = 0; i < ep.support_x.numel(); ++i) mn = std::min(mn, sx[i]), mx = std::max(mx, sx[i]);
  CHECK(mn == 0.0f);
  CHECK(mx == 1.0f);
  // Another seed or split gives other episodes; the same seed the same one.
  CHECK(episode_hash(data::EpisodeSampler(glyphs(), "train", {5, 2, 3}, 43).episode(17)) != episode_hash(ep));
  CHECK(episode_hash(data::EpisodeSampler(glyphs(), "train", {5, 2, 3}, 42).episode(17)) == episode_hash(ep));
}

TEST_CASE("data: 1000 glyph episodes are the same twice and with 1 and 2 threads") {
  check_deterministic(data::EpisodeSampler(glyphs(), "train", {5, 1, 15}, 2024), 1000);
  check_deterministic(data::EpisodeSampler(glyphs(), "test", {20, 5, 5}, 7), 100);
}

TEST_CASE("data: glyphs has 1200 classes in 960/120/120, deterministic and fast") {
  const auto t0 = std::chrono::steady_clock::now();
  auto ds = data::make_glyph_dataset(1);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  MESSAGE("builtin:glyphs generated in ", secs, " s with ", omp_get_max_threads(), " threads");
  CHECK(secs < 5.0);  // the target is well under a second; this bound only catches a pathological slowdown
  CHECK(ds->base_class_count() == 1200);
  CHECK(ds->base_image_count() == 24000);
  CHECK(ds->class_count("train") == 960);
  CHECK(ds->class_count("val") == 120);
  CHECK(ds->class_count("test") == 120);
  CHECK(ds->image_count("test") == 2400);
  // Same seed, same bytes (at this thread count and serially); another seed, other glyphs.
  const size_t bytes = static_cast<size_t>(ds->base_image_count() * 784);
  CHECK(std::memcmp(ds->image_u8(0), glyphs()->image_u8(0), bytes) == 0);
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  auto serial = data::make_glyph_dataset(1);
  omp_set_num_threads(threads);
  CHECK(std::memcmp(ds->image_u8(0), serial->image_u8(0), bytes) == 0);
  auto other = data::make_glyph_dataset(2);
  CHECK(std::memcmp(ds->image_u8(0), other->image_u8(0), 784) != 0);
}

TEST_CASE("data: glyphs are learnable but not trivial for pixel-space 1-NN (5-way 1-shot)") {
  // Nearest support image in squared Euclidean pixel distance, 200 test-split episodes of 5 x 15 queries.
  data::EpisodeSampler s(glyphs(), "test", {5, 1, 15}, 11);
  int64_t correct = 0, total = 0;
  for (uint64_t e = 0; e < 200; ++e) {
    const data::Episode ep = s.episode(e);
    const float* sx = ep.support_x.data<float>();
    const float* qx = ep.query_x.data<float>();
    for (int64_t q = 0; q < 75; ++q) {
      int64_t best = -1;
      double best_d = 0;
      for (int64_t k = 0; k < 5; ++k) {
        double d = 0;
        for (int64_t j = 0; j < 784; ++j) {
          const double diff = qx[q * 784 + j] - sx[k * 784 + j];
          d += diff * diff;
        }
        if (best < 0 || d < best_d) best = k, best_d = d;
      }
      correct += ep.support_y.data<int32_t>()[best] == ep.query_y.data<int32_t>()[q];
      ++total;
    }
  }
  const double acc = static_cast<double>(correct) / static_cast<double>(total);
  MESSAGE("pixel-space 1-NN, glyphs test split, 5-way 1-shot, 200 episodes: accuracy ", acc);
  CHECK(acc > 0.35);  // above chance (0.2) by a margin: there is signal to learn
  CHECK(acc < 0.97);  // not solved by raw pixels
}

TEST_CASE("data: sinusoid tasks follow the MAML family and are deterministic") {
  double amin = 10, amax = 0, pmin = 10, pmax = -1, xmin = 10, xmax = -10;
  for (uint64_t i = 0; i < 500; ++i) {
    const data::RegressionTask t = data::sinusoid_task(3, "train", i, 10, 7);
    CHECK(t.support_x.shape() == tensor::Shape{10, 1});
    CHECK(t.query_y.shape() == tensor::Shape{7, 1});
    amin = std::min(amin, t.amplitude), amax = std::max(amax, t.amplitude);
    pmin = std::min(pmin, t.phase), pmax = std::max(pmax, t.phase);
    for (int k = 0; k < 10; ++k) {
      const double x = t.support_x.data<float>()[k], y = t.support_y.data<float>()[k];
      xmin = std::min(xmin, x), xmax = std::max(xmax, x);
      CHECK(y == doctest::Approx(t.amplitude * std::sin(x - t.phase)).epsilon(1e-4));
    }
  }
  CHECK(amin >= 0.1);
  CHECK(amax <= 5.0);
  CHECK(amax - amin > 4.5);
  CHECK(pmin >= 0.0);
  CHECK(pmax <= M_PI);
  CHECK(xmin >= -5.0);
  CHECK(xmax <= 5.0);
  const auto a = data::sinusoid_task(3, "train", 9, 5, 5), b = data::sinusoid_task(3, "train", 9, 5, 5);
  CHECK(a.support_x.to_vector() == b.support_x.to_vector());
  CHECK(a.query_y.to_vector() == b.query_y.to_vector());
  CHECK(data::sinusoid_task(3, "test", 9, 5, 5).amplitude != a.amplitude);
  CHECK_THROWS_AS(data::sinusoid_task(3, "train", 0, 0, 5), Error);
}

}  // namespace
}  // namespace metafew::testing
