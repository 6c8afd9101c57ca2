// Batching and shuffling: fixed permutations per (seed, epoch), the last partial batch kept.
#include "TestUtil.h"

#include "runtime/data/Batcher.h"
#include "runtime/core/Rng.h"
#include "runtime/parallel/ThreadPool.h"

#include <algorithm>
#include <numeric>

using namespace mtlc::rt;

namespace {

// 10 rows; input `x` [10, 2] = (r, 100 + r); label `y` [10, 1] = r.
Dataset rows10() {
  Dataset d;
  d.origin = "mem";
  d.rows = 10;
  Field x{"x", 2, {}}, y{"y", 1, {}};
  for (int r = 0; r < 10; ++r) x.data.push_back(float(r)), x.data.push_back(100.0f + r), y.data.push_back(float(r));
  d.inputs.push_back(x);
  d.labels.push_back(y);
  return d;
}

}  // namespace

TEST_CASE("Rng helpers are the documented functions of mt19937_64", "[batch]") {
  Rng a(42);
  // mt19937_64 with the default seed 5489 has 10000th output 9981545732273789042 (C++ standard).
  Rng def;
  def.discard(9999);
  CHECK(def() == 9981545732273789042ull);
  Rng b(42);
  const uint64_t raw = b();
  CHECK(uniform01(a) == double(raw >> 11) * 0x1.0p-53);
  for (int i = 0; i < 1000; ++i) {
    uint64_t v = uniformBelow(a, 7);
    REQUIRE(v < 7);
  }
}

TEST_CASE("shuffle: a permutation, fixed for (seed, epoch), different across epochs", "[batch]") {
  std::vector<int64_t> p = shuffledOrder(1000, 7);
  std::vector<int64_t> sorted = p;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int64_t> iota(1000);
  std::iota(iota.begin(), iota.end(), 0);
  CHECK(sorted == iota);
  CHECK(p != iota);
  CHECK(shuffledOrder(1000, 7) == p);
  CHECK(shuffledOrder(1000, 8) != p);
  // The exact order pins the algorithm (Fisher–Yates from the top, uniformBelow from mt19937_64):
  // any change to it changes every shuffled run.
  CHECK(shuffledOrder(10, 42) == shuffledOrder(10, 42));
  std::vector<int64_t> manual(10);
  std::iota(manual.begin(), manual.end(), 0);
  Rng rng(42);
  for (int64_t i = 9; i > 0; --i) std::swap(manual[i], manual[uniformBelow(rng, uint64_t(i) + 1)]);
  CHECK(shuffledOrder(10, 42) == manual);

  Dataset d = rows10();
  Batcher b1(d, 4, true, 100), b2(d, 4, true, 100);
  b1.startEpoch(3);
  b2.startEpoch(3);
  CHECK(b1.order() == b2.order());
  CHECK(b1.order() == shuffledOrder(10, 103));  // seed + epoch
  b2.startEpoch(4);
  CHECK(b1.order() != b2.order());
}

TEST_CASE("batches: file order without shuffle, gathered rows, last partial batch kept", "[batch]") {
  Dataset d = rows10();
  Batcher b(d, 4, false, 0);
  REQUIRE(b.batches() == 3);
  CHECK(b.gather(0) == 4);
  CHECK(std::vector<float>(b.inputs()[0], b.inputs()[0] + 8) == std::vector<float>{0, 100, 1, 101, 2, 102, 3, 103});
  CHECK(b.gather(2) == 2);
  CHECK(std::vector<float>(b.inputs()[0], b.inputs()[0] + 4) == std::vector<float>{8, 108, 9, 109});
  CHECK(std::vector<float>(b.labels()[0], b.labels()[0] + 2) == std::vector<float>{8, 9});

  // Shuffled: every row exactly once over an epoch, rows kept intact (x and y move together).
  Batcher s(d, 3, true, 5);
  s.startEpoch(1);
  std::vector<int> seen(10);
  int64_t total = 0;
  for (int64_t i = 0; i < s.batches(); ++i) {
    int64_t n = s.gather(i);
    total += n;
    for (int64_t k = 0; k < n; ++k) {
      int r = int(s.labels()[0][k]);
      seen[r]++;
      CHECK(s.inputs()[0][2 * k] == float(r));
      CHECK(s.inputs()[0][2 * k + 1] == 100.0f + r);
    }
  }
  CHECK(total == 10);
  CHECK(std::all_of(seen.begin(), seen.end(), [](int c) { return c == 1; }));
}

TEST_CASE("data set storage: 2 MiB-aligned from 2 MiB on (for huge pages), plain below", "[batch]") {
  HugeFloats big(size_t(3) << 19);  // 6 MiB
  CHECK(reinterpret_cast<uintptr_t>(big.data()) % HugePageAllocator<float>::kHugePageBytes == 0);
  for (size_t i = 0; i < big.size(); i += 4096) big[i] = float(i);
  CHECK(big[4096 * 100] == 409600.0f);
  HugeFloats small{1, 2, 3};
  CHECK(small == HugeFloats{1, 2, 3});
  // Growth crosses the threshold: contents survive reallocation into an aligned block.
  HugeFloats grown;
  for (int i = 0; i < (1 << 20); ++i) grown.push_back(float(i));
  CHECK(reinterpret_cast<uintptr_t>(grown.data()) % HugePageAllocator<float>::kHugePageBytes == 0);
  CHECK(grown[123456] == 123456.0f);
}

TEST_CASE("batches: prefetching on a pool gives the same batches, across epochs and skips", "[batch]") {
  Dataset d;
  d.origin = "mem";
  d.rows = 1000;
  Field x{"x", 40, {}}, y{"y", 1, {}};
  for (int r = 0; r < 1000; ++r) {
    for (int c = 0; c < 40; ++c) x.data.push_back(float(r * 40 + c));
    y.data.push_back(float(r));
  }
  d.inputs.push_back(x);
  d.labels.push_back(y);
  ThreadPool pool(2);
  Batcher plain(d, 64, true, 9), fetched(d, 64, true, 9);
  auto same = [&](int64_t n) {
    for (int64_t i = 0; i < n * 40; ++i) REQUIRE(plain.inputs()[0][i] == fetched.inputs()[0][i]);
    for (int64_t i = 0; i < n; ++i) REQUIRE(plain.labels()[0][i] == fetched.labels()[0][i]);
  };
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    plain.startEpoch(epoch);
    fetched.startEpoch(epoch);  // drops a prefetch of the old order (the last epoch's last one)
    for (int64_t b = 0; b < plain.batches(); ++b) {
      if (epoch == 1 && b == 5) continue;  // a skipped batch: the prefetched one is not used
      const int64_t n = plain.gather(b, &pool);
      REQUIRE(fetched.gather(b, &pool) == n);
      const float *before = fetched.inputs()[0];
      fetched.prefetch(b + 1, &pool);
      REQUIRE(fetched.inputs()[0] == before);  // the batch just gathered stays where it is
      same(n);
    }
    fetched.prefetch(0, &pool);  // in flight when the epoch changes
  }
  // Without a pool of two threads prefetch does nothing, and gather copies as before.
  ThreadPool one(1);
  Batcher serial(d, 64, true, 9);
  serial.prefetch(0, &one);
  plain.startEpoch(0);
  for (int64_t b = 0; b < 3; ++b) {
    const int64_t n = plain.gather(b, nullptr);
    REQUIRE(serial.gather(b, &one) == n);
    for (int64_t i = 0; i < n * 40; ++i) REQUIRE(plain.inputs()[0][i] == serial.inputs()[0][i]);
  }
}
