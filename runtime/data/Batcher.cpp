#include "runtime/data/Batcher.h"

#include "spec/Error.h"
#include "runtime/core/Rng.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <numeric>

namespace mtlc::rt {

std::vector<int64_t> shuffledOrder(int64_t n, uint64_t seed) {
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  Rng rng(seed);
  for (int64_t i = n - 1; i > 0; --i) std::swap(order[i], order[uniformBelow(rng, uint64_t(i) + 1)]);
  return order;
}

Batcher::Batcher(const Dataset& data, int64_t batch, bool shuffle, uint64_t seed)
    : data_(data), batch_(batch), shuffle_(shuffle), seed_(seed) {
  if (batch < 1) throwError("batch size must be at least 1, got {}", batch);
  allocate(sets_[0]);
  startEpoch(0);
}

Batcher::~Batcher() { finishPrefetch(); }

void Batcher::allocate(Buffers& set) {
  auto alloc = [&](const std::vector<Field>& fields, std::vector<std::vector<float>>& bufs,
                   std::vector<const float*>& ptrs) {
    for (const Field& f : fields) bufs.emplace_back(size_t(batch_) * f.width);
    for (auto& b : bufs) ptrs.push_back(b.data());
  };
  alloc(data_.inputs, set.inputs, set.inputPtrs);
  alloc(data_.labels, set.labels, set.labelPtrs);
}

void Batcher::finishPrefetch() {
  if (prefetched_ < 0) return;
  prefetchPool_->finishBackground();
  prefetched_ = -1;
}

void Batcher::throwIfReadFailed() const {
  if (const int err = readErrno_.load()) throwError("{}: cannot read its samples: {}", data_.origin, std::strerror(err));
}

void Batcher::startEpoch(int64_t epoch) {
  finishPrefetch();  // its rows came from the old order
  if (shuffle_) {
    order_ = shuffledOrder(data_.rows, seed_ + uint64_t(epoch));
  } else {
    order_.resize(data_.rows);
    std::iota(order_.begin(), order_.end(), 0);
  }
}

// Rows [i0, i1) of the job's batch, every input and label, into its buffer set. Random rows of
// the data set are memory-latency bound, so a second core nearly halves the time, and each
// thread's rows then sit in its own cache for the kernels that split the batch the same way.
void Batcher::copyRows(void* ctx, int64_t i0, int64_t i1) {
  const Job& j = *static_cast<const Job*>(ctx);
  Batcher& self = *j.self;
  auto copy = [&](const std::vector<Field>& fields, std::vector<std::vector<float>>& bufs) {
    for (size_t k = 0; k < fields.size(); ++k) {
      const int64_t w = fields[k].width;
      if (fields[k].data.isView()) {
        for (int64_t i = i0; i < i1; ++i)
          if (!fields[k].data.readFloats(size_t(self.order_[j.first + i] * w), size_t(w), bufs[k].data() + i * w))
            self.readErrno_.store(errno);
        continue;
      }
      const float* src = fields[k].data.data();
      float* dst = bufs[k].data();
      // The rows are random, so the hardware prefetcher only starts on a row when its copy
      // does: ask for the row kAhead ahead while this one is copied, to overlap their misses.
      constexpr int64_t kAhead = 4;
      auto rowOf = [&](int64_t i) { return src + self.order_[j.first + i] * w; };
      for (int64_t i = i0; i < std::min(i1, i0 + kAhead); ++i)
        for (int64_t c = 0; c < w; c += 16) __builtin_prefetch(rowOf(i) + c);
      for (int64_t i = i0; i < i1; ++i) {
        if (i + kAhead < i1)
          for (int64_t c = 0; c < w; c += 16) __builtin_prefetch(rowOf(i + kAhead) + c);
        std::memcpy(dst + i * w, rowOf(i), size_t(w) * sizeof(float));
      }
    }
  };
  copy(self.data_.inputs, self.sets_[j.set].inputs);
  copy(self.data_.labels, self.sets_[j.set].labels);
}

int64_t Batcher::gather(int64_t b, ThreadPool* pool) {
  const int64_t first = b * batch_, n = std::min(batch_, data_.rows - first);
  const bool hit = prefetched_ == b;
  finishPrefetch();
  throwIfReadFailed();
  if (hit) {
    cur_ ^= 1;
    return n;
  }
  Job job{this, first, cur_};
  int64_t rowFloats = 0;
  for (const Field& f : data_.inputs) rowFloats += f.width;
  if (pool && n * rowFloats >= kParallelFloats) pool->parallelFor(n, copyRows, &job);
  else copyRows(&job, 0, n);
  throwIfReadFailed();
  return n;
}

void Batcher::prefetch(int64_t b, ThreadPool* pool) {
  if (!pool || pool->threads() < 2 || b < 0 || b >= batches()) return;
  finishPrefetch();
  Buffers& spare = sets_[cur_ ^ 1];
  if (spare.inputPtrs.empty() && spare.labelPtrs.empty()) allocate(spare);
  prefetchJob_ = Job{this, b * batch_, cur_ ^ 1};
  // Two rows a chunk (about a microsecond): a worker finishes its chunk before it takes a
  // kernel's parallel job, so chunks stay short.
  pool->startBackground(std::min(batch_, data_.rows - b * batch_), 2, copyRows, &prefetchJob_);
  prefetched_ = b;
  prefetchPool_ = pool;
}

}  // namespace mtlc::rt
