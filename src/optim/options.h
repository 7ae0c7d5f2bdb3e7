#pragma once
// The outer optimizer's settings: declarations (defaults from the typed options) and the optimizer of a
// resolved configuration.
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/setting.h"
#include "optim/optimizer.h"

namespace metafew::optim {

struct OuterOptions {
  std::string optimizer = "adam";  // adam | sgd
  double lr = 0.001;
  Schedule schedule;
  double momentum = 0;      // sgd only
  double weight_decay = 0;  // both: an L2 term added to the gradient
};

// optimizer, outer_lr, schedule, schedule_step, schedule_gamma, momentum, weight_decay.
std::vector<core::Setting> optimizer_settings();
// The outer optimizer of a resolved configuration (its schedule runs over cfg["iterations"] steps).
std::unique_ptr<Optimizer> make_optimizer(const nlohmann::json& cfg);

}  // namespace metafew::optim
