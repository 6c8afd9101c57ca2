/* The allreduce term of the data-parallel cost model (docs/data-parallel.md): the time of an
 * in-place MPI_Allreduce (float sum) against the message size, on the ranks and transport this
 * job was started with, e.g.
 *
 *   mpirun -np 2 --mca btl self,vader bench/allreduce_time      (shared memory)
 *   mpirun -np 2 --mca btl self,tcp   bench/allreduce_time      (TCP loopback)
 *
 * Sizes 4 KiB .. 4 MiB in powers of 2, each both as a blocking MPI_Allreduce and as MPI_Iallreduce
 * followed by MPI_Wait (how mtlc sums its gradient buckets). For each: 10 warm-up calls, then
 * repeated calls until 0.2 s have passed (at least 20); every rank times each call, the call's
 * time is the slowest rank's, and the time is the median call. Rank 0 prints one JSON object per
 * size and mode: {"ranks": N, "bytes": B, "mode": "blocking"|"nonblocking", "median_us": T,
 * "min_us": M, "calls": C}. bench/data_parallel.py --transports runs it per transport and fits the
 * cost model's latency and bandwidth terms to these lines. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int compare(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* One in-place float sum over all ranks, as a blocking call or started and waited on. */
static void sum(float *data, int count, int nonblocking) {
  if (!nonblocking) {
    MPI_Allreduce(MPI_IN_PLACE, data, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    return;
  }
  MPI_Request req;
  MPI_Iallreduce(MPI_IN_PLACE, data, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &req);
  MPI_Wait(&req, MPI_STATUS_IGNORE);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  enum { kMaxCalls = 100000 };
  double *times = malloc(sizeof(double) * kMaxCalls);
  for (long bytes = 4096; bytes <= 4L << 20; bytes *= 2)
    for (int nonblocking = 0; nonblocking < 2; ++nonblocking) {
      const int count = (int)(bytes / sizeof(float));
      float *data = malloc((size_t)bytes);
      for (int i = 0; i < count; ++i) data[i] = 1e-3f * (float)(i % 1000);
      for (int i = 0; i < 10; ++i) sum(data, count, nonblocking);
      int calls = 0, more = 1;
      const double start = MPI_Wtime();
      while (more) {
        MPI_Barrier(MPI_COMM_WORLD);
        const double t0 = MPI_Wtime();
        sum(data, count, nonblocking);
        double t = MPI_Wtime() - t0;
        MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        times[calls++] = t;
        /* Every rank decides alike: rank 0's clock. */
        more = calls < 20 || (MPI_Wtime() - start < 0.2 && calls < kMaxCalls);
        MPI_Bcast(&more, 1, MPI_INT, 0, MPI_COMM_WORLD);
      }
      qsort(times, (size_t)calls, sizeof(double), compare);
      if (rank == 0)
        printf("{\"ranks\": %d, \"bytes\": %ld, \"mode\": \"%s\", \"median_us\": %.2f, \"min_us\": %.2f, "
               "\"calls\": %d}\n",
               ranks, bytes, nonblocking ? "nonblocking" : "blocking", 1e6 * times[calls / 2], 1e6 * times[0], calls);
      fflush(stdout);
      free(data);
    }
  free(times);
  MPI_Finalize();
  return 0;
}
