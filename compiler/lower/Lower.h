// Lowering: the checked model becomes an IR module with three entry points,
//   train_step: forward (dropout on) + per-task losses + weighted total + backward (all grads),
//   eval_step:  forward (dropout off) + losses + head outputs,
//   predict:    forward (dropout off) + head outputs,
// plus the parameter table (PyTorch names, layouts and default initialisers).
#pragma once

#include "ir/IR.h"
#include "runtime/ModelSpec.h"
#include "sema/Model.h"

#include <vector>

namespace mtlc::lower {

struct LoweredModel {
  ir::Module module;
  std::vector<rt::ParamSpec> params;  // same order and offsets as module.params
  double flopsPerSample = 0;          // forward, 2 per multiply-add
};

LoweredModel lowerModel(const sema::Model &model, int64_t maxBatch);

// Builds the parameter table: one entry per learnable tensor of every pipeline that a task reads
// (directly or through other shared blocks), in program order, offsets aligned to 16 floats.
std::vector<rt::ParamSpec> buildParamTable(const sema::Model &model);

}  // namespace mtlc::lower
