// fold-constants: x·1, 1·x, x+0, 0+x become x, and an op of two constants becomes a constant.
// In training graphs this is what folds the loss weights into the gradient seeds: reverse mode
// seeds d(total) = 1, so task i's loss gradient starts as 1·w_i, which folds to w_i — the loss
// kernel's backward reads the weight itself (no separate scaling pass over the gradient).
#include "Passes.h"

namespace mtlc::passes {

using ir::Node;
using ir::OpKind;

namespace {

bool isConst(const Node *n, double v) { return n->op == OpKind::Const && n->f == v; }

}  // namespace

bool foldConstants(ir::Function &f) {
  bool changed = false;
  for (size_t i = 0; i < f.nodes.size(); ++i) {
    Node *n = f.nodes[i].get();
    if (n->op != OpKind::Mul && n->op != OpKind::Add) continue;
    Node *a = n->operands[0], *b = n->operands[1];
    if (a->op == OpKind::Const && b->op == OpKind::Const) {
      // Both constant: the node itself becomes the constant.
      n->f = n->op == OpKind::Mul ? a->f * b->f : a->f + b->f;
      n->op = OpKind::Const;
      n->operands.clear();
      changed = true;
      continue;
    }
    double unit = n->op == OpKind::Mul ? 1.0 : 0.0;  // the identity element
    Node *other = isConst(a, unit) ? b : isConst(b, unit) ? a : nullptr;
    // A node already bypassed (no uses left, waiting for dce) is no change.
    if (other && other->type == n->type) changed |= f.replaceAllUses(n, other) > 0;
  }
  return changed;
}

}  // namespace mtlc::passes
