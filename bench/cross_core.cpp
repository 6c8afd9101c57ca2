// cross_core: what it costs to read data another core has just written, against reading data
// the core wrote (or read) itself. One thread pinned to CPU 0 writes a buffer; a thread pinned to
// CPU 1 then reads it once (every cache line comes from the other core) and once more (now from
// its own cache). This is the traffic between kernels that split a step's tensors differently
// (README, Benchmarks: threads).
//
//   cross_core [MiB (default 1)] [rounds (default 200)]
#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

bool pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0;
}

double usSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
}

}  // namespace

int main(int argc, char **argv) {
  const double mib = argc > 1 ? std::atof(argv[1]) : 1.0;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 200;
  const size_t floats = size_t(mib * 1024 * 1024 / sizeof(float));
  if (floats < 16 || rounds < 1) {
    std::fprintf(stderr, "usage: cross_core [MiB] [rounds]\n");
    return 2;
  }
  std::vector<float> buffer(floats, 1.f);
  std::atomic<int> turn{0};  // even: the writer's turn for round turn/2, odd: the reader's
  double remoteUs = 0, localUs = 0;
  volatile float sink = 0;
  bool readerPinned = false, writerPinned = false;  // each written by its own thread
  std::thread reader([&] {
    readerPinned = pin(1);
    for (int r = 0; r < rounds; ++r) {
      while (turn.load(std::memory_order_acquire) != 2 * r + 1) {}
      float acc = 0;
      auto t0 = Clock::now();
      for (size_t i = 0; i < floats; i += 16) acc += buffer[i];  // one load per 64-byte line
      remoteUs += usSince(t0);
      t0 = Clock::now();
      for (size_t i = 0; i < floats; i += 16) acc += buffer[i];
      localUs += usSince(t0);
      sink = sink + acc;
      turn.store(2 * r + 2, std::memory_order_release);
    }
  });
  writerPinned = pin(0);
  for (int r = 0; r < rounds; ++r) {
    while (turn.load(std::memory_order_acquire) != 2 * r) {}
    for (size_t i = 0; i < floats; ++i) buffer[i] = float(r) + float(i & 1023);
    turn.store(2 * r + 1, std::memory_order_release);
  }
  reader.join();
  const double bytes = double(floats) * sizeof(float);
  std::printf("%.2f MiB written on CPU 0%s: read on CPU 1 in %.1f us (%.1f GB/s), read again in %.1f us (%.1f GB/s)\n",
              mib, readerPinned && writerPinned ? "" : " (not pinned: fewer than 2 CPUs?)", remoteUs / rounds,
              bytes / (remoteUs / rounds) / 1e3, localUs / rounds, bytes / (localUs / rounds) / 1e3);
  return 0;
}
