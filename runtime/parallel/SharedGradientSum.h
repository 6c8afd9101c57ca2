// The gradient sum of ranks on one machine through memory they share: each rank's gradient arena
// lives in an MPI-3 shared window (MPI_Win_allocate_shared over the machine's ranks), so a rank
// reads and writes the others' gradients directly, with no MPI call per bucket.
//
// Why: Open MPI moves a non-blocking collective only inside MPI calls, and over shared memory
// (vader) a large message is a rendezvous that advances only when both ranks are inside MPI. With
// every core computing, the sum waits for the slower rank's next poll (docs/data-parallel.md,
// Transport). Here a bucket's sum needs nothing from the other ranks but their flags.
//
// The scheme, for N ranks and the arena cut into buckets of kBucketFloats:
//   - bucket b is owned by rank b mod N;
//   - a rank marks a bucket ready (a per-rank, per-bucket counter set to the sum's epoch) once its
//     own part is final; whenever it reports, it sums each bucket it owns whose every rank's part
//     is ready: s = g_0 + g_1 + ... + g_{N-1} in rank order, written back to every rank's arena,
//     then marks the bucket done;
//   - complete() sums the owned buckets left, then waits until every bucket is done.
// Every rank ends with the same bits (one rank computes each element, in one fixed order), and
// the same as the next run. A rank writes its arena again only after complete() saw every bucket
// done, that is after every owner finished reading and writing it; an owner reads a rank's part
// only after that rank marked it ready in the current epoch: no step can see another's data.
#pragma once

#if MTLC_HAVE_MPI
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

namespace mtlc::rt {

class SharedGradientSum {
 public:
  // Buckets of 64 KiB: small enough that the ranks split the last layer's gradient (reported
  // last, after the whole backward pass) between them, large enough that a flag per bucket costs
  // nothing next to its data.
  static constexpr int64_t kBucketFloats = int64_t(1) << 14;

  // Collective over `comm`: the shared arena of `count` floats (zeroed), or null when the ranks of
  // `comm` are not all on one machine (the caller then sums through MPI). `timeout` seconds of no
  // progress make complete() an Error (0: wait forever).
  static std::unique_ptr<SharedGradientSum> create(MPI_Comm comm, int64_t count, double timeout);
  ~SharedGradientSum();
  SharedGradientSum(const SharedGradientSum&) = delete;
  SharedGradientSum& operator=(const SharedGradientSum&) = delete;

  float* data() { return grads_[size_t(rank_)]; }
  int64_t count() const { return count_; }

  // One sum: begin() before the arena is written, ready(begin, end) as parts of it become final
  // (floats [begin, end)), finish() when all of it is, complete() before it is read. While
  // complete() waits for the other ranks it calls `poll` now and then (the caller's MPI
  // collectives of the step advance only inside MPI calls).
  void begin();
  void ready(int64_t begin, int64_t end);
  void finish();
  void complete(const std::function<void()>& poll = {});

 private:
  SharedGradientSum() = default;
  void markReady(int64_t bucket);
  // Sums the owned buckets whose parts are all ready; with `wait`, every owned bucket.
  void progress(bool wait, const std::function<void()>* poll = nullptr);
  bool allReady(int64_t bucket) const;
  void sumBucket(int64_t bucket);
  void waitAllDone(const std::function<void()>& poll);

  MPI_Comm node_ = MPI_COMM_NULL;
  MPI_Win win_ = MPI_WIN_NULL;
  bool locked_ = false;
  int rank_ = 0, size_ = 1;
  int64_t count_ = 0, buckets_ = 0;
  double timeout_ = 0;
  uint64_t epoch_ = 0;
  // Every rank's arena, its ready counters and done counters (done[b] in the owner's segment).
  std::vector<float*> grads_;
  std::vector<uint64_t*> ready_, done_;
  std::vector<int64_t> missing_;  // floats of each bucket not yet reported final this epoch
  std::vector<int64_t> owned_;    // this epoch's owned buckets not yet summed, the top one last
};

}  // namespace mtlc::rt
#endif
