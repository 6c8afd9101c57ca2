// The scheduled module: the passes' product, what codegen, the AOT build, the summary and the
// REPL's kernel cache read (Glow's low-level IR is the model: kernels and buffers after planning).
//
// Per function it holds
//   - the fusion groups (Fusion.h): which nodes run as one kernel,
//   - the memory plan (MemoryPlan.h): where every value lives, and each kernel's scratch,
//   - the kernels in call order: root, group, scratch size and offset, and a content key that
//     names everything of the schedule the kernel's code depends on.
// It is built once per compile (scheduleModule) and only read afterwards.
//
// Scratch sizes come from the back end through KernelHooks: the op that needs working memory says
// how much (codegen::kernelHooks, next to each op's emitter), so nothing here knows how a kernel is
// generated.
#pragma once

#include "Fusion.h"
#include "MemoryPlan.h"

#include <string>
#include <vector>

namespace mtlc::passes {

// What the back end tells the planner about its kernels.
struct KernelHooks {
  ScratchFloats scratchFloats;  // working memory of the kernel rooted at a node (MemoryPlan.h)
};

struct ScheduledKernel {
  const ir::Node *root = nullptr;  // the node whose kernel runs (a group's root)
  int group = -1;                  // index into the function's fusion.groups, -1 when alone
  int64_t scratchFloats = 0;       // working memory while it runs
  int64_t scratchOffset = -1;      // where in acts (memory.scratch of the root), -1 when none
  // Everything of the schedule the kernel's code depends on: the root's op, types and attributes,
  // each fused member's with the operand the chain flows through, and its scratch size. Kernels
  // with equal keys (and equal codegen options) are the same code.
  std::string key;
};

struct ScheduledFunction {
  const ir::Function *function = nullptr;
  FusionPlan fusion;                    // empty when the module is scheduled unfused
  MemoryPlan memory;                    // planned for these groups and the hooks' scratch
  std::vector<ScheduledKernel> kernels; // in call order: a node alone, or a group at its last node

  const FusionGroup *group(const ScheduledKernel &k) const {
    return k.group < 0 ? nullptr : &fusion.groups[k.group];
  }
};

struct ScheduledModule {
  const ir::Module *module = nullptr;
  bool fused = true;
  int64_t maxBatch = 0;  // the batch every plan and kernel is sized for
  std::vector<ScheduledFunction> functions;  // in the module's order
  int64_t actsFloats = 0;  // the acts arena every function fits in
  int64_t actsFloatsWithoutReuse = 0;  // the largest function's arena with one slot per value

  const ScheduledFunction &of(const ir::Function &f) const;
  // What every kernel's code depends on besides its own key (the batch it is sized for and
  // whether groups are fused), for caches that hold kernels across schedules.
  std::string contextKey() const;
};

// Fusion (when `fuse`), then the memory plan with the hooks' scratch, for every function of `m`.
// The result points into `m`, which must outlive it unchanged.
// Ops that read the call's arguments or view another node's storage: no kernel runs for them.
bool hasKernel(ir::OpKind op);

ScheduledModule scheduleModule(const ir::Module &m, bool fuse, const KernelHooks &hooks);

// The part of a kernel's key one node contributes: every field of ir::Node but its id and name,
// which no emitter reads.
std::string nodeSignature(const ir::Node &node);

}  // namespace mtlc::passes
