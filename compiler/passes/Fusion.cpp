#include "Fusion.h"

#include "ir/Printer.h"

#include <algorithm>
#include <map>
#include <string>

namespace mtlc::passes {

using ir::FusionClass;
using ir::Node;
using ir::OpKind;

namespace {

bool canExtend(const Node &n) {
  auto c = ir::fusionClass(n.op);
  return c == FusionClass::Elemwise || c == FusionClass::Broadcast;
}

bool canRoot(const Node &n) {
  auto c = ir::fusionClass(n.op);
  // Injective kernels (pooling gradients, concat, embedding) write their result element by element
  // too; a view (reshape) has no kernel to put an epilogue in.
  return c == FusionClass::OutFusable || c == FusionClass::Elemwise || c == FusionClass::Broadcast ||
         (c == FusionClass::Injective && n.op != OpKind::Reshape);
}

// Operand positions that may carry the chain into n, most preferred first.
std::vector<int> chainCandidates(const Node &n) {
  switch (n.op) {
    case OpKind::Add:
    case OpKind::Mul: return {0, 1};
    case OpKind::ReluBwd:
    case OpKind::LeakyReluBwd:
    case OpKind::SigmoidBwd:
    case OpKind::TanhBwd:
    case OpKind::GeluBwd:
    case OpKind::SmoothStepBwd: return {1};  // (saved, dy): the gradient flows through dy
    default: return {0};
  }
}

}  // namespace

bool FusionPlan::isInterior(const Node *n) const {
  const FusionGroup *g = group(n);
  return g && g->last() != n;
}

const FusionGroup *FusionPlan::group(const Node *n) const {
  auto it = groupOf.find(n);
  return it == groupOf.end() ? nullptr : &groups[it->second];
}

int dataOperand(const Node &n, const FusionPlan &plan) {
  const FusionGroup *g = plan.group(&n);
  if (!g || g->root == &n) return -1;
  auto pos = std::find(g->chain.begin(), g->chain.end(), &n) - g->chain.begin();
  const Node *prev = pos == 0 ? g->root : g->chain[pos - 1];
  for (int i : chainCandidates(n))
    if (n.operands[i] == prev) return i;
  return -1;
}

FusionPlan planFusion(const ir::Function &f) {
  FusionPlan plan;
  auto uses = f.useCounts();
  std::unordered_map<const Node *, size_t> position;
  for (size_t i = 0; i < f.nodes.size(); ++i) position[f.nodes[i].get()] = i;
  std::unordered_map<const Node *, bool> isOutput;
  for (const auto &o : f.outputs) isOutput[o.value] = true;

  // Groups under construction, keyed by their current last node.
  std::unordered_map<const Node *, FusionGroup> open;
  for (const auto &up : f.nodes) {
    const Node &n = *up;
    // Scalars (loss weights and their products) are not worth a loop nest of their own.
    if (!canExtend(n) || (!n.type.batched && n.type.elements() == 1)) continue;
    for (int i : chainCandidates(n)) {
      if (i >= (int)n.operands.size()) continue;
      const Node *p = n.operands[i];
      bool single = uses[position.at(p)] == 1 && !isOutput.count(p);
      // A node reading p twice (add(p, p)) has p once per slot: then p has two uses, no fusion.
      if (!single || !canRoot(*p) || p->type != n.type) continue;
      auto it = open.find(p);
      FusionGroup g = it != open.end() ? std::move(it->second) : FusionGroup{p, {}};
      if (it != open.end()) open.erase(it);
      g.chain.push_back(&n);
      open.emplace(&n, std::move(g));
      break;
    }
  }
  std::vector<FusionGroup> groups;
  for (auto &[last, g] : open) groups.push_back(std::move(g));
  std::sort(groups.begin(), groups.end(), [&](const FusionGroup &a, const FusionGroup &b) {
    return position.at(a.last()) < position.at(b.last());
  });
  plan.groups = std::move(groups);
  for (size_t gi = 0; gi < plan.groups.size(); ++gi) {
    plan.groupOf[plan.groups[gi].root] = (int)gi;
    for (const Node *m : plan.groups[gi].chain) plan.groupOf[m] = (int)gi;
  }
  return plan;
}

namespace {

// The `--emit=ir-opt` marks of `plan`'s groups (see printFused).
std::string fusionNote(const FusionPlan &plan, const Node &n) {
  const FusionGroup *g = plan.group(&n);
  if (!g) return "";
  if (g->last() != &n) return "fused into %" + std::to_string(g->last()->id);
  std::string text = "kernel: %" + std::to_string(g->root->id) + " " + ir::mnemonic(g->root->op);
  for (const Node *member : g->chain) text += " -> %" + std::to_string(member->id) + " " + ir::mnemonic(member->op);
  return text;
}

}  // namespace

void printFused(const ir::Module &m, std::ostream &os, bool fuse) {
  if (!fuse) {
    ir::print(m, os);
    return;
  }
  std::map<const ir::Function *, FusionPlan> plans;
  for (const auto &f : m.functions) plans[f.get()] = planFusion(*f);
  ir::print(m, os, [&](const ir::Function &f, const Node &n) { return fusionNote(plans.at(&f), n); });
}

void printFused(const ir::Module &m, const ir::Function &f, std::ostream &os) {
  FusionPlan plan = planFusion(f);
  ir::print(m, f, os, [&](const ir::Function &, const Node &n) { return fusionNote(plan, n); });
}

}  // namespace mtlc::passes
