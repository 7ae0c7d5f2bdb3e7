// The cost of the messages meta-train sends between processes (Note [Task-order reduction] in
// src/meta/trainer.cpp), measured through the same calls (core/dist.h): one-way time of a message between
// processes 0 and 1 (half a ping-pong) and a broadcast from the last process to all, for sizes from 8 bytes
// to a ResNet-12's parameters. bench/results/scaling.md uses its figures.
// Usage: mpirun -np 2 build/comm_bench [repeats]   (one JSON line per size on stdout, from process 0)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "core/dist.h"
#include "core/error.h"

namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

int main(int argc, char** argv) {
  using namespace metafew;
  try {
    dist::init(&argc, &argv);
    if (!dist::built_with_mpi() || dist::size() < 2) {
      std::fprintf(stderr, "comm_bench: run it under mpirun with 2 or more processes (built with MPI: %s)\n",
                   dist::library_version().c_str());
      dist::finalize();
      return 2;
    }
    const int repeats = argc > 1 ? std::atoi(argv[1]) : 20;
    const int me = dist::rank(), last = dist::size() - 1;
    // 8 B; 4 KiB; conv-4 (MAML 5w1s, stride 2: 112k parameters + scalars); conv-4 with max-pool; 4 MB; a
    // ResNet-12 (12.4M parameters).
    for (size_t bytes : {size_t{8}, size_t{4096}, size_t{449'300}, size_t{452'000}, size_t{4'000'000},
                         size_t{49'900'000}}) {
      std::vector<char> buf(bytes, 1);
      const int reps = bytes > 10'000'000 ? std::max(3, repeats / 5) : repeats;
      double one_way = 0, bcast = 0;
      for (int pass = 0; pass < 2; ++pass) {  // the first pass warms up
        if (dist::any(false)) break;            // a barrier
        const double t0 = now();
        for (int r = 0; r < reps; ++r) {
          if (me == 0) {
            dist::send(buf.data(), bytes, 1);
            dist::recv(buf.data(), bytes, 1);
          } else if (me == 1) {
            dist::recv(buf.data(), bytes, 0);
            dist::send(buf.data(), bytes, 0);
          }
        }
        one_way = (now() - t0) / (2.0 * reps);
        dist::any(false);
        const double t1 = now();
        for (int r = 0; r < reps; ++r) dist::broadcast(buf.data(), bytes, last);
        dist::any(false);
        bcast = (now() - t1) / reps;
      }
      if (me == 0)
        std::printf("{\"bytes\": %zu, \"processes\": %d, \"one_way_seconds\": %.9f, \"bandwidth_gb_per_s\": %.3f, "
                    "\"broadcast_seconds\": %.9f, \"repeats\": %d}\n",
                    bytes, dist::size(), one_way, static_cast<double>(bytes) / one_way / 1e9, bcast, reps);
    }
    dist::finalize();
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "comm_bench: %s\n", e.what());
    dist::abort_job(1);
    return 1;
  }
}
