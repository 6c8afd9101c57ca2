// The optimizers' update rules over one contiguous range of the parameter arena: one plain loop
// each, exactly torch.optim's (torch 1.13, single-tensor path, float32 arithmetic; dampening 0,
// no nesterov, no amsgrad). The trainer's Optimizer (train/Optimizer.h, which documents the rules
// and their state) splits the arena into blocks across threads and calls these on each; the
// embedded runtime calls them on each trainable span.
#pragma once

#include <cstdint>

namespace mtlc::core {

// `firstStep`: the momentum buffer starts as the gradient (torch's first step).
void sgdUpdate(float *params, const float *grads, float *momentumBuf, int64_t count, double lr, double momentum,
               double weightDecay, bool firstStep);
// `step`: the 1-based number of this update (adam's t, for the bias corrections).
void adamUpdate(float *params, const float *grads, float *m, float *v, int64_t count, double lr, double beta1,
                double beta2, double eps, double weightDecay, int64_t step);

}  // namespace mtlc::core
