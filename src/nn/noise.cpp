#include "nn/noise.h"

#include <algorithm>

#include "core/error.h"
#include "core/rng.h"

// Note [Training noise]
// ResNet-12 as RFS trains it (--drop-rate, --dropblock-size) multiplies the output of each residual block by
// a random mask during training: dropout after the first two blocks, DropBlock after the others. A model is
// a pure function of (parameters, input), so the randomness comes in through a thread-local key: the trainer
// opens a NoiseScope with the task's seed around each training task's meta-gradient (meta/trainer.cpp), and
// each backbone forward pass inside it takes the next key (derive_key(task seed, {call})), so an inner loop's
// passes draw different masks and the same task draws the same masks in any run, at any thread count and
// after a resume. The masks are constants of the graph (a product with the activations), so the first- and
// second-order gradients flow through the kept elements. Validation, eval, adapt and predict open no scope
// and see no noise. RFS also ramps the rate up from 0 over its first 40,000 batches; here it is constant.

namespace metafew::nn {

namespace {

struct NoiseState {
  bool active = false;
  uint64_t key = 0, calls = 0;
};
thread_local NoiseState t_noise;

void check_shape(const tensor::Shape& shape, double rate, const char* who) {
  MF_CHECK(shape.size() == 4, who, ": expected an (N, C, H, W) shape, got ", tensor::to_string(shape));
  MF_CHECK(rate >= 0 && rate < 1, who, ": the rate must be in [0, 1), got ", rate);
}

}  // namespace

NoiseScope::NoiseScope(uint64_t key)
    : saved_active_(t_noise.active), saved_key_(t_noise.key), saved_calls_(t_noise.calls) {
  t_noise = {true, key, 0};
}

NoiseScope::~NoiseScope() { t_noise = {saved_active_, saved_key_, saved_calls_}; }

std::optional<uint64_t> next_noise_key() {
  if (!t_noise.active) return std::nullopt;
  return core::derive_key(t_noise.key, {t_noise.calls++});
}

tensor::Tensor dropout_mask(const tensor::Shape& shape, double rate, uint64_t key) {
  check_shape(shape, rate, "dropout_mask");
  tensor::Tensor m = tensor::Tensor::empty(shape);
  float* p = m.data<float>();
  const int64_t planes = shape[0] * shape[1], plane = shape[2] * shape[3];
  const auto scale = static_cast<float>(1.0 / (1.0 - rate));
  for (int64_t q = 0; q < planes; ++q) {
    core::Rng rng = core::Rng::from(key, {static_cast<uint64_t>(q)});
    for (int64_t k = 0; k < plane; ++k) p[q * plane + k] = rng.uniform() < rate ? 0.0f : scale;
  }
  return m;
}

tensor::Tensor dropblock_mask(const tensor::Shape& shape, double rate, int64_t block, uint64_t key) {
  check_shape(shape, rate, "dropblock_mask");
  MF_CHECK(block >= 1, "dropblock_mask: the block size must be positive, got ", block);
  const int64_t h = shape[2], w = shape[3], b = std::min({block, h, w});
  const int64_t gh = h - b + 1, gw = w - b + 1;
  const double gamma = rate / static_cast<double>(b * b) * static_cast<double>(h * w) / static_cast<double>(gh * gw);
  tensor::Tensor m = tensor::Tensor::empty(shape);
  float* p = m.data<float>();
  std::fill(p, p + m.numel(), 1.0f);
  const int64_t planes = shape[0] * shape[1], plane = h * w;
  int64_t kept = m.numel();
  for (int64_t q = 0; q < planes; ++q) {
    core::Rng rng = core::Rng::from(key, {static_cast<uint64_t>(q)});
    float* mp = p + q * plane;
    for (int64_t i = 0; i < gh; ++i)
      for (int64_t j = 0; j < gw; ++j) {
        if (rng.uniform() >= gamma) continue;
        for (int64_t y = i; y < i + b; ++y)
          for (int64_t x = j; x < j + b; ++x) {
            kept -= mp[y * w + x] != 0.0f;
            mp[y * w + x] = 0.0f;
          }
      }
  }
  const float scale = kept > 0 ? static_cast<float>(static_cast<double>(m.numel()) / static_cast<double>(kept)) : 0.0f;
  for (int64_t k = 0; k < m.numel(); ++k) p[k] *= scale;
  return m;
}

}  // namespace metafew::nn
