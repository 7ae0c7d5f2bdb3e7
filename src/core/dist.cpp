#include "core/dist.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "core/error.h"

#ifdef METAFEW_WITH_MPI
#include <mpi.h>
#endif

namespace metafew::dist {

namespace {

int g_rank = 0;
int g_size = 1;
Stats g_stats;
#ifdef METAFEW_WITH_MPI
bool g_mpi = false;      // MPI_Init was called
double g_timeout = 600;  // seconds a process waits for another before ending the job (METAFEW_COMM_TIMEOUT)
#endif

// The job size an MPI launcher announces to the processes it starts (0: not started by one).
int launcher_size() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"}) {
    const char* v = std::getenv(var);
    if (v != nullptr && *v != '\0') return std::max(1, std::atoi(v));
  }
  // PMIx launchers may announce only the rank; a rank variable alone still means "started by a launcher".
  for (const char* var : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"}) {
    const char* v = std::getenv(var);
    if (v != nullptr && *v != '\0') return 1;
  }
  return 0;
}

constexpr size_t kPiece = size_t{1} << 30;  // MPI counts are int: large buffers go in pieces

class Timed {
 public:
  explicit Timed(uint64_t bytes) : start_(std::chrono::steady_clock::now()) { g_stats.bytes += bytes; }
  ~Timed() {
    g_stats.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  std::chrono::steady_clock::time_point start_;
};

#ifdef METAFEW_WITH_MPI
void check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  throw Error(detail::concat("MPI ", what, " failed on process ", g_rank, ": ", std::string(text, static_cast<size_t>(len))));
}

// Note [Hung processes]: every call waits for its non-blocking operation by polling, for at most
// METAFEW_COMM_TIMEOUT seconds (600 by default). A process that died makes mpirun end the job; one that hangs
// (stopped, deadlocked, swapping) would otherwise hold the others forever in their next message, so the
// first to give up names the operation and the process it waited for, and ends the job (cli/main.cpp calls
// MPI_Abort on the error): the last checkpoint stays as it was. Polling spins for the first millisecond (a
// step's messages are short) and then sleeps 100 us between tests; Open MPI's blocking calls spin too.
void wait_for(MPI_Request* request, const char* what, int peer) {
  const auto start = std::chrono::steady_clock::now();
  for (int64_t polls = 0;; ++polls) {
    int done = 0;
    check(MPI_Test(request, &done, MPI_STATUS_IGNORE), what);
    if (done) return;
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (waited > g_timeout)
      throw Error(detail::concat(what, ": process ", g_rank, " waited ", g_timeout, " s for ",
                                 peer >= 0 ? detail::concat("process ", peer) : std::string("the other processes"),
                                 ", which may have hung or died; ending the job (the last checkpoint is intact; set "
                                 "METAFEW_COMM_TIMEOUT, in seconds, for longer waits)"));
    if (waited > 1e-3) std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}
#endif

}  // namespace

bool built_with_mpi() {
#ifdef METAFEW_WITH_MPI
  return true;
#else
  return false;
#endif
}

std::string library_version() {
#ifdef METAFEW_WITH_MPI
  char text[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  MPI_Get_library_version(text, &len);  // callable before MPI_Init
  std::string v(text, static_cast<size_t>(len));
  const size_t cut = v.find_first_of(",\n");
  return cut == std::string::npos ? v : v.substr(0, cut);
#else
  return "none";
#endif
}

void init(int* argc, char*** argv) {
  const int launched = launcher_size();
#ifdef METAFEW_WITH_MPI
  if (launched == 0) return;  // one process, no MPI (Note [Processes])
  int provided = 0;
  // Only the main thread calls MPI; OpenMP threads never do.
  check(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "initialisation");
  g_mpi = true;
  // A failing call returns its error (thrown with the process named) instead of aborting without a word.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_size);
  if (const char* t = std::getenv("METAFEW_COMM_TIMEOUT"); t != nullptr && *t != '\0') {
    char* end = nullptr;
    const double v = std::strtod(t, &end);
    MF_USAGE_CHECK(end != t && *end == '\0' && v > 0 && v < 1e9, "METAFEW_COMM_TIMEOUT must be a number of seconds "
                   "above 0, got '", t, "'");
    g_timeout = v;
  }
#else
  (void)argc;
  (void)argv;
  MF_USAGE_CHECK(launched <= 1, "this metafew was built without MPI, but it was started as one of ", launched,
                 " processes (by mpirun or a batch system); install Open MPI (make deps installs libopenmpi-dev and "
                 "openmpi-bin) and rebuild (make build), or run it as one process");
#endif
}

void finalize() {
#ifdef METAFEW_WITH_MPI
  if (g_mpi) MPI_Finalize();
  g_mpi = false;
#endif
}

void abort_job(int code) {
#ifdef METAFEW_WITH_MPI
  if (g_mpi && g_size > 1) MPI_Abort(MPI_COMM_WORLD, code);
#else
  (void)code;
#endif
}

int rank() { return g_rank; }
int size() { return g_size; }
bool active() { return g_size > 1; }

std::pair<int64_t, int64_t> block(int64_t n, int r, int p) {
  const int64_t base = n / p, extra = n % p;
  const int64_t first = r * base + std::min<int64_t>(r, extra);
  return {first, first + base + (r < extra ? 1 : 0)};
}

#ifdef METAFEW_WITH_MPI
// Runs start(piece, count, request) for each piece of at most kPiece bytes of [data, data + bytes) (one empty
// piece for 0 bytes) and waits for each.
template <class Start>
void in_pieces(char* data, size_t bytes, const char* what, int peer, Start start) {
  size_t off = 0;
  do {
    const size_t n = std::min(kPiece, bytes - off);
    MPI_Request req;
    check(start(data + off, static_cast<int>(n), &req), what);
    wait_for(&req, what, peer);
    off += n;
  } while (off < bytes);
}
#endif

void send(const void* data, size_t bytes, int to) {
#ifdef METAFEW_WITH_MPI
  Timed t(bytes);
  in_pieces(const_cast<char*>(static_cast<const char*>(data)), bytes, "send", to, [&](char* p, int n, MPI_Request* r) {
    return MPI_Isend(p, n, MPI_BYTE, to, 0, MPI_COMM_WORLD, r);
  });
#else
  (void)data, (void)bytes, (void)to;
  MF_CHECK(false, "dist::send without MPI");
#endif
}

void recv(void* data, size_t bytes, int from) {
#ifdef METAFEW_WITH_MPI
  Timed t(bytes);
  in_pieces(static_cast<char*>(data), bytes, "receive", from, [&](char* p, int n, MPI_Request* r) {
    return MPI_Irecv(p, n, MPI_BYTE, from, 0, MPI_COMM_WORLD, r);
  });
#else
  (void)data, (void)bytes, (void)from;
  MF_CHECK(false, "dist::recv without MPI");
#endif
}

void broadcast(void* data, size_t bytes, int root) {
  if (g_size == 1) return;
#ifdef METAFEW_WITH_MPI
  Timed t(bytes);
  if (bytes == 0) return;
  in_pieces(static_cast<char*>(data), bytes, "broadcast", g_rank == root ? -1 : root,
            [&](char* p, int n, MPI_Request* r) { return MPI_Ibcast(p, n, MPI_BYTE, root, MPI_COMM_WORLD, r); });
#else
  (void)data, (void)bytes, (void)root;
#endif
}

bool any(bool flag) {
  if (g_size == 1) return flag;
#ifdef METAFEW_WITH_MPI
  Timed t(sizeof(int));
  int mine = flag ? 1 : 0, all = 0;
  MPI_Request req;
  check(MPI_Iallreduce(&mine, &all, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD, &req), "all-reduce");
  wait_for(&req, "all-reduce", -1);
  return all != 0;
#else
  return flag;
#endif
}

std::vector<double> allgather(const std::vector<double>& mine) {
  if (g_size == 1) return mine;
#ifdef METAFEW_WITH_MPI
  Timed t(mine.size() * sizeof(double));
  int n = static_cast<int>(mine.size());
  std::vector<int> counts(static_cast<size_t>(g_size)), offsets(static_cast<size_t>(g_size));
  MPI_Request req;
  check(MPI_Iallgather(&n, 1, MPI_INT, counts.data(), 1, MPI_INT, MPI_COMM_WORLD, &req), "all-gather");
  wait_for(&req, "all-gather", -1);
  int total = 0;
  for (int r = 0; r < g_size; ++r) {
    offsets[static_cast<size_t>(r)] = total;
    total += counts[static_cast<size_t>(r)];
  }
  std::vector<double> all(static_cast<size_t>(total));
  check(MPI_Iallgatherv(mine.data(), n, MPI_DOUBLE, all.data(), counts.data(), offsets.data(), MPI_DOUBLE,
                        MPI_COMM_WORLD, &req),
        "all-gather");
  wait_for(&req, "all-gather", -1);
  g_stats.bytes += static_cast<uint64_t>(total) * sizeof(double);
  return all;
#else
  return mine;
#endif
}

std::vector<std::string> gather_text(const std::string& mine, int root) {
  if (g_size == 1) return {mine};
#ifdef METAFEW_WITH_MPI
  Timed t(mine.size());
  MF_CHECK(mine.size() < (size_t{1} << 31), "dist::gather_text: a text of ", mine.size(), " bytes");
  int n = static_cast<int>(mine.size());
  std::vector<int> counts(static_cast<size_t>(g_size)), offsets(static_cast<size_t>(g_size));
  MPI_Request req;
  check(MPI_Igather(&n, 1, MPI_INT, counts.data(), 1, MPI_INT, root, MPI_COMM_WORLD, &req), "gather");
  wait_for(&req, "gather", g_rank == root ? -1 : root);
  int64_t total = 0;
  for (int r = 0; r < g_size; ++r) {
    offsets[static_cast<size_t>(r)] = static_cast<int>(total);
    total += counts[static_cast<size_t>(r)];
  }
  MF_CHECK(g_rank != root || total < (int64_t{1} << 31), "dist::gather_text: ", total, " bytes in all");
  std::string all(g_rank == root ? static_cast<size_t>(total) : 0, '\0');
  check(MPI_Igatherv(mine.data(), n, MPI_CHAR, all.data(), counts.data(), offsets.data(), MPI_CHAR, root,
                     MPI_COMM_WORLD, &req),
        "gather");
  wait_for(&req, "gather", g_rank == root ? -1 : root);
  if (g_rank != root) return {};
  g_stats.bytes += static_cast<uint64_t>(total);
  std::vector<std::string> out;
  for (int r = 0; r < g_size; ++r)
    out.push_back(all.substr(static_cast<size_t>(offsets[static_cast<size_t>(r)]),
                             static_cast<size_t>(counts[static_cast<size_t>(r)])));
  return out;
#else
  (void)root;
  return {mine};
#endif
}

Stats take_stats() {
  Stats s = g_stats;
  g_stats = Stats{};
  return s;
}

}  // namespace metafew::dist
