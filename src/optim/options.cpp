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
  };
}

std::unique_ptr<Optimizer> make_optimizer(const nlohmann::json& cfg) {
  Schedule s;
  s.kind = cfg["schedule"];
  s.step_size = cfg["schedule_step"];
  s.gamma = cfg["schedule_gamma"];
  s.total = cfg["iterations"];
  if (cfg["optimizer"] == "sgd") return std::make_unique<Sgd>(cfg["outer_lr"].get<double>(), s);
  return std::make_unique<Adam>(cfg["outer_lr"].get<double>(), s);
}

}  // namespace metafew::optim
