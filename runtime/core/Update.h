// The optimizers' update rules over one contiguous range of the parameter arena: one plain loop
// each, exactly torch.optim's (torch 1.13, single-tensor path, float32 arithmetic; dampening 0, no
// amsgrad, rmsprop not centered). The trainer's Optimizer (train/Optimizer.h, which documents the
// rules and their state) splits the arena into blocks across threads and calls update() on each;
// the embedded runtime calls it on each trainable span. Libc only: no allocation, no exceptions.
#pragma once

#include "spec/Vocabulary.h"

#include <cstdint>

namespace mtlc::core {

// An optimizer's settings, as the vocabulary row names them (spec/Vocabulary.def).
struct UpdateRule {
  vocab::OptimizerKind kind = vocab::OptimizerKind::Adam;
  double lr = 1e-3, momentum = 0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weightDecay = 0, alpha = 0.99;
  bool nesterov = false;
};

// The state arrays a rule keeps, each as long as the parameters, in the order update() takes them
// (a, then b), with their checkpoint names:
//   sgd with momentum      a = optim.momentum (torch's momentum_buffer)
//   adam, adamw            a = optim.m (exp_avg), b = optim.v (exp_avg_sq)
//   rmsprop                a = optim.square_avg; with momentum, b = optim.momentum
struct StateLayout {
  int count = 0;
  const char *names[2] = {nullptr, nullptr};
};
StateLayout stateLayout(const UpdateRule &rule);

// One update of `count` parameters from their gradients. `a` and `b` are the state arrays of
// stateLayout (null where the rule keeps none); `step` is the 1-based number of this update
// (adam's t for the bias corrections; sgd's momentum buffer starts as the gradient at step 1).
void update(const UpdateRule &rule, float *params, const float *grads, float *a, float *b, int64_t count,
            int64_t step);

}  // namespace mtlc::core
