#include "optim/options.h"

namespace metafew::optim {

std::vector<core::Setting> optimizer_settings() {
  const OuterOptions d;
  return {
      core::text_setting("optimizer", d.optimizer, "outer optimizer: adam or sgd",
                         [](const std::string& v) { core::require_one_of("--optimizer", v, {"adam", "sgd"}); }),
      core::number_setting("outer_lr", d.lr, "outer learning rate (Reptile: meta step size)"),
      core::text_setting("schedule", d.schedule.kind, "outer learning-rate schedule: constant, step, cosine or linear",
                         [](const std::string& v) { Schedule{v, 1, 0.5, 1}.at(1.0, 0); }),  // throws naming the kinds
      core::integer_setting("schedule_step", d.schedule.step_size, 1, core::kMaxCount,
                            "step schedule: iterations between decays"),
      core::number_setting("schedule_gamma", d.schedule.gamma, "step schedule: decay factor"),
      core::Setting{"momentum", d.momentum,
                    "sgd optimizer: momentum as PyTorch's (v = momentum v + g, w -= lr v; RFS: 0.9)", 0, 0.999999, {}},
      core::number_setting("weight_decay", d.weight_decay,
                           "L2 weight decay added to every gradient, as PyTorch's weight_decay (RFS: 5e-4)"),
  };
}

std::unique_ptr<Optimizer> make_optimizer(const nlohmann::json& cfg) {
  Schedule s;
  s.kind = cfg["schedule"];
  s.step_size = cfg["schedule_step"];
  s.gamma = cfg["schedule_gamma"];
  s.total = cfg["iterations"];
  const double wd = cfg["weight_decay"];
  if (cfg["optimizer"] == "sgd") return std::make_unique<Sgd>(cfg["outer_lr"].get<double>(), s, cfg["momentum"].get<double>(), wd);
  MF_USAGE_CHECK(cfg["momentum"].get<double>() == 0, "--momentum applies to --optimizer sgd (Adam has its own "
                 "moments), got ", cfg["momentum"].get<double>(), " with adam");
  return std::make_unique<Adam>(cfg["outer_lr"].get<double>(), s, 0.9, 0.999, 1e-8, wd);
}

}  // namespace metafew::optim
