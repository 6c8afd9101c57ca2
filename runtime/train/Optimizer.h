// Optimizers over the flat parameter arena, with exactly torch.optim's update rules (torch 1.13,
// single-tensor path, float32 arithmetic; dampening 0, no amsgrad, rmsprop not centered). The
// operations and their order are torch's (runtime/core/Update.cpp has the loops); results agree to
// float rounding (torch's vectorised CPU kernels fuse some multiply-adds, so the last bit can
// differ; sgd is bit-identical in the tests). `lr` is the step's learning rate:
//
//   sgd(lr, momentum, nesterov, weight_decay):
//     g = grad + weight_decay·p
//     if momentum ≠ 0:  buf = g on the first step, else buf = momentum·buf + g
//                       g = g + momentum·buf with nesterov, else g = buf
//     p = p − lr·g
//
//   adam(lr, beta1, beta2, eps, weight_decay)   (L2 decay added to the gradient):
//     t = t + 1;  g = grad + weight_decay·p
//     m = beta1·m + (1 − beta1)·g
//     v = beta2·v + (1 − beta2)·g²
//     p = p − (lr / (1 − beta1^t)) · m / (sqrt(v) / sqrt(1 − beta2^t) + eps)
//     (eps is added after the bias-corrected square root, as torch does.)
//
//   adamw(lr, beta1, beta2, eps, weight_decay)  (decoupled decay, torch.optim.AdamW):
//     p = p·(1 − lr·weight_decay), then adam's step with g = grad
//
//   rmsprop(lr, alpha, eps, momentum, weight_decay):
//     g = grad + weight_decay·p
//     s = alpha·s + (1 − alpha)·g²;  d = sqrt(s) + eps
//     momentum > 0:  buf = momentum·buf + g/d (buf starts at 0);  p = p − lr·buf
//     else:          p = p − lr·g/d
//
// Checkpoint state (flat float tensors of paramCount elements, plus the step count):
//   optim.step        [1]           optimizer steps taken so far (float, exact up to 2^24)
//   optim.momentum    [paramCount]  sgd with momentum ≠ 0, rmsprop with momentum > 0: the buffer
//   optim.m           [paramCount]  adam, adamw: first moment (torch's exp_avg)
//   optim.v           [paramCount]  adam, adamw: second moment (torch's exp_avg_sq)
//   optim.square_avg  [paramCount]  rmsprop: torch's square_avg
#pragma once

#include "runtime/Arena.h"
#include "runtime/core/Spans.h"
#include "runtime/core/Update.h"
#include "spec/ModelSpec.h"

#include <string>
#include <utility>
#include <vector>

namespace mtlc::rt {

class ThreadPool;

class Optimizer {
 public:
  Optimizer(const OptimizerSpec& spec, int64_t paramCount);

  // One update of params from grads, over the active spans (by default all of [0, paramCount)):
  // one loop over the arena. With a pool, large spans are split across its threads in fixed
  // blocks; every element's update is the same arithmetic, so results do not depend on it.
  void step(float* params, const float* grads, ThreadPool* pool = nullptr);

  // Restricts updates to these [begin, end) element ranges: frozen parameters (`freeze BLOCK`)
  // are left out, so, as with requires_grad=False in torch, neither they nor their state change.
  // `scales[i]` (empty: 1 for all) multiplies the learning rate of span i (`lr_scale`: torch's
  // param groups with lr·F; F = 0 leaves the parameters as they are but still updates their state).
  void setActiveSpans(std::vector<std::pair<int64_t, int64_t>> spans, std::vector<double> scales = {});

  int64_t steps() const { return steps_; }
  const OptimizerSpec& spec() const { return spec_; }
  // The learning rate of the next steps (a schedule's or warm-up's; spec().lr until set).
  void setLr(double lr) { rule_.lr = lr; }
  double lr() const { return rule_.lr; }

  // Named state for checkpoints (see above). The pointers stay valid for the optimizer's life.
  struct StateTensor {
    std::string name;
    float* data;
    int64_t size;
  };
  std::vector<StateTensor> state();
  // Sets the step count (the value of optim.step after loading it).
  void setSteps(int64_t steps) { steps_ = steps; stepTensor_ = float(steps); }

 private:
  OptimizerSpec spec_;
  int64_t count_;
  int64_t steps_ = 0;
  float stepTensor_ = 0;  // optim.step as saved
  core::UpdateRule rule_;
  core::StateLayout layout_;
  Arena a_, b_;           // the state arrays of layout_ (core/Update.h)
  std::vector<std::pair<int64_t, int64_t>> spans_;
  std::vector<double> scales_;  // one per span
};

// The active spans of a model: its learnable parameters (neither frozen nor state, such as
// batchnorm's running statistics), adjacent ones merged; one span [0, paramCount) when all are.
std::vector<std::pair<int64_t, int64_t>> trainableSpans(const ModelSpec& spec);
// Every parameter's extent in the arena, in the table's order; frozen: not learnt.
std::vector<core::ParamExtent> paramExtents(const ModelSpec& spec);

// trainableSpans cut where `lr_scale` changes (spec.train.lrScale, by ParamSpec::block), with
// each piece's learning-rate multiplier (1 for a block not listed).
struct ParamGroups {
  std::vector<std::pair<int64_t, int64_t>> spans;
  std::vector<double> scales;
};
ParamGroups trainableGroups(const ModelSpec& spec);

// The core update rule of an optimizer's settings.
core::UpdateRule updateRule(const OptimizerSpec& spec);

// Gradient clipping by the global L2 norm over `spans` of grads (torch.nn.utils.clip_grad_norm_):
// when ‖g‖ > maxNorm, g is scaled by maxNorm / (‖g‖ + 1e-6). Returns ‖g‖ before clipping (NaN or
// Inf when a gradient is; then g is left as it is).
double clipGradNorm(float* grads, const std::vector<std::pair<int64_t, int64_t>>& spans, double maxNorm);

}  // namespace mtlc::rt
