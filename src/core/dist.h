#pragma once
// Processes of one job (MPI), and the few collectives metafew needs. Note [Processes]: a binary started by
// mpirun (Open MPI's OMPI_COMM_WORLD_SIZE, or a PMI / PMIx launcher's rank variables) joins MPI_COMM_WORLD;
// started any other way it is one process and never calls MPI at all, so the single-process path, its
// numbers and its tests do not depend on MPI. A binary built without MPI that finds itself started as one of
// several processes stops with a clear error instead of running P copies of the same job.
//
// In a job of several processes, meta-train gives each process a contiguous block of every meta-batch's tasks
// (block() below) and combines them in task order (Note [Task-order reduction] in meta/trainer.cpp); process
// 0 alone owns the run folder and the terminal. A stop request (mpirun passes SIGINT / SIGTERM on to every
// process as SIGTERM) is agreed with any() once per iteration, so every process stops at the same one and
// process 0 saves. An error in any process prints its message with the process named and ends the job with
// MPI_Abort (cli/main.cpp); a process killed outright makes mpirun end the others, and one that hangs is
// given up on after METAFEW_COMM_TIMEOUT seconds (Note [Hung processes] in dist.cpp). Either way the last
// checkpoint is whole (checkpoints are written to a temporary file and renamed).
//
// Every collective here is called by every process at the same point; with one process each is a no-op.
// Message sizes are not limited by MPI's int counts (large buffers go in pieces of 1 GiB).
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace metafew::dist {

// Joins the job when started by an MPI launcher (call once, first thing in main); throws a usage error when
// started as one of several processes by a binary built without MPI.
void init(int* argc, char*** argv);
// Leaves the job (at a normal exit); a no-op for one process.
void finalize();
// Ends every process of the job with `code` (after an error in any one of them); for one process, returns.
void abort_job(int code);

int rank();
int size();
bool active();       // more than one process
bool built_with_mpi();
// "Open MPI v4.1.4, ..." (the library's own words, first line), or "none" for a build without MPI.
std::string library_version();

// The contiguous block [first, last) of n items that process r of p holds: the first n % p processes hold one
// more; processes past n hold none.
std::pair<int64_t, int64_t> block(int64_t n, int r, int p);

// Point to point and collectives on raw bytes.
void send(const void* data, size_t bytes, int to);
void recv(void* data, size_t bytes, int from);
void broadcast(void* data, size_t bytes, int root);
// True on every process when `flag` is true on any.
bool any(bool flag);
// Every process's `mine` (any length each), concatenated in rank order, on every process.
std::vector<double> allgather(const std::vector<double>& mine);
// Every process's text, in rank order, on process `root` (the others get an empty list).
std::vector<std::string> gather_text(const std::string& mine, int root);

// Communication accounted since the last take_stats(): seconds inside the calls above (waiting for a slower
// process included) and bytes this process sent and received.
struct Stats {
  double seconds = 0;
  uint64_t bytes = 0;
};
Stats take_stats();

}  // namespace metafew::dist
