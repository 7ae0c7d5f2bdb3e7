// The 16-blocked reorders (tensor/blocked_layout.h) against the layouts' index formulas, and against
// oneDNN's own reorder for the same format tags (so "nChw16c" means what oneDNN means by it).
#include <doctest/doctest.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <oneapi/dnnl/dnnl.hpp>
#include <random>
#include <vector>

#include "core/error.h"
#include "tensor/blocked_layout.h"

namespace {

using metafew::tensor::WeightsBlocking;

std::vector<float> random_floats(int64_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(count);
  for (float& f : v) f = u(rng);
  return v;
}

// Offset of element (n, c, p) in nChw16c.
int64_t nchw16c_offset(int64_t n, int64_t c, int64_t p, int64_t channels, int64_t hw) {
  return ((n * (channels / 16) + c / 16) * hw + p) * 16 + c % 16;
}

// plain (nchw) laid out as nChw16c by the index formula.
std::vector<float> nchw16c_reference(const std::vector<float>& plain, int64_t n, int64_t c, int64_t hw) {
  std::vector<float> blocked(plain.size());
  for (int64_t i = 0; i < n; ++i)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t p = 0; p < hw; ++p) blocked[nchw16c_offset(i, ch, p, c, hw)] = plain[(i * c + ch) * hw + p];
  return blocked;
}

// Offset of element (o, i, tap) in OIhw16i16o / OIhw16o16i.
int64_t weights_offset(int64_t o, int64_t i, int64_t tap, int64_t in, int64_t k, WeightsBlocking b) {
  const int64_t block = ((o / 16) * (in / 16) + i / 16) * k + tap;
  return b == WeightsBlocking::i16o16 ? (block * 16 + i % 16) * 16 + o % 16 : (block * 16 + o % 16) * 16 + i % 16;
}

}  // namespace

// Checks src -> blocked -> back at 1 and 2 threads: the blocked result equals `expected`, the round trip src.
template <class To, class From>
void check_both_ways(const std::vector<float>& src, const std::vector<float>& expected, To to, From from) {
  for (int threads : {1, 2}) {
    CAPTURE(threads);
    omp_set_num_threads(threads);
    std::vector<float> blocked(src.size(), -7.0f), back(src.size(), -7.0f);
    to(src.data(), blocked.data());
    CHECK(blocked == expected);
    from(blocked.data(), back.data());
    CHECK(back == src);
  }
  omp_set_num_threads(omp_get_num_procs());
}

TEST_CASE("blocked reorders: activations match the nChw16c index formula both ways, at 1 and 2 threads") {
  struct Case {
    int64_t n, c, hw;
  };
  // hw: below one tile, one tile, tiles plus a tail (7x7, 14x14, 28x28), the 3x3 of conv-4's last layer.
  const Case cases[] = {{1, 16, 1}, {2, 16, 9}, {1, 32, 16}, {3, 64, 49}, {2, 64, 196}, {1, 48, 784}, {40, 64, 49}};
  for (const Case& cs : cases) {
    CAPTURE(cs.n);
    CAPTURE(cs.c);
    CAPTURE(cs.hw);
    const int64_t count = cs.n * cs.c * cs.hw;
    const std::vector<float> plain = random_floats(count, 7);
    const std::vector<float> expected = nchw16c_reference(plain, cs.n, cs.c, cs.hw);
    check_both_ways(
        plain, expected, [&](const float* a, float* b) { metafew::tensor::nchw_to_nchw16c(a, b, cs.n, cs.c, cs.hw); },
        [&](const float* a, float* b) { metafew::tensor::nchw16c_to_nchw(a, b, cs.n, cs.c, cs.hw); });
  }
}

TEST_CASE("blocked reorders: large activations (streamed stores) match the index formula, aligned or not") {
  // 16 MB and more is written with streaming stores when the destination is 64-byte aligned (Note [Blocked
  // reorders]); a misaligned destination takes the cached path. Both must give the same bits.
  const int64_t n = 1400, c = 64, hw = 49, count = n * c * hw;
  REQUIRE(count * static_cast<int64_t>(sizeof(float)) >= (int64_t{16} << 20));
  const std::vector<float> plain = random_floats(count, 13);
  const std::vector<float> expected = nchw16c_reference(plain, n, c, hw);
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  // One extra vector so that dst + 1 (misaligned) still fits.
  std::unique_ptr<float, Free> blocked(static_cast<float*>(std::aligned_alloc(64, (count + 16) * sizeof(float))));
  std::unique_ptr<float, Free> back(static_cast<float*>(std::aligned_alloc(64, (count + 16) * sizeof(float))));
  REQUIRE((blocked && back));
  for (int64_t shift : {0, 1}) {
    CAPTURE(shift);
    float* b = blocked.get() + shift;
    float* p = back.get() + shift;
    metafew::tensor::nchw_to_nchw16c(plain.data(), b, n, c, hw);
    CHECK(std::equal(expected.begin(), expected.end(), b));
    metafew::tensor::nchw16c_to_nchw(b, p, n, c, hw);
    CHECK(std::equal(plain.begin(), plain.end(), p));
  }
}

TEST_CASE("blocked reorders: weights match the OIhw16i16o / OIhw16o16i index formulas both ways") {
  struct Case {
    int64_t o, i, k;
  };
  const Case cases[] = {{16, 16, 1}, {16, 16, 9}, {32, 16, 9}, {16, 48, 4}, {64, 64, 9}, {64, 64, 25}, {128, 128, 9}};
  for (const Case& cs : cases) {
    for (WeightsBlocking b : {WeightsBlocking::i16o16, WeightsBlocking::o16i16}) {
      CAPTURE(cs.o);
      CAPTURE(cs.i);
      CAPTURE(cs.k);
      CAPTURE(static_cast<int>(b));
      const int64_t count = cs.o * cs.i * cs.k;
      const std::vector<float> plain = random_floats(count, 11);
      std::vector<float> expected(count);
      for (int64_t o = 0; o < cs.o; ++o) {
        for (int64_t i = 0; i < cs.i; ++i) {
          for (int64_t t = 0; t < cs.k; ++t) {
            expected[weights_offset(o, i, t, cs.i, cs.k, b)] = plain[(o * cs.i + i) * cs.k + t];
          }
        }
      }
      check_both_ways(
          plain, expected, [&](const float* a, float* d) { metafew::tensor::oihw_to_blocked(a, d, cs.o, cs.i, cs.k, b); },
          [&](const float* a, float* d) { metafew::tensor::blocked_to_oihw(a, d, cs.o, cs.i, cs.k, b); });
    }
  }
}

TEST_CASE("blocked reorders: the layouts are oneDNN's nChw16c, OIhw16i16o and OIhw16o16i") {
  namespace dn = ::dnnl;
  using tag = dn::memory::format_tag;
  using dt = dn::memory::data_type;
  const dn::engine engine(dn::engine::kind::cpu, 0);
  dn::stream stream(engine);
  auto onednn = [&](const dn::memory::dims& dims, tag from, tag to, std::vector<float>& src) {
    std::vector<float> dst(src.size(), -7.0f);
    dn::memory a({dims, dt::f32, from}, engine, src.data()), b({dims, dt::f32, to}, engine, dst.data());
    dn::reorder(a, b).execute(stream, a, b);
    stream.wait();
    return dst;
  };
  std::vector<float> x = random_floats(3 * 64 * 49, 3);
  std::vector<float> ours(x.size());
  metafew::tensor::nchw_to_nchw16c(x.data(), ours.data(), 3, 64, 49);
  CHECK(ours == onednn({3, 64, 7, 7}, tag::nchw, tag::nChw16c, x));

  std::vector<float> w = random_floats(64 * 32 * 9, 5);
  std::vector<float> wb(w.size());
  metafew::tensor::oihw_to_blocked(w.data(), wb.data(), 64, 32, 9, WeightsBlocking::i16o16);
  CHECK(wb == onednn({64, 32, 3, 3}, tag::oihw, tag::OIhw16i16o, w));
  metafew::tensor::oihw_to_blocked(w.data(), wb.data(), 64, 32, 9, WeightsBlocking::o16i16);
  CHECK(wb == onednn({64, 32, 3, 3}, tag::oihw, tag::OIhw16o16i, w));
}

TEST_CASE("blocked reorders: refused shapes name the problem") {
  std::vector<float> a(24 * 9), b(24 * 9);
  CHECK_THROWS_WITH_AS(metafew::tensor::nchw_to_nchw16c(a.data(), b.data(), 1, 24, 9),
                       doctest::Contains("divisible by 16"), metafew::Error);
  CHECK_THROWS_WITH_AS(metafew::tensor::blocked_to_oihw(a.data(), b.data(), 24, 1, 9, WeightsBlocking::i16o16),
                       doctest::Contains("divisible by 16"), metafew::Error);
}
