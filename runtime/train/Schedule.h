// The learning rate of each optimizer step: `schedule S` (stepped at the end of every epoch, as
// torch.optim.lr_scheduler's schedulers are) and `warmup N` (spec/ModelSpec.h's TrainSpec).
//
//   step(every, gamma)        lr·gamma after every `every` epochs         (StepLR)
//   multistep(at, gamma)      lr·gamma after each epoch listed in `at`    (MultiStepLR)
//   exponential(gamma)        lr·gamma after every epoch                  (ExponentialLR)
//   cosine(t_max, eta_min)    eta_min + (lr − eta_min)·(1 + cos(π·e/t_max))/2 after e epochs
//                             (CosineAnnealingLR; t_max defaults to the run's epochs)
//   warmup N                  optimizer steps s = 1..N train at lr·s/N (lr: the optimizer's), then
//                             the schedule's rate for the step's epoch
//
// The rate is a function of the step's number and epoch alone, so a resumed run recomputes it and
// a checkpoint needs no schedule state. Each scheduler's rate is computed as torch computes it,
// from the previous epoch's (its "chainable" get_lr), so that the rates are torch's to the bit.
#pragma once

#include "spec/ModelSpec.h"

#include <cstdint>

namespace mtlc::rt {

// The rate of epoch `epoch` (0-based: after `epoch` scheduler steps): the schedule's from the
// optimizer's lr, or that lr without a schedule. `epochs` is the run's epoch count (cosine's
// default t_max). Computed once an epoch: it costs `epoch` steps of the scheduler.
double epochLr(const TrainSpec& ts, int64_t epoch, int64_t epochs);

// The rate of optimizer step `step` (1-based) in an epoch of rate `epochRate`: the warm-up's
// while it lasts.
double stepLr(const TrainSpec& ts, int64_t step, double epochRate);

}  // namespace mtlc::rt
