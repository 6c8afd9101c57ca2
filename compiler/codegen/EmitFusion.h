// Fused kernels (passes/Fusion.h): one kernel per fusion group, the root's emitter with the chain
// of elementwise / bias members applied to each finished value before its single store.
#pragma once

#include "Kernel.h"
#include "passes/Fusion.h"

#include <vector>

namespace mtlc::codegen {

// What one kernel computes: a node alone, or a fusion group (root + chain).
struct KernelSpec {
  const ir::Node *root;
  const passes::FusionGroup *group = nullptr;
  std::vector<int> dataOperand;  // per chain member: the operand the chain flows through
  // The members' other operands (bias, saved activations, addends), in chain then operand order:
  // the fused kernel's extra pointer parameters.
  struct Side {
    const ir::Node *node;
    size_t member;
    int operand;
  };
  std::vector<Side> side;
  // A per-sample prologue's operands (member: index into group->prologue): every operand of its
  // root, the others' but the chain's; then the siblings' results. Parameters after `side`.
  std::vector<Side> prologueIn;
  std::vector<int> prologueData;  // per prologue member after its root: the chain's operand
  std::vector<const ir::Node *> siblings;

  explicit KernelSpec(const ir::Node &n) : root(&n) {}
  KernelSpec(const passes::FusionGroup &g, const passes::FusionPlan &plan);
};

// Throws std::logic_error if a group of `plan` has a root or member no fused kernel supports.
void checkFusedKernels(const passes::FusionPlan &plan);

// Whether the root's emitter applies Kernel::chain itself (else chainAfterKernel does, in place).
bool rootAppliesChain(ir::OpKind op);
// After a root kernel that does not apply the chain: runs it over the whole result in place.
void chainAfterKernel(Kernel &k);

// The Kernel::chain of a group, reading its side operands through `sidePointers` (the kernel's
// parameters, in spec.side order).
decltype(Kernel::chain) fusedChain(const KernelSpec &spec, std::vector<llvm::Value *> sidePointers);

// The Kernel::prologue of a group with a per-sample prologue, reading its operands through
// `inputs` (spec.prologueIn order): the producer's own emitter run for one sample (n = 1, its
// batched operands at that sample), on the calling thread.
decltype(Kernel::prologue) fusedPrologue(const KernelSpec &spec, std::vector<llvm::Value *> inputs);

// The body of one node's kernel (EmitModule.cpp): the op's emitter.
void emitKernelBody(Kernel &k);

}  // namespace mtlc::codegen
