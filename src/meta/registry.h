#pragma once
// Note [Algorithm registry]: every algorithm is one entry here: its name, what it needs of the model, the
// settings it changes from the generic defaults, its FLOP count for bench, and its factory. Nothing outside
// the registry compares an algorithm's name; code asks the entry instead. Adding an algorithm is its class
// (a file of meta/) and one entry in algorithms() (registry.cpp).
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "meta/algorithm.h"

namespace metafew::meta {

// The sizes a FLOP count needs: f, forward FLOP of one input; support and query inputs per task; inner
// steps; Reptile's inner mini-batch.
struct FlopShape {
  double forward = 0, support = 0, query = 0, steps = 0, inner_batch = 0;
};

struct AlgorithmEntry {
  const char* name;
  // Measured by `metafew bench` without --algo (the standard matrix of bench/README.md).
  bool standard_bench;
  // Needs the model's linear head (gradient-based methods); the metric methods classify against the support
  // set with a headless model.
  bool uses_head;
  // Its standard benchmark row is its own recipe (shots, meta-batch, inner steps and rate from `defaults`)
  // rather than the common 5-way and 20-way rows (Reptile).
  bool own_bench_recipe;
  // Trains on mini-batches of images from every class of the training split (data/batch.h) instead of
  // episodes; validation and test still draw episodes (pretrain).
  bool batch_training;
  // The settings it changes from the generic defaults (Note [Algorithm and dataset defaults] in io/settings.cpp).
  nlohmann::json defaults;
  // The settings only this algorithm reads (eval's --matching-attention applies where it is listed).
  std::vector<std::string> own_settings;
  bool reads(const std::string& key) const {
    for (const std::string& k : own_settings)
      if (k == key) return true;
    return false;
  }
  // FLOP of one task's meta-gradient, counted as the PyTorch reference counts them (bench/README.md).
  std::function<double(const FlopShape&)> task_flop;
  std::function<std::unique_ptr<Algorithm>(const nn::Model&, const AlgoConfig&, core::Rng&)> make;
};

const std::vector<AlgorithmEntry>& algorithms();
// The entry of `name`; a usage error naming the registered algorithms otherwise.
const AlgorithmEntry& find_algorithm(const std::string& name);

}  // namespace metafew::meta
