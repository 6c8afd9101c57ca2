// Lowering: the checked model becomes an IR module with three entry points,
//   train_step: forward (dropout on) + per-task losses + weighted total + backward (all grads),
//   eval_step:  forward (dropout off) + losses + head outputs,
//   predict:    forward (dropout off) + head outputs,
//   task_grads: (gradnorm, pcgrad, mgda) forward + every task's own gradient of every parameter,
//   rep_grads:  (mgda) forward + every task's gradient w.r.t. the shared boundary,
// plus the parameter table (PyTorch names, layouts and default initialisers).
#pragma once

#include "ir/IR.h"
#include "spec/ModelSpec.h"
#include "sema/Model.h"

#include <vector>

namespace mtlc::lower {

struct LoweredModel {
  ir::Module module;
  std::vector<rt::ParamSpec> params;  // same order and offsets as module.params
  double flopsPerSample = 0;          // forward, 2 per multiply-add
  int64_t repWidth = 0;               // rep_grads: width of the shared boundary (0: none)
};

// The parameter table is built while lowering: one entry per learnable tensor of every block a
// task reads, in the order the forward pass first reads them (shared blocks before the heads that
// read them), offsets aligned to 16 floats. Names follow nn.Sequential: "<block>.<layer index>.
// <weight|bias>"; inside expert blocks see docs/mtl-architectures.md.
LoweredModel lowerModel(const sema::Model &model, int64_t maxBatch);

// The runtime's ModelSpec (everything but entry points and arena size) of a lowered model: what
// the trainer, the embedded bundle and the checkpoint readers know of it.
rt::ModelSpec describeModel(const sema::Model &model, const LoweredModel &lowered);

}  // namespace mtlc::lower
