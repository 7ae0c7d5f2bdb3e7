#include "io/run_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>
#include <memory>
#include <system_error>
#include <utility>

#include "core/error.h"

// Note [Atomic replace]
// A file is written to PATH.tmp.<pid> in the same folder, then renamed over PATH. rename() within one file
// system replaces the target atomically: a reader (or a crash) sees the old complete file or the new
// complete one, never a mixture. Before the rename the data is pushed out of the C library (fflush) and
// onto the disk (fsync); without the fsync a file system with delayed allocation may commit the rename
// before the data, and a power loss leaves an empty or zero-filled PATH where a good file used to be.
// After the rename the folder is fsynced so that the rename itself survives a crash. That last step is
// best effort: some file systems refuse fsync on a folder, and by then the new file is complete anyway.
// The temporary lives in the target's folder (not in /tmp) because rename cannot cross file systems; the
// pid in its name keeps two processes writing the same target from clobbering each other's temporary.

namespace metafew::io {
namespace fs = std::filesystem;

namespace {

std::string os_error(int err) {
  return std::generic_category().message(err);
}

// For a path that could not be created or opened: names the ancestor that is in the way, if any.
std::string blocking_ancestor_hint(const fs::path& path) {
  std::error_code ec;
  for (fs::path p = path.parent_path(); !p.empty(); p = p.parent_path()) {
    const fs::file_status st = fs::status(p, ec);
    if (fs::exists(st)) {
      if (!fs::is_directory(st)) return " (" + p.string() + " is a file, not a folder)";
      return "";
    }
    if (p == p.parent_path()) break;
  }
  return "";
}

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

}  // namespace

bool require_existing_path(const std::string& path, const std::string& ctx) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (!fs::exists(st)) {
    if (ec && ec != std::errc::no_such_file_or_directory) throw Error(ctx + "cannot access it: " + ec.message());
    throw Error(ctx + "no such file");
  }
  return fs::is_directory(st);
}

AtomicFile::AtomicFile(std::string path, std::string context)
    : path_(std::move(path)), context_(std::move(context)) {
  MF_CHECK(!path_.empty(), context_, ": the output path is empty");
  temp_path_ = path_ + ".tmp." + std::to_string(static_cast<long long>(::getpid()));
  file_ = std::fopen(temp_path_.c_str(), "wb");
  if (!file_) {
    const int err = errno;
    const fs::path parent = fs::path(path_).parent_path();
    std::error_code ec;
    if (!parent.empty() && !fs::exists(parent, ec))
      throw Error(metafew::detail::concat(context_, ": cannot write ", path_, ": the folder ",
                                          parent.string(), " does not exist",
                                          blocking_ancestor_hint(parent)));
    throw Error(metafew::detail::concat(context_, ": cannot create the temporary file ", temp_path_, ": ",
                                        os_error(err), blocking_ancestor_hint(fs::path(path_))));
  }
}

AtomicFile::~AtomicFile() {
  if (!committed_) discard();
}

void AtomicFile::discard() noexcept {
  if (file_) {
    std::fclose(file_);
    file_ = nullptr;
  }
  std::remove(temp_path_.c_str());
}

void AtomicFile::write(const void* data, size_t bytes) {
  MF_CHECK(file_ != nullptr, context_, ": write to ", temp_path_, " after it was committed or closed");
  if (bytes == 0) return;
  if (std::fwrite(data, 1, bytes, file_) != bytes) {
    const int err = errno;
    throw Error(metafew::detail::concat(context_, ": cannot write ", bytes, " bytes to ", temp_path_, ": ",
                                        os_error(err)));
  }
}

void AtomicFile::commit() {
  MF_CHECK(file_ != nullptr && !committed_, context_, ": ", path_, " was already committed or closed");
  if (std::fflush(file_) != 0) {
    const int err = errno;
    throw Error(metafew::detail::concat(context_, ": cannot write ", temp_path_, ": ", os_error(err)));
  }
  if (::fsync(::fileno(file_)) != 0) {
    const int err = errno;
    throw Error(
        metafew::detail::concat(context_, ": cannot flush ", temp_path_, " to disk: ", os_error(err)));
  }
  std::FILE* f = file_;
  file_ = nullptr;
  if (std::fclose(f) != 0) {
    const int err = errno;
    throw Error(metafew::detail::concat(context_, ": cannot close ", temp_path_, ": ", os_error(err)));
  }
  if (std::rename(temp_path_.c_str(), path_.c_str()) != 0) {
    const int err = errno;
    throw Error(metafew::detail::concat(context_, ": cannot rename ", temp_path_, " to ", path_, ": ",
                                        os_error(err)));
  }
  committed_ = true;

  // Best effort (Note [Atomic replace]).
  fs::path folder = fs::path(path_).parent_path();
  if (folder.empty()) folder = ".";
  const int fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

void write_file_atomic(const std::string& path, std::string_view bytes, const std::string& context) {
  AtomicFile out(path, context);
  out.write(bytes.data(), bytes.size());
  out.commit();
}

RunDir::RunDir(std::string path, bool create) : path_(std::move(path)) {
  MF_CHECK(!path_.empty(), "run directory: the path is empty");
  std::error_code ec;
  fs::file_status st = fs::status(path_, ec);
  if (create && !fs::exists(st)) {
    fs::create_directories(path_, ec);
    if (ec)
      throw Error(metafew::detail::concat("run directory ", path_, ": cannot create it: ", ec.message(),
                                          blocking_ancestor_hint(fs::path(path_))));
    st = fs::status(path_, ec);
  }
  MF_CHECK(fs::exists(st), "run directory ", path_, ": does not exist",
           blocking_ancestor_hint(fs::path(path_)));
  MF_CHECK(fs::is_directory(st), "run directory ", path_, ": exists but is not a folder");
}

std::string RunDir::file(const std::string& name) const {
  return (fs::path(path_) / name).string();
}

void RunDir::write_json(const std::string& name, const nlohmann::json& j) const {
  const std::string text = j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  write_file_atomic(file(name), text, "run directory " + path_);
}

void append_line(const std::string& path, const std::string& line) {
  const std::string text = line + "\n";
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int err = errno;
    throw Error(metafew::detail::concat("cannot open ", path, " for appending: ", os_error(err)));
  }
  // One write() of the whole line: with O_APPEND the kernel places it at the end in one piece, so lines of
  // two writers do not interleave (a regular file on a local file system takes it whole).
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      throw Error(metafew::detail::concat("cannot append to ", path, ": ", os_error(err)));
    }
    done += static_cast<size_t>(n);
  }
  if (::close(fd) != 0) {
    const int err = errno;
    throw Error(metafew::detail::concat("cannot append to ", path, ": ", os_error(err)));
  }
}

void RunDir::append_metrics(const nlohmann::json& line) const {
  try {
    append_line(file("metrics.jsonl"), line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  } catch (const Error& e) {
    throw Error(metafew::detail::concat("run directory ", path_, ": ", e.what()));
  }
}

// Note [One writer per run folder]: two processes writing one run folder mix their checkpoints and
// interleave their metrics (a second run with the same --out, or a resume while the first still runs). The
// first to open the folder takes an exclusive flock() on RUN/.lock and writes its host and pid there; the
// lock lives as long as the process holds the descriptor, so a crashed or killed run never leaves a stale
// lock behind (the file stays; the lock does not). flock works across processes on one machine; on NFS it
// is emulated with POSIX locks by Linux, which also covers clients of one server.
void RunDir::lock() {
  const std::string lock_path = file(".lock");
  const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int err = errno;
    throw Error(metafew::detail::concat("run directory ", path_, ": cannot open ", lock_path, ": ", os_error(err)));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    std::string holder;
    char buf[256] = {};
    const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    if (n > 0) holder.assign(buf, static_cast<size_t>(n));
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == '\0')) holder.pop_back();
    ::close(fd);
    if (err == EWOULDBLOCK)
      throw Error(metafew::detail::concat("run directory ", path_, " is in use by another metafew process (",
                                          holder.empty() ? "holder unknown" : holder,
                                          "); wait for it to finish, stop it, or choose another --out"));
    throw Error(metafew::detail::concat("run directory ", path_, ": cannot lock ", lock_path, ": ", os_error(err)));
  }
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  const std::string me = metafew::detail::concat("host ", host, ", pid ", ::getpid());
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, me.data(), me.size(), 0) != static_cast<ssize_t>(me.size())) {
    // The lock holds without the note; only the refusal message of another process loses the holder's name.
  }
  lock_ = std::shared_ptr<void>(reinterpret_cast<void*>(static_cast<intptr_t>(fd) + 1),
                                [](void* p) { ::close(static_cast<int>(reinterpret_cast<intptr_t>(p) - 1)); });
  // We alone write here now: temporaries of earlier writers are leftovers of a crash or a kill.
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(path_, ec)) {
    const std::string name = e.path().filename().string();
    for (const char* ours : {"config.json", "metrics.jsonl", "last", "best"}) {
      const std::string prefix = std::string(ours) + ".tmp.";
      if (name.size() > prefix.size() && name.compare(0, prefix.size(), prefix) == 0 &&
          name.find_first_not_of("0123456789", prefix.size()) == std::string::npos)
        fs::remove(e.path(), ec);
    }
  }
}

bool RunDir::holds_run() const {
  std::error_code ec;
  for (const char* name : {"config.json", "metrics.jsonl", "last", "best"})
    if (fs::exists(fs::path(path_) / name, ec)) return true;
  return false;
}

void RunDir::clear_run() const {
  MF_CHECK(lock_ != nullptr, "run directory ", path_, ": clear_run without the lock");
  for (const char* name : {"config.json", "metrics.jsonl", "last", "best", "evals.jsonl"}) {
    std::error_code ec;
    fs::remove(fs::path(path_) / name, ec);
    MF_CHECK(!ec, "run directory ", path_, ": cannot remove ", name, ": ", ec.message());
  }
}

int64_t RunDir::trim_metrics(int64_t iteration) const {
  const std::string target = file("metrics.jsonl");
  std::ifstream in(target, std::ios::binary);
  if (!in) return 0;
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  std::string kept;
  int64_t dropped = 0;
  size_t begin = 0;
  while (begin < text.size()) {
    const size_t end = text.find('\n', begin);
    if (end == std::string::npos) {  // an incomplete last line (the disk filled, or the writer was killed)
      ++dropped;
      break;
    }
    const std::string line = text.substr(begin, end - begin);
    begin = end + 1;
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    const bool later = !j.is_discarded() && j.is_object() && j.contains("iteration") &&
                       j["iteration"].is_number_integer() && j["iteration"].get<int64_t>() > iteration;
    if (j.is_discarded() || later) {
      ++dropped;
      continue;
    }
    kept += line + "\n";
  }
  if (dropped > 0) write_file_atomic(target, kept, "run directory " + path_);
  return dropped;
}

}  // namespace metafew::io
