#include "core/peak.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>

namespace metafew::core {

namespace {

// 12 independent accumulator chains hide the FMA latency (4 cycles) on two FMA pipes.
constexpr int kChains = 12;

#if defined(__AVX512F__)
using Vec = __m512;
constexpr int kLanes = 16;
inline Vec vset(float v) { return _mm512_set1_ps(v); }
inline Vec vfma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
inline float vsum(Vec v) {
  alignas(64) float t[16];
  _mm512_store_ps(t, v);
  float s = 0;
  for (float x : t) s += x;
  return s;
}
#elif defined(__AVX2__) && defined(__FMA__)
using Vec = __m256;
constexpr int kLanes = 8;
inline Vec vset(float v) { return _mm256_set1_ps(v); }
inline Vec vfma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
inline float vsum(Vec v) {
  alignas(32) float t[8];
  _mm256_store_ps(t, v);
  float s = 0;
  for (float x : t) s += x;
  return s;
}
#else
using Vec = float;
constexpr int kLanes = 1;
inline Vec vset(float v) { return v; }
inline Vec vfma(Vec a, Vec b, Vec c) { return a * b + c; }
inline float vsum(Vec v) { return v; }
#endif

// Runs `iters` rounds of kChains FMAs; returns a value that depends on all of them (so nothing is elided).
float fma_loop(long iters, float seed) {
  Vec acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = vset(seed + static_cast<float>(i));
  const Vec a = vset(0.999999f), b = vset(1e-7f);
  for (long it = 0; it < iters; ++it)
    for (int i = 0; i < kChains; ++i) acc[i] = vfma(acc[i], a, b);
  float s = 0;
  for (int i = 0; i < kChains; ++i) s += vsum(acc[i]);
  return s;
}

}  // namespace

const char* fma_isa() {
#if defined(__AVX512F__)
  return "avx512 (16 x f32)";
#elif defined(__AVX2__) && defined(__FMA__)
  return "avx2 (8 x f32)";
#else
  return "scalar";
#endif
}

double fma_peak_gflops(int threads, double seconds) {
  // Calibrate the iteration count on one thread, then run it on all threads at once.
  long iters = 1 << 16;
  for (;;) {
    auto t0 = std::chrono::steady_clock::now();
    volatile float sink = fma_loop(iters, 1.0f);
    (void)sink;
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (dt > seconds / 4 || iters > (1L << 34)) {
      iters = static_cast<long>(static_cast<double>(iters) * seconds / dt);
      break;
    }
    iters *= 4;
  }
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    float total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    total += fma_loop(iters, static_cast<float>(omp_get_thread_num()));
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    volatile float sink = total;
    (void)sink;
    const double flops = 2.0 * kChains * kLanes * static_cast<double>(iters) * threads;
    best = std::max(best, flops / dt / 1e9);
  }
  return best;
}

}  // namespace metafew::core
