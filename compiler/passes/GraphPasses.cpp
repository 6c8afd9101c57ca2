// Constant folding, common-subexpression elimination and dead-code elimination over the graph IR.
#include "Passes.h"

#include "ir/Builder.h"
#include "ir/Verifier.h"

#include <map>
#include <tuple>
#include <unordered_map>

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
    if (other && other->type == n->type) {
      f.replaceAllUses(n, other);
      changed = true;
    }
  }
  return changed;
}

bool eliminateCommonSubexpressions(ir::Function &f) {
  using Key = std::tuple<OpKind, std::vector<const Node *>, std::vector<int64_t>, double,
                         std::vector<int64_t>, bool>;
  std::map<Key, Node *> seen;
  bool changed = false;
  for (auto &up : f.nodes) {
    Node *n = up.get();
    // Operands were already replaced by their canonical nodes (we walk in topological order).
    Key key{n->op, {n->operands.begin(), n->operands.end()}, n->ints, n->f, n->type.dims,
            n->type.batched};
    auto [it, fresh] = seen.emplace(std::move(key), n);
    if (!fresh) {
      f.replaceAllUses(n, it->second);
      changed = true;
    }
  }
  return changed;
}

bool eliminateDeadCode(ir::Function &f) {
  std::unordered_map<const Node *, size_t> position;
  for (size_t i = 0; i < f.nodes.size(); ++i) position[f.nodes[i].get()] = i;
  std::vector<bool> live(f.nodes.size(), false);
  for (const auto &o : f.outputs) live[position.at(o.value)] = true;
  for (size_t i = f.nodes.size(); i-- > 0;)
    if (live[i])
      for (const Node *o : f.nodes[i]->operands) live[position.at(o)] = true;
  std::vector<bool> dead(live.size());
  bool changed = false;
  for (size_t i = 0; i < live.size(); ++i) changed |= (dead[i] = !live[i]);
  if (changed) f.erase(dead);
  return changed;
}

void runGraphPasses(ir::Module &m, bool verifyEach) {
  for (auto &fn : m.functions) {
    for (const GraphPass &pass : graphPasses()) {
      pass.run(*fn);
      if (!verifyEach) continue;
      auto problems = ir::verify(m, *fn);
      if (!problems.empty())
        throw ir::IRError(std::string("IR verification failed after pass '") + pass.name +
                          "': " + problems[0]);
    }
  }
}

}  // namespace mtlc::passes
