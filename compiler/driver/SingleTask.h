// `mtlc train --single-task MODEL.mtl`: after the multi-task run, each task is trained alone with
// the same settings, and the run reports Δm, the multi-task model's mean relative change against
// those single-task baselines (LibMTL's definition; rt::relativeImprovement is one term).
//
// Task t alone is the program with every other task declaration and its data binding removed,
// the `weighting` line removed (so `fixed`) and t's weight set to 1: the same inputs, shared
// blocks (an expert block gets a gate for t only), head, loss, optimizer, batch, epochs, seed and
// data. Its parameters start from the multi-task model's initial values (the --init file, or the
// seed's initialisation), loaded by name and shape, so trunk and head start where the multi-task
// run started; a tensor whose shape depends on the number of tasks (PLE's shared gates) cannot and
// starts from the seed.
//
// Δm = (1/T) Σ_t (1/|M_t|) Σ_{m ∈ M_t} (−1)^{l_m} (M^multi_{t,m} − M^single_{t,m}) / M^single_{t,m},
// on the test split, M_t the task's `metric` list (its test loss when it declares none), l_m = 1
// for lower-is-better metrics (loss, mse, mae). A metric whose change is undefined (baseline 0 or
// NaN) is left out of its task's mean and named in the report.
#pragma once

#include "Options.h"
#include "Pipeline.h"
#include "runtime/train/Trainer.h"

#include <ostream>

namespace mtlc::driver {

// Throws rt::Error when the comparison cannot be made, before any training: no test data, or a
// task that is not a valid model alone (sema's located diagnostics; a cross_stitch block needs
// two columns).
void checkSingleTaskPossible(const CheckedProgram &checked, const rt::ModelSpec &spec,
                             const rt::TrainOptions &options);

// Trains each task of `checked` alone and prints the baselines, the per-metric changes and Δm.
// `multi` is the multi-task run's report. Returns Δm (a fraction, not a percentage).
double reportSingleTask(const Options &o, const CheckedProgram &checked, const rt::ModelSpec &spec,
                        const rt::TrainReport &multi, const rt::TrainOptions &options, std::ostream &out);

}  // namespace mtlc::driver
