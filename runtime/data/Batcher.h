// Batching: each epoch visits every row of a Dataset once, in a shuffled or in file order, and
// gathers the rows of each batch into contiguous buffers (one per input, one per label) that the
// kernels read through mtlc_args::inputs / labels.
//
// Shuffle: epoch e (0-based: the first epoch is e = 0) uses the permutation drawn by Fisher–Yates
// from std::mt19937_64(seed + e), where for i = rows−1 down to 1, j = uniformBelow(rng, i + 1)
// (Rng.h) and rows i and j swap. So a (seed, epoch) pair gives the same batches on every platform.
// Without shuffle, rows come in file order. The last batch keeps the remaining rows
// (rows % batch of them) rather than dropping them.
//
// Prefetch: with a pool of two or more threads, prefetch(b + 1) right after gather(b) copies the
// next batch into a second set of buffers on the pool's idle workers (ThreadPool background
// work) while the step runs; gather(b + 1) then finishes that copy and swaps the sets. The
// batches are the same bytes either way.
//
// A field that is a view of a memory-mapped file (an npz member used in place) has its rows read
// from the file with pread (FloatStore::readFloats), so the archive's pages do not accumulate in
// the process's resident set; a read that fails is reported by the next gather().
#pragma once

#include "runtime/data/Dataset.h"
#include "runtime/parallel/ThreadPool.h"

#include <atomic>
#include <cstdint>
#include <vector>

namespace mtlc::rt {

class Batcher {
 public:
  Batcher(const Dataset& data, int64_t batch, bool shuffle, uint64_t seed);
  ~Batcher();
  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  // Draws the order for epoch `epoch` (0-based).
  void startEpoch(int64_t epoch);
  int64_t batches() const { return (data_.rows + batch_ - 1) / batch_; }
  int64_t batchSize() const { return batch_; }

  // Gathers batch b (0 .. batches()-1) of the current epoch; returns its row count n. With a
  // pool, batches of kParallelFloats input floats or more are copied on all its threads.
  int64_t gather(int64_t b, ThreadPool* pool = nullptr);
  static constexpr int64_t kParallelFloats = 1 << 14;

  // Starts copying batch b of the current epoch into the spare buffers on `pool`'s idle workers
  // (see above); the next gather(b) completes it. Nothing happens without a pool of two or more
  // threads, or for b outside the epoch. The buffers gather() returned stay valid meanwhile.
  void prefetch(int64_t b, ThreadPool* pool);

  // Pointers to the gathered buffers: [n, width] each, valid until the next gather().
  const float* const* inputs() const { return sets_[cur_].inputPtrs.data(); }
  const float* const* labels() const { return sets_[cur_].labelPtrs.data(); }
  const std::vector<int64_t>& order() const { return order_; }

 private:
  const Dataset& data_;
  int64_t batch_;
  bool shuffle_;
  uint64_t seed_;
  std::vector<int64_t> order_;
  // One batch's buffers: one per input, one per label.
  struct Buffers {
    std::vector<std::vector<float>> inputs, labels;
    std::vector<const float*> inputPtrs, labelPtrs;
  };
  Buffers sets_[2];  // the second is allocated by the first prefetch
  int cur_ = 0;      // the set gather() last filled
  // A copy of rows [first, first + n) of the order into set `set`, for the copy routine.
  struct Job {
    Batcher* self;
    int64_t first;
    int set;
  };
  Job prefetchJob_{};
  int64_t prefetched_ = -1;          // the batch the spare set holds or is receiving; -1: none
  std::atomic<int> readErrno_{0};    // a view's failed read (its errno), from any copying thread
  ThreadPool* prefetchPool_ = nullptr;

  void allocate(Buffers& set);
  void finishPrefetch();             // waits for a prefetch in flight and drops it
  void throwIfReadFailed() const;
  static void copyRows(void* job, int64_t i0, int64_t i1);
};

// The permutation Batcher uses: Fisher–Yates over 0..n-1 from mt19937_64(seed).
std::vector<int64_t> shuffledOrder(int64_t n, uint64_t seed);

}  // namespace mtlc::rt
