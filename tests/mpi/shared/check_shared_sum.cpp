// The shared-memory gradient sum (runtime/parallel/SharedGradientSum.h) under mpirun, on whatever
// rank count it was started with: every rank must end every sum holding, bit for bit, the rank-order
// sum g_0 + g_1 + ... of all ranks' arenas, whatever order and pieces the ranks report their parts
// final in, with ranks that report nothing before finish() (a rank without rows of the batch), with
// arenas of one float, of a bucket ± 1 and of several buckets with a ragged end, and over several
// sums in a row (a rank writing its next step's gradient must not race the last sum).
// A plain program, not Catch2: one process per rank. Exit status 0 when every rank passed.
#include "runtime/parallel/SharedGradientSum.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

namespace {

using mtlc::rt::SharedGradientSum;

// Rank r's gradient element i in sum e: values of several magnitudes, so that the order of the
// additions shows in the last bits.
float part(int r, int e, int64_t i) {
  const int64_t k = (i * 7919 + int64_t(r) * 104729 + int64_t(e) * 31) % 2001 - 1000;
  return float(k) * 1e-3f * float(1 + r) * (i % 3 == 0 ? 1e3f : 1.0f);
}

// Reports [0, count) in pieces of random sizes, in a random order, sometimes pausing.
void reportShuffled(SharedGradientSum& s, int64_t count, std::mt19937& rng) {
  std::vector<std::pair<int64_t, int64_t>> pieces;
  for (int64_t at = 0; at < count;) {
    const int64_t n = std::min<int64_t>(count - at, 1 + int64_t(rng() % 40000));
    pieces.emplace_back(at, at + n);
    at += n;
  }
  std::shuffle(pieces.begin(), pieces.end(), rng);
  for (const auto& [lo, hi] : pieces) {
    s.ready(lo, hi);
    if (rng() % 4 == 0) std::this_thread::sleep_for(std::chrono::microseconds(rng() % 300));
  }
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  const int64_t b = SharedGradientSum::kBucketFloats;
  int64_t failures = 0, checked = 0;
  for (int64_t count : {int64_t(1), int64_t(17), b - 1, b, b + 1, 3 * b + 5, 7 * b + 999}) {
    auto s = SharedGradientSum::create(MPI_COMM_WORLD, count, 60);
    if (!s) {
      std::fprintf(stderr, "rank %d: no shared window (the ranks are not on one machine?)\n", rank);
      MPI_Abort(MPI_COMM_WORLD, 2);
    }
    std::mt19937 rng(unsigned(1000 * rank + count));
    for (int e = 0; e < 5; ++e) {
      s->begin();
      float* g = s->data();
      for (int64_t i = 0; i < count; ++i) g[i] = part(rank, e, i);
      const bool silent = e == 2 && rank == ranks - 1;  // this rank has no rows this step
      if (!silent) reportShuffled(*s, count, rng);
      s->finish();
      s->complete();
      for (int64_t i = 0; i < count; ++i) {
        float want = part(0, e, i);
        for (int r = 1; r < ranks; ++r) want += part(r, e, i);
        ++checked;
        if (std::memcmp(&want, &g[i], sizeof want) != 0 && failures++ < 5)
          std::fprintf(stderr, "rank %d: count %lld, sum %d, element %lld: %.9g, want %.9g\n", rank,
                       (long long)count, e, (long long)i, double(g[i]), double(want));
      }
    }
  }
  int64_t all = failures;
  MPI_Allreduce(MPI_IN_PLACE, &all, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0)
    std::printf("%d ranks: %lld elements checked per rank, %lld wrong on all ranks\n", ranks, (long long)checked,
                (long long)all);
  MPI_Finalize();
  return all == 0 ? 0 : 1;
}
