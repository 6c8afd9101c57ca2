// A small fixed thread pool for the generated kernels (mtlc_args::parallel_for, spec/abi.h).
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
//
// Background work (startBackground): a job whose chunks idle workers take while they wait for
// the next parallelFor, so it fills the time a step leaves them idle (serial kernels, the
// caller's own code); a worker finishes its chunk before it takes a parallelFor job, so chunks
// should be short (a few µs). finishBackground runs what is left on the calling thread, with
// the idle workers, and returns when every chunk has finished. For copies (the next batch's
// gather): the chunks run in whatever floating-point mode a worker is in.
#pragma once

#include "spec/abi.h"

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

  // Background work: body(ctx, begin, end) over [0, n) in chunks of `chunk`, each exactly once,
  // by idle workers; finishBackground() completes it. One background job at a time: starting one
  // finishes the previous. Without workers nothing runs until finishBackground.
  void startBackground(int64_t n, int64_t chunk, Body body, void *ctx);
  void finishBackground();

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
  bool runBackgroundChunk();  // claims and runs one chunk of the background job; false if none

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
  std::atomic<uint32_t> wake_{0};  // bumped by every job and background job: what workers sleep on
  // The background job, published by bgActive_. Workers count themselves in bgInside_ while they
  // look at it, so finishBackground can tell when none can still touch it.
  Body bgBody_ = nullptr;
  void *bgCtx_ = nullptr;
  int64_t bgChunk_ = 1;
  std::atomic<int64_t> bgCount_{0}, bgNext_{0}, bgDone_{0};
  std::atomic<bool> bgActive_{false};
  std::atomic<int> bgInside_{0};
};

}  // namespace mtlc::rt
