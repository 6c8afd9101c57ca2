// Fusion by rule (TVM's op classes, from ir/Ops.def), not by pattern lists.
//
// A fusion group is a root node followed by a chain of elementwise / broadcast nodes that each
// consume the previous member's result, element for element, in the root's own loop nest: the
// epilogue. Only the group's last node is materialised; the members before it never touch memory.
//
// A node n joins the group of its data operand p when
//   - n is Elemwise or Broadcast (per-element maths; a per-channel affine map: bias_add reads its
//     channel's bias, batchnorm_eval its channel's γ, β and running statistics),
//   - p is the last node of its group and is a root kind: OutFusable (matmul, conv, conv's data
//     gradient, batchnorm in training, whose last pass is elementwise), Elemwise, Broadcast or
//     Injective (pooling gradients, concat, ...) — never a leaf or a view,
//   - p has exactly one use (n) and is not a function output, and
//   - p and n have the same type (the same iteration space).
// The data operand is the one the chain flows through: operand 0 for forward ops, the upstream
// gradient dy (the last operand) for the backward ops that take (saved value, dy); for add either
// operand, first the one that qualifies. Other operands (bias, saved activations, the addend) are
// read at the same element index (the bias at its channel).
//
// So, with relu's backward reading relu's output:
//   forward   matmul → bias_add → relu            one loop nest, one store
//   backward  matmul (dh = dy·W) → relu_bwd(y, ·)  the activation derivative in the epilogue
//             maxpool_bwd → relu_bwd(y, ·)         the same, after a pooling layer
//   training  batchnorm → add(·, skip) → relu      the statistics pass, then one normalise pass
//   inference conv2d → batchnorm_eval → relu       the running statistics' scale and shift and the
//                                                   relu in the conv's store epilogue
//
// Per-sample prologue. A reduction over the batch that runs one sample at a time (the filter
// gradient conv2d_bwd_filter, reading its dy per sample) takes in front of it the group producing
// that dy, when the producer's members are Elemwise, Broadcast or Injective ops (no dropout: it
// hashes batch-wide element indices), every one batched, and the dy is read by nothing but the
// filter gradient and bias_grad nodes (siblings) that run before the group's last node and whose
// results are read only after it. The kernel then computes each sample's dy into its scratch and
// accumulates the filter and bias gradients from it while it is in cache; the dy ([n,C,H,W]) is
// never stored. So, after a convolution's relu and max-pool:
//   backward  maxpool_bwd → relu_bwd → { conv2d_bwd_filter, bias_grad }   one pass over the batch
#pragma once

#include "ir/IR.h"

#include <ostream>
#include <unordered_map>
#include <vector>

namespace mtlc::passes {

struct FusionGroup {
  const ir::Node *root = nullptr;
  std::vector<const ir::Node *> chain;  // epilogue members in order (may be empty)
  // The per-sample prologue (see above): the producer of the root's operand `prologueOperand`,
  // its root first, then its chain; computed per sample inside the kernel, never stored.
  std::vector<const ir::Node *> prologue;
  int prologueOperand = -1;
  // Other per-sample reductions of the prologue's value (bias_grad) the kernel computes in the same
  // loop: each is stored where the memory plan puts it, like the group's last node.
  std::vector<const ir::Node *> siblings;
  const ir::Node *last() const { return chain.empty() ? root : chain.back(); }
};

struct FusionPlan {
  std::vector<FusionGroup> groups;                   // in the order of their last nodes
  std::unordered_map<const ir::Node *, int> groupOf; // every member of a group of size > 1

  // True for a member whose value stays in registers (a group member other than the last and
  // its siblings).
  bool isInterior(const ir::Node *n) const;
  // True for a member computed by its group's kernel at the group's last node: interior members
  // and siblings.
  bool runsInGroup(const ir::Node *n) const;
  // The group a node belongs to, or nullptr when it stands alone.
  const FusionGroup *group(const ir::Node *n) const;
};

FusionPlan planFusion(const ir::Function &f);

// Which operand of an epilogue or prologue chain member carries the chain (see above); -1 if none
// qualifies (and for a prologue's root).
int dataOperand(const ir::Node &n, const FusionPlan &plan);

// The module's IR with every function's fusion groups marked (`--emit=ir-opt`): a member whose
// value stays in registers says `; fused into %L`, the group's last node (the one stored) lists
// the whole kernel, `; kernel: %3 matmul -> %4 bias_add -> %5 relu`. With fuse false, plain IR.
void printFused(const ir::Module &m, std::ostream &os, bool fuse = true);
void printFused(const ir::Module &m, const ir::Function &f, std::ostream &os);

}  // namespace mtlc::passes
