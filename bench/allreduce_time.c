/* The allreduce term of the data-parallel cost model (docs/data-parallel.md): the time of an
 * in-place MPI_Allreduce (float sum) against the message size, on the ranks and transport this
 * job was started with, e.g.
 *
 *   mpirun -np 2 --mca btl self,vader bench/allreduce_time      (shared memory)
 *   mpirun -np 2 --mca btl self,tcp   bench/allreduce_time      (TCP loopback)
 *
 * Sizes 1 KiB .. 16 MiB in powers of 4. For each: 10 warm-up calls, then repeated calls until
 * 0.2 s have passed (at least 20); every rank times each call, the call's time is the slowest
 * rank's, and the size's time is the median call. Rank 0 prints one JSON object per size:
 * {"ranks": N, "bytes": B, "median_us": T, "calls": C}. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int compare(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  enum { kMaxCalls = 100000 };
  double *times = malloc(sizeof(double) * kMaxCalls);
  for (long bytes = 1024; bytes <= 16L << 20; bytes *= 4) {
    const int count = (int)(bytes / sizeof(float));
    float *data = malloc((size_t)bytes);
    for (int i = 0; i < count; ++i) data[i] = 1e-3f * (float)(i % 1000);
    for (int i = 0; i < 10; ++i) MPI_Allreduce(MPI_IN_PLACE, data, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    int calls = 0, more = 1;
    const double start = MPI_Wtime();
    while (more) {
      MPI_Barrier(MPI_COMM_WORLD);
      const double t0 = MPI_Wtime();
      MPI_Allreduce(MPI_IN_PLACE, data, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      double t = MPI_Wtime() - t0;
      MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
      times[calls++] = t;
      /* Every rank decides alike: rank 0's clock. */
      more = calls < 20 || (MPI_Wtime() - start < 0.2 && calls < kMaxCalls);
      MPI_Bcast(&more, 1, MPI_INT, 0, MPI_COMM_WORLD);
    }
    qsort(times, (size_t)calls, sizeof(double), compare);
    if (rank == 0)
      printf("{\"ranks\": %d, \"bytes\": %ld, \"median_us\": %.2f, \"calls\": %d}\n", ranks, bytes,
             1e6 * times[calls / 2], calls);
    fflush(stdout);
    free(data);
  }
  free(times);
  MPI_Finalize();
  return 0;
}
