#pragma once
// Training noise (Note [Training noise] in noise.cpp): the random masks of dropout and DropBlock come from a
// key the trainer sets for each training task (NoiseScope). Outside a scope (validation, eval, adapt, predict)
// there is no noise and the layers that would draw it are identities.
#include <cstdint>
#include <optional>

#include "tensor/tensor.h"

namespace metafew::nn {

// While alive, forward passes on this thread draw their noise from `key`. Scopes nest (the inner one wins).
class NoiseScope {
 public:
  explicit NoiseScope(uint64_t key);
  ~NoiseScope();
  NoiseScope(const NoiseScope&) = delete;
  NoiseScope& operator=(const NoiseScope&) = delete;

 private:
  bool saved_active_;
  uint64_t saved_key_, saved_calls_;
};

// The key of the next noisy forward pass on this thread, a new one at each call within a scope
// (derive_key(scope key, {call})); none outside a scope.
std::optional<uint64_t> next_noise_key();

// Multiplicative masks for an (N, C, H, W) tensor, each (N, C) plane drawn from Rng::from(key, {plane}):
// dropout keeps each element with probability 1 - rate and scales the kept ones by 1 / (1 - rate).
// requires: 0 <= rate < 1.
tensor::Tensor dropout_mask(const tensor::Shape& shape, double rate, uint64_t key);
// DropBlock (Ghiasi et al. 2018, as RFS's ResNet-12 draws it): with b = min(block, H, W), block corners are
// drawn on the (H - b + 1) x (W - b + 1) grid with probability rate / b^2 * H W / ((H - b + 1) (W - b + 1)),
// each dropping the b x b square below and right of it; the kept elements are scaled by (elements / kept),
// and everything is 0 when nothing is kept. requires: 0 <= rate < 1, block >= 1.
tensor::Tensor dropblock_mask(const tensor::Shape& shape, double rate, int64_t block, uint64_t key);

}  // namespace metafew::nn
