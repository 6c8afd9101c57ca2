// The gradient sum through a shared window (SharedGradientSum.h). Compiled only with MTLC_HAVE_MPI.
#if MTLC_HAVE_MPI
#include "runtime/parallel/SharedGradientSum.h"

#include "runtime/parallel/RankWait.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include <sched.h>

namespace mtlc::rt {

namespace {

uint64_t load(const uint64_t* flag) {
  return std::atomic_ref<uint64_t>(*const_cast<uint64_t*>(flag)).load(std::memory_order_acquire);
}
void store(uint64_t* flag, uint64_t v) { std::atomic_ref<uint64_t>(*flag).store(v, std::memory_order_release); }

void pause() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Waiting for another rank: spin first (the others are usually microseconds away), then yield
// the core, then sleep between polls so a rank waiting for rank 0's evaluation leaves the CPU to
// it; past the deadline the job is stuck.
class Backoff {
 public:
  Backoff(double timeout, int rank, int size) : timeout_(timeout), rank_(rank), size_(size) {}
  void operator()() {
    ++polls_;
    if (polls_ < 4096) return pause();
    if (polls_ < 8192) {
      sched_yield();
      return;
    }
    if (start_ == 0) start_ = monotonicSeconds();
    if (timeout_ > 0 && monotonicSeconds() - start_ > timeout_)
      throwNoAnswer(rank_, size_, timeout_, "summing gradients");
    std::this_thread::sleep_for(std::chrono::microseconds(polls_ < 30000 ? 20 : 1000));
  }

 private:
  double timeout_;
  int rank_, size_;
  int64_t polls_ = 0;
  double start_ = 0;
};

constexpr int64_t kLineFloats = 16;  // one 64-byte cache line

}  // namespace

std::unique_ptr<SharedGradientSum> SharedGradientSum::create(MPI_Comm comm, int64_t count, double timeout) {
  int worldSize = 1;
  MPI_Comm_size(comm, &worldSize);
  MPI_Comm node = MPI_COMM_NULL;
  if (MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) != MPI_SUCCESS) return nullptr;
  int nodeSize = 0;
  MPI_Comm_size(node, &nodeSize);
  // Every rank learns the same answer (nodeSize is the same on a machine; the min over all ranks
  // tells whether every machine holds all ranks), so all of them take the same path.
  int allHere = nodeSize == worldSize ? 1 : 0;
  MPI_Allreduce(MPI_IN_PLACE, &allHere, 1, MPI_INT, MPI_MIN, comm);
  if (!allHere) {
    MPI_Comm_free(&node);
    return nullptr;
  }
  std::unique_ptr<SharedGradientSum> s(new SharedGradientSum);
  s->node_ = node;
  MPI_Comm_rank(node, &s->rank_);
  s->size_ = nodeSize;
  s->count_ = count;
  s->timeout_ = timeout;
  s->buckets_ = (count + kBucketFloats - 1) / kBucketFloats;
  const int64_t gradFloats = (count + kLineFloats - 1) / kLineFloats * kLineFloats;
  const MPI_Aint bytes = MPI_Aint(gradFloats * 4 + 2 * s->buckets_ * 8);

  // Each rank's segment in its own pages (placed near it), not one block cut among the ranks.
  MPI_Info info;
  MPI_Info_create(&info);
  MPI_Info_set(info, "alloc_shared_noncontig", "true");
  void* base = nullptr;
  int allocated = MPI_Win_allocate_shared(bytes, 64, info, node, &base, &s->win_) == MPI_SUCCESS ? 1 : 0;
  MPI_Info_free(&info);
  // Where Open MPI cannot share memory (no shared-memory window component), every rank sums
  // through MPI instead; all of them, or their collectives would not match.
  MPI_Allreduce(MPI_IN_PLACE, &allocated, 1, MPI_INT, MPI_MIN, comm);
  if (!allocated) {
    s->win_ = MPI_WIN_NULL;  // a rank that did get its window cannot free it alone: left to MPI_Finalize
    return nullptr;
  }
  std::memset(base, 0, size_t(bytes));
  for (int r = 0; r < nodeSize; ++r) {
    MPI_Aint size = 0;
    int unit = 0;
    void* seg = nullptr;
    MPI_Win_shared_query(s->win_, r, &size, &unit, &seg);
    char* p = static_cast<char*>(seg);
    s->grads_.push_back(reinterpret_cast<float*>(p));
    s->ready_.push_back(reinterpret_cast<uint64_t*>(p + gradFloats * 4));
    s->done_.push_back(reinterpret_cast<uint64_t*>(p + gradFloats * 4 + s->buckets_ * 8));
  }
  MPI_Win_lock_all(MPI_MODE_NOCHECK, s->win_);  // one passive epoch: plain loads and stores from here
  s->locked_ = true;
  MPI_Barrier(node);                            // every segment zeroed before anyone reads it
  s->missing_.resize(size_t(s->buckets_));
  return s;
}

SharedGradientSum::~SharedGradientSum() {
  if (win_ != MPI_WIN_NULL) {
    if (locked_) MPI_Win_unlock_all(win_);
    MPI_Win_free(&win_);
  }
  if (node_ != MPI_COMM_NULL) MPI_Comm_free(&node_);
}

void SharedGradientSum::begin() {
  ++epoch_;
  for (int64_t b = 0; b < buckets_; ++b) missing_[size_t(b)] = std::min(kBucketFloats, count_ - b * kBucketFloats);
  owned_.clear();
  for (int64_t b = rank_; b < buckets_; b += size_) owned_.push_back(b);
}

void SharedGradientSum::markReady(int64_t b) { store(&ready_[size_t(rank_)][b], epoch_); }

void SharedGradientSum::ready(int64_t begin, int64_t end) {
  begin = std::max<int64_t>(begin, 0);
  end = std::min(end, count_);
  for (int64_t b = begin / kBucketFloats; b * kBucketFloats < end; ++b) {
    const int64_t lo = std::max(begin, b * kBucketFloats), hi = std::min(end, (b + 1) * kBucketFloats);
    int64_t& m = missing_[size_t(b)];
    if (m > 0 && (m -= hi - lo) <= 0) markReady(b);
  }
  progress(false);
}

void SharedGradientSum::finish() {
  for (int64_t b = 0; b < buckets_; ++b)
    if (missing_[size_t(b)] > 0) {
      missing_[size_t(b)] = 0;
      markReady(b);
    }
}

bool SharedGradientSum::allReady(int64_t b) const {
  for (int r = 0; r < size_; ++r)
    if (load(&ready_[size_t(r)][b]) != epoch_) return false;
  return true;
}

void SharedGradientSum::sumBucket(int64_t b) {
  const int64_t lo = b * kBucketFloats, hi = std::min(count_, lo + kBucketFloats);
  // A line at a time in a vector register (GCC/Clang vector extension: whatever SIMD the build
  // targets), then the tail element by element; the sum in rank order either way.
  using Line = float __attribute__((vector_size(kLineFloats * sizeof(float))));
  int64_t at = lo;
  for (; at + kLineFloats <= hi; at += kLineFloats) {
    Line s, x;
    std::memcpy(&s, grads_[0] + at, sizeof s);
    for (int r = 1; r < size_; ++r) {
      std::memcpy(&x, grads_[size_t(r)] + at, sizeof x);
      s += x;
    }
    for (int r = 0; r < size_; ++r) std::memcpy(grads_[size_t(r)] + at, &s, sizeof s);
  }
  for (; at < hi; ++at) {
    float s = grads_[0][at];
    for (int r = 1; r < size_; ++r) s += grads_[size_t(r)][at];
    for (int r = 0; r < size_; ++r) grads_[size_t(r)][at] = s;
  }
  store(&done_[size_t(rank_)][b], epoch_);
}

void SharedGradientSum::progress(bool wait, const std::function<void()>* poll) {
  Backoff backoff(timeout_, rank_, size_);
  int64_t spins = 0;
  while (!owned_.empty()) {
    bool summed = false;
    // The highest buckets first: the output layers' gradients, final earliest.
    for (size_t i = owned_.size(); i-- > 0;)
      if (allReady(owned_[i])) {
        sumBucket(owned_[i]);
        owned_.erase(owned_.begin() + std::ptrdiff_t(i));
        summed = true;
      }
    if (!wait) return;
    if (!summed) {
      if (poll && *poll && (++spins & 63) == 0) (*poll)();
      backoff();
    }
  }
}

void SharedGradientSum::waitAllDone(const std::function<void()>& poll) {
  Backoff backoff(timeout_, rank_, size_);
  int64_t spins = 0;
  for (int64_t b = buckets_ - 1; b >= 0; --b)
    while (load(&done_[size_t(b % size_)][b]) != epoch_) {
      if (poll && (++spins & 63) == 0) poll();
      backoff();
    }
}

void SharedGradientSum::complete(const std::function<void()>& poll) {
  progress(true, &poll);
  waitAllDone(poll);
}

}  // namespace mtlc::rt
#endif
