// The memory plan: where every node's values live while an entry point runs.
//
// Leaves read the call's arguments (inputs[i], labels[t], the params arena, loss_weights[t]);
// a node bound to a function output is written straight into the caller's buffer (grads arena at
// the parameter's offset, outputs[t], losses[t], losses[T] for the total); Reshape is a view of
// its operand; everything else gets a slot in the activation arena (`acts`), sized for maxBatch
// samples when batched. Slots are reused: a value's slot is released after its last reader (liveness
// over the node order) and handed to later values, best fit. Codegen only reads the plan.
#pragma once

#include "ir/IR.h"

#include <cstdint>
#include <functional>
#include <vector>

namespace mtlc::passes {

// One place values can live: a flat arena, or one of the per-input / per-task pointer tables.
struct Storage {
  enum class Base {
    None,         // not planned (only for ids no node has)
    Acts,         // args->acts + offset
    Params,       // args->params + offset
    Grads,        // args->grads + offset
    Input,        // args->inputs[index] + offset
    Label,        // args->labels[index] + offset
    LossWeights,  // args->loss_weights + offset
    Losses,       // args->losses + offset
    Output,       // args->outputs[index] + offset
  };
  Base base = Base::None;
  int index = 0;       // which pointer of inputs / labels / outputs
  int64_t offset = 0;  // element (float) offset from the base

  bool operator==(const Storage &) const = default;
};

// An output whose node already lives elsewhere (a leaf, a view of another buffer, or a node bound
// to two outputs): codegen copies it there after the last node.
struct OutputCopy {
  const ir::Node *value;
  Storage to;
};

struct MemoryPlan {
  std::vector<int64_t> offset;    // per node id: element offset into acts, or -1 if not in acts
  std::vector<Storage> storage;   // per node id: where its values are read and written
  std::vector<int64_t> scratch;   // per node id: acts offset of its kernel's scratch, or -1
  std::vector<int64_t> scratchFloats;  // per node id: size of that scratch, 0 when none
  std::vector<OutputCopy> copies; // outputs not written in place, in function-output order
  int64_t actsFloats = 0;         // size the acts arena must have (a multiple of kSlotAlign)
  int64_t actsFloatsWithoutReuse = 0;  // what one slot per value (no reuse) would need
};

// Acts slots start at multiples of this many floats (64 bytes: one cache line, one AVX-512 vector).
constexpr int64_t kSlotAlign = 16;

struct FusionGroup;
struct FusionPlan;

// Floats of working memory the kernel rooted at node `n` needs while it runs, for batches of up to
// `maxBatch` samples; 0 for most ops. `group` is the fusion group it runs (null when alone): a
// per-sample prologue needs room for its samples. The back end answers it (codegen::kernelHooks:
// each op that needs scratch says how much, next to its emitter), so the plan knows no kernel's
// internals.
using ScratchFloats = std::function<int64_t(const ir::Node &n, const FusionGroup *group, int64_t maxBatch)>;

// Plans one function of `m` for batches of up to m.maxBatch samples. With a fusion plan
// (passes/Fusion.h, as codegen executes it), each group runs as one kernel at its last node's
// position: interior members get no storage, every operand a member reads stays live until the
// group has run, and the group's scratch (`scratch` of its root) is planned there, under the
// root's id. Schedule.h runs it once per function, with the fusion plan codegen executes.
MemoryPlan planMemory(const ir::Module &m, const ir::Function &f, const FusionPlan *fusion,
                      const ScratchFloats &scratch);

}  // namespace mtlc::passes
