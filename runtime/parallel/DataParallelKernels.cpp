// The global-batch step on many ranks (Distributed.h): scale, run the slice, combine.
#include "runtime/parallel/Distributed.h"

#include "spec/Error.h"
#include "runtime/train/Metrics.h"
#include "runtime/core/Rng.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace mtlc::rt {

RowRange rowsOf(int64_t n, int rank, int ranks) {
  const int64_t base = n / ranks, extra = n % ranks;
  const int64_t r = rank;
  return {r * base + std::min(r, extra), base + (r < extra ? 1 : 0)};
}

std::string describeSlices(const Communicator& comm, int64_t batch) {
  const int64_t small = batch / comm.size(), large = (batch + comm.size() - 1) / comm.size();
  const std::string settings = comm.settings();
  return fmt::format("data-parallel: {} ranks, each computing {} rows of every batch of {}{}", comm.size(),
                     small == large ? fmt::format("{}", small) : fmt::format("{} or {}", small, large), batch,
                     settings.empty() ? "" : fmt::format(" ({})", settings));
}

std::string describeCollectives(const Communicator& comm, int64_t steps, double loopSeconds) {
  const double s = comm.collectiveSeconds();
  return fmt::format("data-parallel: {:.2f} ms/step ({:.0f}%) in collectives on rank {} (transfers and waiting for "
                     "the other ranks)",
                     steps > 0 ? 1e3 * s / double(steps) : 0.0, loopSeconds > 0 ? 100 * s / loopSeconds : 0.0,
                     comm.rank());
}

DataParallelKernels::DataParallelKernels(const ModelSpec& spec, Communicator& comm, StepKernels& local,
                                         StepBuffers buffers)
    : spec_(spec), comm_(comm), local_(local), buffers_(buffers), globalPresent_(spec.tasks.size()),
      factor_(spec.tasks.size()), scaled_(spec.tasks.size()) {
  for (const TaskSpec& t : spec.tasks) {
    headWidths_.push_back(t.outWidth);
    repWidths_.push_back(spec.repWidth);
  }
}

void DataParallelKernels::begin(const float* const* labels, int64_t n) {
  n_ = n;
  rows_ = rowsOf(n, comm_.rank(), comm_.size());
  for (size_t t = 0; t < spec_.tasks.size(); ++t) {
    const int64_t w = spec_.tasks[t].labelWidth;
    const int64_t all = labelledCount(spec_.tasks[t], labels[t], n);
    const int64_t mine = labelledCount(spec_.tasks[t], labels[t] + rows_.begin * w, rows_.count);
    globalPresent_[t] = all;
    factor_[t] = all > 0 ? double(mine) / double(all) : 0.0;
  }
}

uint64_t DataParallelKernels::dropoutSeed(uint64_t stepSeed) const {
  const int r = comm_.rank();
  return r == 0 ? stepSeed : mix64(stepSeed ^ (uint64_t(r) * 0x9E3779B97F4A7C15ull));
}

void DataParallelKernels::checkInSync(const float* params, int64_t epoch) {
  rootParams_.assign(params, params + spec_.paramCount);
  comm_.broadcastFromRoot(rootParams_.data(), spec_.paramCount);
  int64_t differ = 0;
  double worst = 0;
  for (int64_t p = 0; p < spec_.paramCount; ++p)
    if (std::memcmp(&rootParams_[size_t(p)], &params[p], sizeof(float)) != 0) {
      ++differ;
      worst = std::max(worst, std::fabs(double(rootParams_[size_t(p)]) - double(params[p])));
    }
  if (differ)
    throwError("internal: rank {} of {}: after epoch {}, {} of {} parameters differ from rank 0's (by up to {:g}); "
               "the ranks no longer train one model",
               comm_.rank(), comm_.size(), epoch, differ, spec_.paramCount, worst);
}

void DataParallelKernels::syncState(float* params) {
  state_.clear();
  for (const ParamSpec& p : spec_.params)
    if (p.state) state_.insert(state_.end(), params + p.offset, params + p.offset + p.size);
  if (state_.empty()) return;
  comm_.broadcastFromRoot(state_.data(), int64_t(state_.size()));  // bits: num_batches_tracked is an i64
  size_t at = 0;
  for (const ParamSpec& p : spec_.params)
    if (p.state) {
      std::copy_n(state_.data() + at, p.size, params + p.offset);
      at += size_t(p.size);
    }
}

void DataParallelKernels::trainStepOf(const float* w, bool measure) {
  const size_t T = spec_.tasks.size();
  for (size_t t = 0; t < T; ++t) scaled_[t] = float(double(w[t]) * factor_[t]);
  comm_.overlapBegin(buffers_.grads, spec_.paramCount);
  if (rows_.count > 0) {
    // The gradient sum starts while the backward pass still runs: the last layers' first.
    local_.reportGradsReady(&DataParallelKernels::gradsReady, this);
    struct Stop {
      StepKernels& k;
      ~Stop() { k.reportGradsReady(nullptr, nullptr); }
    } stop{local_};
    if (measure) local_.measureStep(scaled_.data());
    else local_.trainStep(scaled_.data());
  } else {  // nothing of this batch here: contribute zeros
    std::fill_n(buffers_.grads, spec_.paramCount, 0.0f);
    std::fill_n(buffers_.losses, T, 0.0f);
  }
  comm_.overlapFinish();
  startLosses();
  startGatherRows(0, T, headWidths_);
  comm_.complete();
  finishLosses(w);
}

void DataParallelKernels::gradsReady(void* self, int64_t begin, int64_t end) {
  static_cast<DataParallelKernels*>(self)->comm_.overlapReady(begin, end);
}

void DataParallelKernels::taskGrads(const float* w) {
  const size_t T = spec_.tasks.size();
  const int64_t P = spec_.paramCount;
  if (rows_.count > 0) {
    local_.taskGrads(w);  // unweighted per-task gradients of the slice's means
    for (size_t t = 0; t < T; ++t) {
      float* g = buffers_.taskGrads + int64_t(t) * P;
      const float f = float(factor_[t]);
      for (int64_t p = 0; p < P; ++p) g[p] *= f;
    }
  } else {
    std::fill_n(buffers_.taskGrads, int64_t(T) * P, 0.0f);
    std::fill_n(buffers_.losses, T, 0.0f);
  }
  comm_.startSum(buffers_.taskGrads, int64_t(T) * P);
  startLosses();
  startGatherRows(0, T, headWidths_);
  comm_.complete();
  finishLosses(w);
}

void DataParallelKernels::repGrads(const float* w) {
  const size_t T = spec_.tasks.size();
  if (rows_.count > 0) {
    local_.repGrads(w);
    // Row j of task t's ∂L_t/∂Z for the global mean is (1/P_t)·∂l/∂z_j; the slice gave (1/p_t)·∂l/∂z_j.
    for (size_t t = 0; t < T; ++t) {
      float* g = (*buffers_.outputs)[T + t] + rows_.begin * spec_.repWidth;
      const float f = float(factor_[t]);
      for (int64_t i = 0; i < rows_.count * spec_.repWidth; ++i) g[i] *= f;
    }
  } else {
    std::fill_n(buffers_.losses, T, 0.0f);
  }
  startLosses();
  startGatherRows(0, T, headWidths_);
  startGatherRows(T, T, repWidths_);
  comm_.complete();
  finishLosses(w);
}

void DataParallelKernels::startLosses() {
  const size_t T = spec_.tasks.size();
  lossSum_.resize(T);
  for (size_t t = 0; t < T; ++t) lossSum_[t] = factor_[t] > 0 ? factor_[t] * double(buffers_.losses[t]) : 0.0;
  comm_.startSum(lossSum_.data(), int64_t(T));
}

void DataParallelKernels::finishLosses(const float* w) {
  const size_t T = spec_.tasks.size();
  double total = 0;
  for (size_t t = 0; t < T; ++t) {
    buffers_.losses[t] = float(lossSum_[t]);
    total += double(w[t]) * lossSum_[t];
  }
  buffers_.losses[T] = float(total);
}

void DataParallelKernels::startGatherRows(size_t first, size_t count, const std::vector<int64_t>& widths) {
  const int ranks = comm_.size();
  std::vector<int64_t> counts(static_cast<size_t>(ranks));
  for (size_t k = 0; k < count; ++k) {
    for (int r = 0; r < ranks; ++r) counts[size_t(r)] = rowsOf(n_, r, ranks).count * widths[k];
    comm_.startGather((*buffers_.outputs)[first + k], counts);
  }
}

}  // namespace mtlc::rt
