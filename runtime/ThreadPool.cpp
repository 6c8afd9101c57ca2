#include "ThreadPool.h"

#include "runtime/FloatMode.h"

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
  stop_.store(true);
  generation_.fetch_add(1);
  generation_.notify_all();
  for (std::thread &t : workers_) t.join();
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
      MTLC_PAUSE();
      g = generation_.load(std::memory_order_acquire);
    }
    if (g == seen) {
      generation_.wait(seen, std::memory_order_acquire);
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
  generation_.notify_all();
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
