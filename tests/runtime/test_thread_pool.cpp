// runtime/parallel/ThreadPool: the split is exactly [i·n/T, (i+1)·n/T), every index runs once, chunks run
// concurrently on distinct threads, nested calls run serially, and the C callback matches abi.h.
#include "runtime/parallel/ThreadPool.h"

#include <catch2/catch.hpp>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

using mtlc::rt::ThreadPool;

namespace {

struct Record {
  std::mutex lock;
  std::vector<std::pair<int64_t, int64_t>> ranges;
  std::set<std::thread::id> threads;
  std::vector<std::atomic<int>> hits;
  explicit Record(int64_t n) : hits(n) {}
};

void recordBody(void *ctx, int64_t begin, int64_t end) {
  auto *r = static_cast<Record *>(ctx);
  for (int64_t i = begin; i < end; ++i) r->hits[i]++;
  std::lock_guard<std::mutex> g(r->lock);
  r->ranges.push_back({begin, end});
  r->threads.insert(std::this_thread::get_id());
}

}  // namespace

TEST_CASE("thread pool: contiguous, deterministic chunks covering [0, n) once", "[runtime][threads]") {
  for (int threads : {1, 2, 3, 4, 7})
    for (int64_t n : {1, 2, 3, 5, 8, 100, 1001}) {
      ThreadPool pool(threads);
      Record r(n);
      pool.parallelFor(n, recordBody, &r);
      for (int64_t i = 0; i < n; ++i) REQUIRE(r.hits[i] == 1);
      int64_t chunks = std::min<int64_t>(threads, n);
      std::set<std::pair<int64_t, int64_t>> want;
      for (int64_t c = 0; c < chunks; ++c) want.insert({n * c / chunks, n * (c + 1) / chunks});
      if (threads <= 1 || n == 1) want = {{0, n}};
      std::set<std::pair<int64_t, int64_t>> got(r.ranges.begin(), r.ranges.end());
      INFO("threads " << threads << ", n " << n);
      CHECK(got == want);
      CHECK(r.threads.size() == want.size());  // one chunk per thread
    }
}

TEST_CASE("thread pool: many calls in a row, and n = 0", "[runtime][threads]") {
  ThreadPool pool(3);
  Record r(64);
  for (int call = 0; call < 2000; ++call) pool.parallelFor(64, recordBody, &r);
  for (int64_t i = 0; i < 64; ++i) CHECK(r.hits[i] == 2000);
  pool.parallelFor(0, recordBody, &r);  // nothing to do
  CHECK(r.hits[0] == 2000);
}

TEST_CASE("thread pool: a call from inside a body runs serially on that thread", "[runtime][threads]") {
  ThreadPool pool(4);
  struct Outer {
    ThreadPool *pool;
    std::atomic<int> inner{0};
  } outer{&pool};
  pool.parallelFor(4, [](void *ctx, int64_t, int64_t) {
    auto *o = static_cast<Outer *>(ctx);
    std::thread::id me = std::this_thread::get_id();
    struct Inner {
      std::thread::id caller;
      bool sameThread = true;
      int64_t covered = 0;
    } in{me};
    o->pool->parallelFor(10, [](void *c, int64_t b, int64_t e) {
      auto *i = static_cast<Inner *>(c);
      i->sameThread = i->sameThread && std::this_thread::get_id() == i->caller;
      i->covered += e - b;
    }, &in);
    if (in.sameThread && in.covered == 10) o->inner++;
  }, &outer);
  CHECK(outer.inner == 4);
}

TEST_CASE("thread pool: the abi callback and attach", "[runtime][threads]") {
  ThreadPool pool(2);
  mtlc_args args{};
  pool.attach(args);
  CHECK(args.pool == &pool);
  CHECK(args.threads == 2);
  Record r(10);
  args.parallel_for(args.pool, 10, recordBody, &r);
  for (int64_t i = 0; i < 10; ++i) CHECK(r.hits[i] == 1);
  CHECK(ThreadPool::hardwareThreads() >= 1);
  ThreadPool all;  // default: every CPU this process may use
  CHECK(all.threads() == ThreadPool::hardwareThreads());
}

TEST_CASE("thread pool: background work runs every index once, alongside parallelFor jobs", "[runtime][threads]") {
  for (int threads : {1, 2, 3}) {
    INFO(threads << " threads");
    ThreadPool pool(threads);
    for (int round = 0; round < 20; ++round) {
      Record background(1000), jobs(64);
      pool.startBackground(1000, 3, recordBody, &background);
      // Kernels keep coming while the workers take background chunks between them.
      for (int call = 0; call < 10; ++call) pool.parallelFor(64, recordBody, &jobs);
      pool.finishBackground();
      for (int64_t i = 0; i < 1000; ++i) REQUIRE(background.hits[i] == 1);
      for (int64_t i = 0; i < 64; ++i) REQUIRE(jobs.hits[i] == 10);
    }
    // Starting a job finishes the one before; finishing twice, or with none, does nothing.
    Record a(100), b(100);
    pool.startBackground(100, 1, recordBody, &a);
    pool.startBackground(100, 7, recordBody, &b);
    pool.finishBackground();
    pool.finishBackground();
    for (int64_t i = 0; i < 100; ++i) REQUIRE((a.hits[i] == 1 && b.hits[i] == 1));
  }
}

TEST_CASE("thread pool: idle workers take background chunks before it is finished", "[runtime][threads]") {
  ThreadPool pool(2);
  Record r(200);
  pool.startBackground(200, 1, recordBody, &r);
  // The worker drains the job on its own; the caller only waits for it here.
  for (int spin = 0; spin < 2000000; ++spin) {
    int64_t done = 0;
    for (int64_t i = 0; i < 200; ++i) done += r.hits[i];
    if (done == 200) break;
    std::this_thread::yield();
  }
  pool.finishBackground();
  for (int64_t i = 0; i < 200; ++i) REQUIRE(r.hits[i] == 1);
  CHECK(r.threads.count(std::this_thread::get_id()) == 0);  // every chunk ran on the worker
}
