// The parts the weighting strategies share (runtime/train/Weighting*.cpp): the shared parameters
// gradient methods act on, combinations of task gradients, a strategy's own optimizer and its
// checkpoint state, its arguments. Internal to the trainer; tests reach them through Weighting.h.
#pragma once

#include "runtime/train/Weighting.h"

#include <memory>
#include <utility>
#include <vector>

namespace mtlc::rt {

using Span = std::pair<int64_t, int64_t>;  // [begin, end) element range in the parameter arena

// The trainable shared parameters: what gradient surgery acts on. Shared = reached by two or more
// tasks' losses (a task's own gate is not, as in LibMTL) and not frozen. Sorted by offset.
std::vector<Span> sharedSpans(const ModelSpec& spec);

// Σ a[k]·b[k] over the spans, in double.
double dotOver(const std::vector<Span>& spans, const float* a, const float* b);

// k.grads() = Σ_t w_t·taskGrad(t) over the whole arena of P parameters.
void combineTaskGrads(StepKernels& k, const std::vector<float>& w, int64_t P);

// Σ_t w_t·L_t.
double weightedTotal(const std::vector<float>& w, const float* losses);

// The optimizer of a strategy's own few numbers: the model's kind and hyperparameters, no decay.
OptimizerSpec ownOptimizer(const ModelSpec& spec);

// Its state in checkpoints, `mtl.optim.step`, `mtl.optim.m`, ...; and after loading, the step
// count restored from `optim.step`.
void appendOptimizerState(std::vector<WeightingState>& out, Optimizer& opt);
void restoreSteps(Optimizer& opt);

// The strategy's argument `name` (a row argument of spec.train.weighting): as the program gave it,
// else the row's default. A true/false argument is 1 or 0.
double weightingArg(const ModelSpec& spec, const char* name);

// A measureStep (batchnorm's running statistics left alone) with loss weights 1 to learn this
// step's losses before the weights that depend on them are known (its gradient is overwritten by
// the next call). Returns, per task, whether it is
// present: a label in the batch and, when `positive`, L_t > 0 (so that a log of it is finite).
std::vector<bool> measureLosses(StepKernels& k, int64_t T, bool positive);

// The loss-level methods of runtime/train/LossMethods.cpp (rlw, gls, stch, famo).
std::unique_ptr<Weighting> createLossMethod(const ModelSpec& spec, uint64_t seed);

}  // namespace mtlc::rt
