#pragma once
// The run directory of a training run (config.json, metrics.jsonl, checkpoints), and the atomic file
// writing that every file metafew leaves behind goes through (ARCHITECTURE.md, decision 5: nothing lost).
#include <cstddef>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "core/error.h"

namespace metafew::io {

// Throws "<ctx>no such file" or "<ctx>cannot access it: <reason>" unless `path` exists; returns whether it is
// a folder. `ctx` starts the message (e.g. "config file x.json: ").
bool require_existing_path(const std::string& path, const std::string& ctx);

// A file that appears at `path` only once it is complete (Note [Atomic replace] in run_dir.cpp).
//
//   AtomicFile out(path, "checkpoint " + path);
//   out.write(bytes, n); ...
//   out.commit();
//
// requires: the folder of `path` exists; no other writer in this process targets the same `path` at once
//           (the temporary name is PATH.tmp.<pid>).
// ensures:  until commit() returns, `path` is untouched: a previous file there stays complete and readable.
//           If commit() is never reached (an exception, an early return), the destructor removes the
//           temporary file. Every error throws metafew::Error starting with "<context>: ".
class AtomicFile {
 public:
  // Creates (or truncates a stale) PATH.tmp.<pid>.
  AtomicFile(std::string path, std::string context);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t bytes);
  // fflush, fsync, close, rename over `path`, then fsync the folder (best effort). Call at most once.
  void commit();

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return temp_path_; }

 private:
  void discard() noexcept;

  std::string path_;
  std::string temp_path_;
  std::string context_;
  std::FILE* file_ = nullptr;
  bool committed_ = false;
};

// Writes `bytes` to `path` through an AtomicFile.
void write_file_atomic(const std::string& path, std::string_view bytes, const std::string& context);

// Appends `line` and a newline to `path` (created when missing) with one O_APPEND write, so concurrent
// appenders never interleave within a line. Throws metafew::Error naming the file.
void append_line(const std::string& path, const std::string& line);

// A folder that holds one run: config.json (the resolved config), metrics.jsonl (one JSON object per line),
// checkpoints (`last`, `best`) and whatever else the command writes through file().
class RunDir {
 public:
  // create = true:  makes the folder and its parents when missing (mkdir -p).
  // create = false: the folder must already exist (--resume, eval).
  // Throws metafew::Error "run directory <path>: ..." when it cannot be created, is missing, or is not a
  // folder.
  explicit RunDir(std::string path, bool create);

  const std::string& path() const { return path_; }
  // path/name (no check that it exists).
  std::string file(const std::string& name) const;
  // Writes `j` pretty-printed (2-space indent, trailing newline) to path/name, atomically.
  void write_json(const std::string& name, const nlohmann::json& j) const;
  // Takes the folder for this process alone (Note [One writer per run folder] in run_dir.cpp): an exclusive
  // lock on path/.lock, held until this RunDir and its copies are gone (the OS drops it when the process
  // dies, even by SIGKILL). Throws metafew::Error naming the holder's host and pid when another process holds
  // it. Then removes temporary files (*.tmp.<pid>) that a killed writer left behind.
  void lock();
  // Whether the folder already holds a run: config.json, metrics.jsonl, last or best.
  bool holds_run() const;
  // Removes a previous run's files (those of holds_run, and temporaries). Requires lock().
  void clear_run() const;
  // Drops metrics lines of iterations after `iteration` (logged after the checkpoint a resume starts from)
  // and any incomplete last line, rewriting metrics.jsonl atomically; returns how many lines were dropped.
  int64_t trim_metrics(int64_t iteration) const;
  // Appends `line` as one compact JSON line to path/metrics.jsonl and flushes it to the OS before returning,
  // so a crash loses no logged line. NaN and infinities become null (JSON has no spelling for them); invalid
  // UTF-8 in strings is replaced by U+FFFD.
  void append_metrics(const nlohmann::json& line) const;

 private:
  std::string path_;
  std::shared_ptr<void> lock_;  // the open, locked path/.lock (closing it releases the lock)
};

}  // namespace metafew::io
