#pragma once
// Progress reporting on stderr: a live line with rate and ETA on a terminal, plain log lines otherwise.
#include <chrono>
#include <cstdint>
#include <string>

namespace metafew::cli {

class Progress {
 public:
  Progress(std::string what, int64_t total, int64_t start = 0);
  // Called after each unit of work; redraws the live line at most a few times a second (terminal only).
  void update(int64_t done, const std::string& status);
  // A log line: printed above the live line on a terminal, as is otherwise.
  void log(const std::string& line);
  // A metrics line (also written to the run's metrics.jsonl): printed as is without a terminal; on a
  // terminal only `summary` is kept, shown at the end of the live line (raw JSON lines between redraws made
  // the terminal unreadable).
  void metrics(const std::string& json_line, const std::string& summary);
  void finish();

 private:
  std::string what_;
  int64_t total_, start_, done_ = 0;
  bool tty_;
  bool drawn_ = false;
  std::string summary_;
  std::chrono::steady_clock::time_point t0_, last_draw_;
};

}  // namespace metafew::cli
