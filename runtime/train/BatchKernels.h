// What one step of training runs on: the buffers of a kernel call (Workspace) and the kernels over
// the current batch as the weighting strategies see them (BatchKernels, a StepKernels of
// Weighting.h), plus the evaluation loop over a whole dataset. Internal to train/.
#pragma once

#include "runtime/Arena.h"
#include "runtime/data/Batcher.h"
#include "runtime/parallel/Distributed.h"
#include "runtime/parallel/ThreadPool.h"
#include "runtime/train/Trainer.h"
#include "runtime/train/Weighting.h"
#include "spec/ModelSpec.h"

#include <algorithm>
#include <string>
#include <vector>

namespace mtlc::rt {

// The buffers one kernel call needs besides params/grads: activations, per-task outputs (then,
// for rep_grads, per-task gradients of the shared representation), losses.
struct Workspace {
  Arena acts;
  std::vector<Arena> outputs;
  std::vector<float*> outputPtrs;
  std::vector<float> losses, weights;
  explicit Workspace(const ModelSpec& spec, bool repGrads = false)
      : acts(spec.actsFloats), losses(spec.tasks.size() + 1), weights(lossWeights(spec)) {
    for (const TaskSpec& t : spec.tasks) outputs.emplace_back(spec.maxBatch * t.outWidth);
    if (repGrads)
      for (size_t t = 0; t < spec.tasks.size(); ++t) outputs.emplace_back(spec.maxBatch * spec.repWidth);
    for (Arena& a : outputs) outputPtrs.push_back(a.data());
  }
};

// The kernels over the current batch, for the weighting strategies (Weighting.h). Every call
// checks the task losses it produced. They run on `rows` of the gathered batch (all of it, or a
// rank's slice in data-parallel training: Distributed.h), reading and writing the batch buffers
// at those rows.
class BatchKernels final : public StepKernels {
 public:
  BatchKernels(const ModelSpec& spec, Workspace& ws, float* params, float* grads, Arena& taskGrads,
               ThreadPool& pool)
      : spec_(spec), ws_(ws), grads_(grads), taskGrads_(taskGrads), present_(spec.tasks.size()) {
    pool.attach(base_);
    base_.params = params;
    base_.acts = ws.acts.data();
    base_.losses = ws.losses.data();
  }
  void begin(const Batcher& b, RowRange rows, int64_t step, int64_t epoch, uint64_t seed);
  void trainStep(const float* w) override { run(spec_.trainStep, "train_step", w, grads_); }
  void taskGrads(const float* w) override {
    taskGrads_.zero();  // a task's gradient is zero where its loss does not reach
    run(spec_.taskGradsStep, "task_grads", w, taskGrads_.data());
  }
  void repGrads(const float* w) override {
    const size_t T = spec_.tasks.size();
    for (size_t t = 0; t < T; ++t) std::fill_n(outputs_[T + t], base_.n * spec_.repWidth, 0.0f);
    // MGDA-UB runs train_step after rep_grads in the same step, and both run the training
    // forward: batchnorm's running statistics must move once per step, so they are put back.
    keepingState(spec_.repGradsStep, "rep_grads", w);
  }
  void measureStep(const float* w) override { keepingState(spec_.trainStep, "train_step", w); }
  const float* losses() const override { return ws_.losses.data(); }
  float* grads() override { return grads_; }
  const float* taskGrad(int64_t t) const override { return taskGrads_.data() + t * spec_.paramCount; }
  const float* repGrad(int64_t t) const override { return outputs_[spec_.tasks.size() + size_t(t)]; }
  int64_t n() const override { return base_.n; }
  int64_t present(int64_t t) const override { return present_[size_t(t)]; }
  void reportGradsReady(void (*ready)(void*, int64_t, int64_t), void* ctx) override {
    base_.grads_ready = ready;
    base_.grads_ready_ctx = ctx;
  }

  // After a non-finite loss or gradient: "; <where it first appeared>", or "" when that cannot be
  // told. A parameter or an input that is already non-finite is named; otherwise the model's
  // locator (ModelSpec::locateNonFinite) re-runs the last kernel call with every tensor checked.
  std::string locate() const;

 private:
  void run(mtlc_entry_fn fn, const char* name, const float* w, float* grads);
  // run() into grads_, then batchnorm's running statistics (ParamSpec::state) put back.
  void keepingState(mtlc_entry_fn fn, const char* name, const float* w);
  const ModelSpec& spec_;
  Workspace& ws_;
  float* grads_;
  Arena& taskGrads_;
  mtlc_args base_{};
  std::vector<const float*> inputs_, labels_;
  std::vector<float*> outputs_;
  int64_t rowBegin_ = 0;  // the first row of the batch these kernels run on
  std::vector<int64_t> present_;
  int64_t step_ = 0, epoch_ = 0;
  const char* lastEntry_ = nullptr;  // the last kernel call, for locate()
  mtlc_args lastArgs_{};
};

// Runs spec.evalStep over `data` in file order, in batches of spec.maxBatch, with ws's buffers.
std::vector<TaskResult> evaluateWith(const ModelSpec& spec, const float* params, const Dataset& data, Workspace& ws,
                                     ThreadPool* pool);

}  // namespace mtlc::rt
