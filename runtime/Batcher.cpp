#include "runtime/Batcher.h"

#include "runtime/Error.h"
#include "runtime/Rng.h"

#include <algorithm>
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
  auto alloc = [&](const std::vector<Field>& fields, std::vector<std::vector<float>>& bufs,
                   std::vector<const float*>& ptrs) {
    for (const Field& f : fields) bufs.emplace_back(size_t(batch) * f.width);
    for (auto& b : bufs) ptrs.push_back(b.data());
  };
  alloc(data.inputs, inputBufs_, inputPtrs_);
  alloc(data.labels, labelBufs_, labelPtrs_);
  startEpoch(0);
}

void Batcher::startEpoch(int64_t epoch) {
  if (shuffle_) {
    order_ = shuffledOrder(data_.rows, seed_ + uint64_t(epoch));
  } else {
    order_.resize(data_.rows);
    std::iota(order_.begin(), order_.end(), 0);
  }
}

int64_t Batcher::gather(int64_t b, ThreadPool* pool) {
  struct Job {
    Batcher* self;
    int64_t first;
  } job{this, b * batch_};
  const int64_t n = std::min(batch_, data_.rows - job.first);
  // Rows [i0, i1) of every input and label: random rows of the data set are memory-latency bound,
  // so a second core nearly halves the time, and each thread's rows then sit in its own cache
  // for the kernels that split the batch the same way.
  auto rows = [](void* ctx, int64_t i0, int64_t i1) {
    const Job& j = *static_cast<const Job*>(ctx);
    Batcher& self = *j.self;
    auto copy = [&](const std::vector<Field>& fields, std::vector<std::vector<float>>& bufs) {
      for (size_t k = 0; k < fields.size(); ++k) {
        const int64_t w = fields[k].width;
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
    copy(self.data_.inputs, self.inputBufs_);
    copy(self.data_.labels, self.labelBufs_);
  };
  int64_t rowFloats = 0;
  for (const Field& f : data_.inputs) rowFloats += f.width;
  if (pool && n * rowFloats >= kParallelFloats) pool->parallelFor(n, rows, &job);
  else rows(&job, 0, n);
  return n;
}

}  // namespace mtlc::rt
