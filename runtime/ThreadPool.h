// A small fixed thread pool for the generated kernels (mtlc_args::parallel_for, runtime/abi.h).
//
// parallelFor(n, body, ctx) splits [0, n) into min(threads, n) contiguous chunks of nearly equal
// size — chunk i is [i·n/T, (i+1)·n/T) — runs body(ctx, begin, end) once per chunk, the calling
// thread taking chunk 0 and worker i chunk i, and returns when all have finished. The split
// depends only on n and the thread count, never on timing. Generated kernels make their results
// independent of the split too (every output element is computed by one chunk, in a fixed
// order), so a model trains bit-identically with any thread count.
//
// Workers run each job in the caller's floating-point mode (FloatMode.h: denormal flushing).
// Workers wait by spinning briefly, then sleeping on an atomic (futex); a call from inside a body
// (nested) runs serially on the calling thread. One parallelFor at a time per pool: calls from
// several threads are serialised.
#pragma once

#include "runtime/abi.h"

#include <atomic>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace mtlc::rt {

class ThreadPool {
 public:
  using Body = void (*)(void *ctx, int64_t begin, int64_t end);

  // A pool of `threads` threads in all: the caller plus threads − 1 workers (threads <= 1: none,
  // every call runs serially). threads = 0 means hardwareThreads().
  explicit ThreadPool(int threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool &) = delete;
  ThreadPool &operator=(const ThreadPool &) = delete;

  int threads() const { return threads_; }
  void parallelFor(int64_t n, Body body, void *ctx);

  // The C callback for mtlc_args::parallel_for (pool = this ThreadPool).
  static void parallelForC(void *pool, int64_t n, Body body, void *ctx);
  // Sets args' pool, parallel_for and threads fields to this pool.
  void attach(mtlc_args &args) {
    args.pool = this;
    args.parallel_for = &ThreadPool::parallelForC;
    args.threads = threads_;
  }

  // The CPUs this process may run on (sched_getaffinity), at least 1.
  static int hardwareThreads();

 private:
  void worker(int index);
  void runChunk(int index);

  int threads_;
  std::vector<std::thread> workers_;
  std::mutex callLock_;  // one parallelFor at a time
  // The current job, published by `generation_`.
  Body body_ = nullptr;
  void *ctx_ = nullptr;
  int64_t n_ = 0;
  int chunks_ = 0;
  uint32_t mode_ = 0;  // the caller's floating-point mode (FloatMode.h), set on each worker
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace mtlc::rt
