#include "cli/progress.h"

#include <unistd.h>

#include <cstdio>

namespace metafew::cli {

Progress::Progress(std::string what, int64_t total, int64_t start)
    : what_(std::move(what)), total_(total), start_(start), done_(start), tty_(isatty(STDERR_FILENO) != 0),
      t0_(std::chrono::steady_clock::now()), last_draw_(t0_) {}

void Progress::update(int64_t done, const std::string& status) {
  done_ = done;
  if (!tty_) return;
  const auto now = std::chrono::steady_clock::now();
  if (drawn_ && now - last_draw_ < std::chrono::milliseconds(200) && done < total_) return;
  last_draw_ = now;
  const double secs = std::chrono::duration<double>(now - t0_).count();
  const double rate = secs > 0 ? static_cast<double>(done - start_) / secs : 0.0;
  const double eta = rate > 0 ? static_cast<double>(total_ - done) / rate : 0.0;
  std::fprintf(stderr, "\r\033[K%s %lld/%lld (%.0f%%)  %.2f it/s  ETA %02d:%02d:%02d  %s", what_.c_str(),
               static_cast<long long>(done), static_cast<long long>(total_),
               total_ > 0 ? 100.0 * static_cast<double>(done) / static_cast<double>(total_) : 100.0, rate,
               static_cast<int>(eta / 3600), static_cast<int>(eta / 60) % 60, static_cast<int>(eta) % 60,
               (summary_.empty() ? status : status + "  " + summary_).c_str());
  std::fflush(stderr);
  drawn_ = true;
}

void Progress::log(const std::string& line) {
  if (tty_ && drawn_) std::fprintf(stderr, "\r\033[K");
  std::fprintf(stderr, "%s\n", line.c_str());
  drawn_ = false;
}

void Progress::metrics(const std::string& json_line, const std::string& summary) {
  if (!tty_) {
    log(json_line);
    return;
  }
  if (!summary.empty()) summary_ = summary;
}

void Progress::finish() {
  if (tty_ && drawn_) std::fprintf(stderr, "\n");
  drawn_ = false;
}

}  // namespace metafew::cli
