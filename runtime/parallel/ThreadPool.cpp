#include "ThreadPool.h"

#include "runtime/parallel/FloatMode.h"

#include <sched.h>

#include <algorithm>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MTLC_PAUSE() _mm_pause()
#else
#define MTLC_PAUSE() ((void)0)
#endif

namespace mtlc::rt {

namespace {

// True on a pool's worker threads and inside a running body: nested calls run serially.
thread_local bool insideBody = false;

// Spin this many rounds before sleeping: long enough to catch back-to-back kernels (a few µs),
// short enough not to burn a shared machine's CPU between training steps.
constexpr int kSpins = 4000;

}  // namespace

int ThreadPool::hardwareThreads() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

ThreadPool::ThreadPool(int threads) : threads_(threads > 0 ? threads : hardwareThreads()) {
  for (int i = 1; i < threads_; ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  finishBackground();
  stop_.store(true);
  generation_.fetch_add(1);
  wake_.fetch_add(1);
  wake_.notify_all();
  for (std::thread &t : workers_) t.join();
}

bool ThreadPool::runBackgroundChunk() {
  // Workers call this on every spin: without a job, a plain load, not two read-modify-writes of
  // a line every spinning worker shares (the check that counts is the one after the increment).
  if (!bgActive_.load(std::memory_order_relaxed)) return false;
  bool ran = false;
  bgInside_.fetch_add(1);  // seq_cst with finishBackground's store and load: see there
  if (bgActive_.load()) {
    const int64_t begin = bgNext_.fetch_add(bgChunk_), count = bgCount_.load(std::memory_order_relaxed);
    if (begin < count) {
      const int64_t end = std::min(begin + bgChunk_, count);
      bgBody_(bgCtx_, begin, end);
      bgDone_.fetch_add(end - begin, std::memory_order_release);
      ran = true;
    }
  }
  bgInside_.fetch_sub(1);
  return ran;
}

void ThreadPool::startBackground(int64_t n, int64_t chunk, Body body, void *ctx) {
  finishBackground();
  if (n <= 0) return;
  bgBody_ = body, bgCtx_ = ctx, bgChunk_ = std::max<int64_t>(chunk, 1);
  bgCount_.store(n), bgNext_.store(0), bgDone_.store(0);
  bgActive_.store(true);
  wake_.fetch_add(1);
  wake_.notify_all();
}

void ThreadPool::finishBackground() {
  if (!bgActive_.load()) return;
  const bool outer = insideBody;
  insideBody = true;  // a body's own parallelFor calls run serially, as on a worker
  while (runBackgroundChunk()) {
  }
  insideBody = outer;
  while (bgDone_.load(std::memory_order_acquire) < bgCount_.load()) MTLC_PAUSE();
  // Once every worker that could have seen bgActive_ true has left runBackgroundChunk, none can
  // touch the job's fields again (a later one sees false: both are seq_cst), and the next job may
  // overwrite them.
  bgActive_.store(false);
  while (bgInside_.load() != 0) MTLC_PAUSE();
}

void ThreadPool::runChunk(int index) {
  int64_t begin = n_ * index / chunks_, end = n_ * (index + 1) / chunks_;
  if (begin < end) body_(ctx_, begin, end);
}

void ThreadPool::worker(int index) {
  insideBody = true;
  uint64_t seen = 0;
  for (;;) {
    uint64_t g = generation_.load(std::memory_order_acquire);
    for (int spin = 0; g == seen && spin < kSpins; ++spin) {
      if (runBackgroundChunk()) spin = 0;  // background work keeps the worker awake
      else MTLC_PAUSE();
      g = generation_.load(std::memory_order_acquire);
    }
    if (g == seen) {
      const uint32_t w = wake_.load();
      // Asleep unless a parallelFor job or unclaimed background chunks arrived since `w`.
      const bool chunksLeft = bgActive_.load() && bgNext_.load() < bgCount_.load();
      if (generation_.load(std::memory_order_acquire) == seen && !chunksLeft) wake_.wait(w);
      continue;
    }
    seen = g;
    if (stop_.load()) return;
    // The caller's floating-point mode (denormal flushing) for this job: the same arithmetic on
    // every thread, so the thread count cannot change results.
    if (floatMode() != mode_) setFloatMode(mode_);
    if (index < chunks_) runChunk(index);
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) pending_.notify_one();
  }
}

void ThreadPool::parallelFor(int64_t n, Body body, void *ctx) {
  if (n <= 0) return;
  if (threads_ <= 1 || n == 1 || insideBody) {
    body(ctx, 0, n);
    return;
  }
  std::lock_guard<std::mutex> guard(callLock_);
  body_ = body, ctx_ = ctx, n_ = n;
  mode_ = floatMode();
  chunks_ = (int)std::min<int64_t>(threads_, n);
  pending_.store((int)workers_.size(), std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_release);
  wake_.fetch_add(1);
  wake_.notify_all();
  insideBody = true;
  runChunk(0);
  insideBody = false;
  int left = pending_.load(std::memory_order_acquire);
  for (int spin = 0; left != 0 && spin < kSpins; ++spin) {
    MTLC_PAUSE();
    left = pending_.load(std::memory_order_acquire);
  }
  while (left != 0) {
    pending_.wait(left, std::memory_order_acquire);
    left = pending_.load(std::memory_order_acquire);
  }
}

void ThreadPool::parallelForC(void *pool, int64_t n, Body body, void *ctx) {
  static_cast<ThreadPool *>(pool)->parallelFor(n, body, ctx);
}

}  // namespace mtlc::rt
