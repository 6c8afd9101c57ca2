// The shared-memory term of the data-parallel cost model (docs/data-parallel.md): the time of the
// gradient sum mtlc runs between ranks of one machine (runtime/parallel/SharedGradientSum.h)
// against the arena's size, as bench/allreduce_time gives it for MPI_Allreduce:
//
//   mpirun -np 2 bench/shared_sum_time
//
// Sizes 4 KiB .. 4 MiB in powers of 2. For each: 10 warm-up sums, then repeated sums until 0.2 s
// have passed (at least 20); each sum is begin, the whole arena reported final at once, complete
// (no overlap: what is left to do after a backward pass that reported nothing early). Every rank
// times each sum, the sum's time is the slowest rank's, the time is the median sum. Rank 0 prints
// one JSON object per size: {"ranks": N, "bytes": B, "mode": "shared", "median_us": T,
// "min_us": M, "calls": C}, the lines bench/data_parallel.py --cost-model reads.
#include "runtime/parallel/SharedGradientSum.h"

#include <algorithm>
#include <cstdio>
#include <vector>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  std::vector<double> times;
  for (long bytes = 4096; bytes <= 4L << 20; bytes *= 2) {
    const int64_t count = bytes / 4;
    auto sum = mtlc::rt::SharedGradientSum::create(MPI_COMM_WORLD, count, 60);
    if (!sum) {
      if (rank == 0) std::fprintf(stderr, "shared_sum_time: the ranks are not all on one machine\n");
      MPI_Finalize();
      return 1;
    }
    auto once = [&] {
      float* g = sum->data();
      for (int64_t i = 0; i < count; ++i) g[i] = 1e-3f * float(i % 1000);  // the backward pass's writes
      MPI_Barrier(MPI_COMM_WORLD);
      const double t0 = MPI_Wtime();
      sum->begin();
      sum->ready(0, count);
      sum->finish();
      sum->complete();
      double t = MPI_Wtime() - t0;
      MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
      return t;
    };
    for (int i = 0; i < 10; ++i) once();
    times.clear();
    int more = 1;
    const double start = MPI_Wtime();
    while (more) {
      times.push_back(once());
      more = times.size() < 20 || (MPI_Wtime() - start < 0.2 && times.size() < 100000);
      MPI_Bcast(&more, 1, MPI_INT, 0, MPI_COMM_WORLD);  // every rank decides alike: rank 0's clock
    }
    std::sort(times.begin(), times.end());
    if (rank == 0)
      std::printf("{\"ranks\": %d, \"bytes\": %ld, \"mode\": \"shared\", \"median_us\": %.2f, \"min_us\": %.2f, "
                  "\"calls\": %zu}\n",
                  ranks, bytes, 1e6 * times[times.size() / 2], 1e6 * times[0], times.size());
    std::fflush(stdout);
  }
  MPI_Finalize();
  return 0;
}
