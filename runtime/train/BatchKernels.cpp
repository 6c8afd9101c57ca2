#include "runtime/train/BatchKernels.h"

#include "spec/Error.h"
#include "runtime/parallel/ThreadPool.h"
#include "runtime/train/Metrics.h"

#include <fmt/format.h>

#include <cmath>

namespace mtlc::rt {

namespace {

std::string describeValue(float v) { return std::isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf"; }

}  // namespace

void BatchKernels::begin(const Batcher& b, RowRange rows, int64_t step, int64_t epoch, uint64_t seed) {
  const size_t T = spec_.tasks.size();
  inputs_.resize(spec_.inputs.size());
  for (size_t k = 0; k < inputs_.size(); ++k) inputs_[k] = b.inputs()[k] + rows.begin * spec_.inputs[k].size;
  labels_.resize(T);
  for (size_t k = 0; k < T; ++k) labels_[k] = b.labels()[k] + rows.begin * spec_.tasks[k].labelWidth;
  outputs_.resize(ws_.outputPtrs.size());
  for (size_t k = 0; k < outputs_.size(); ++k)
    outputs_[k] = ws_.outputPtrs[k] + rows.begin * (k < T ? spec_.tasks[k].outWidth : spec_.repWidth);
  base_.inputs = inputs_.data();
  base_.labels = labels_.data();
  base_.outputs = outputs_.data();
  base_.n = rows.count;
  rowBegin_ = rows.begin;
  base_.seed = seed;
  step_ = step;
  epoch_ = epoch;
  for (size_t t = 0; t < T; ++t) present_[t] = labelledCount(spec_.tasks[t], labels_[t], rows.count);
}

std::string BatchKernels::locate() const {
  auto firstBad = [](const float* p, int64_t count) {
    for (int64_t i = 0; i < count; ++i)
      if (!std::isfinite(p[i])) return i;
    return int64_t(-1);
  };
  for (const ParamSpec& p : spec_.params)
    if (int64_t i = firstBad(base_.params + p.offset, p.size); i >= 0)
      return fmt::format("; parameter `{}` holds {} (element {}): the optimizer step before this one made it so "
                         "(a smaller lr or clip_grad_norm may help)", p.name, describeValue(base_.params[p.offset + i]), i);
  for (size_t k = 0; k < spec_.inputs.size(); ++k) {
    const InputSpec& in = spec_.inputs[k];
    if (int64_t i = firstBad(base_.inputs[k], base_.n * in.size); i >= 0)
      return fmt::format("; input `{}` holds {} in sample {} of the batch", in.name,
                         describeValue(base_.inputs[k][i]), rowBegin_ + i / in.size);
  }
  if (!spec_.locateNonFinite || !lastEntry_) return "";
  return spec_.locateNonFinite(lastEntry_, lastArgs_);
}

void BatchKernels::run(mtlc_entry_fn fn, const char* name, const float* w, float* grads) {
  if (!fn) throwError("internal: model `{}` has no {} entry point", spec_.name, name);
  mtlc_args args = base_;
  args.grads = grads;
  args.loss_weights = w;
  lastEntry_ = name;
  lastArgs_ = args;
  lastArgs_.grads_ready = nullptr;  // locate() reruns the call on this rank alone
  fn(&args);
  for (size_t t = 0; t < spec_.tasks.size(); ++t) {
    const float L = ws_.losses[t];
    if (!std::isfinite(L))
      throwError("task `{}` loss became {} at step {} (epoch {}){}", spec_.tasks[t].name,
                 std::isnan(L) ? "NaN" : "infinite", step_, epoch_, locate());
  }
}

void BatchKernels::keepingState(mtlc_entry_fn fn, const char* name, const float* w) {
  std::vector<float> state;
  for (const ParamSpec& p : spec_.params)
    if (p.state) state.insert(state.end(), base_.params + p.offset, base_.params + p.offset + p.size);
  run(fn, name, w, grads_);
  size_t at = 0;
  for (const ParamSpec& p : spec_.params)
    if (p.state) {
      std::copy_n(state.data() + at, p.size, base_.params + p.offset);
      at += size_t(p.size);
    }
}

std::vector<TaskResult> evaluateWith(const ModelSpec& spec, const float* params, const Dataset& data, Workspace& ws,
                                     ThreadPool* pool) {
  if (!spec.evalStep) throwError("internal: model `{}` has no eval_step entry point", spec.name);
  std::vector<MetricAccumulator> acc;
  for (const TaskSpec& t : spec.tasks) acc.emplace_back(t);
  Batcher batcher(data, spec.maxBatch, /*shuffle=*/false, 0);
  for (int64_t b = 0; b < batcher.batches(); ++b) {
    const int64_t n = batcher.gather(b, pool);
    mtlc_args args{};
    args.params = const_cast<float*>(params);  // evalStep only reads them
    args.grads = nullptr;
    args.acts = ws.acts.data();
    args.inputs = batcher.inputs();
    args.labels = batcher.labels();
    args.loss_weights = ws.weights.data();
    args.losses = ws.losses.data();
    args.outputs = ws.outputPtrs.data();
    args.n = n;
    args.seed = 0;
    if (pool) pool->attach(args);
    spec.evalStep(&args);
    for (size_t t = 0; t < spec.tasks.size(); ++t)
      acc[t].add(ws.outputPtrs[t], batcher.labels()[t], n, ws.losses[t]);
  }
  std::vector<TaskResult> results;
  for (size_t t = 0; t < spec.tasks.size(); ++t) results.push_back({spec.tasks[t].name, acc[t].result()});
  return results;
}

}  // namespace mtlc::rt
