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

// The operand through which a reduction over the batch reads one sample at a time, -1 for others:
// the kernels that can run a per-sample prologue (root) or join one as a sibling.
int perSampleRootOperand(const Node &n) { return n.op == OpKind::Conv2dBwdFilter ? 1 : -1; }
bool perSampleSibling(const Node &n) { return n.op == OpKind::BiasGrad; }

// A producer member that computes one sample from that sample of its batched operands (and all of
// its unbatched ones): per-element, per-channel and data-movement ops, dropout excepted.
bool perSampleProducer(const Node &n) {
  auto c = ir::fusionClass(n.op);
  bool cls = c == FusionClass::Elemwise || c == FusionClass::Broadcast ||
             (c == FusionClass::Injective && n.op != OpKind::Reshape);
  return cls && n.type.batched && n.op != OpKind::Dropout && n.op != OpKind::DropoutBwd;
}

struct FunctionFacts {
  std::unordered_map<const Node *, size_t> position;
  std::unordered_map<const Node *, std::vector<const Node *>> users;  // once per reading node
  std::unordered_map<const Node *, bool> isOutput;
};

// Takes the producer of each per-sample reduction's operand in as its prologue (see Fusion.h).
void addPrologues(const ir::Function &f, const FunctionFacts &facts, std::vector<FusionGroup> &groups) {
  std::unordered_map<const Node *, size_t> groupAt;  // last node -> index, root -> index
  for (size_t i = 0; i < groups.size(); ++i) groupAt[groups[i].last()] = groupAt[groups[i].root] = i;
  std::vector<bool> absorbed(groups.size(), false);
  std::vector<FusionGroup> added;
  for (const auto &up : f.nodes) {
    const Node &c = *up;
    const int operand = perSampleRootOperand(c);
    if (operand < 0) continue;
    const Node *v = c.operands[operand];
    auto own = groupAt.find(&c);
    if (own != groupAt.end() && groups[own->second].root != &c) continue;
    auto producer = groupAt.find(v);
    FusionGroup p = producer != groupAt.end() ? groups[producer->second] : FusionGroup{v, {}};
    if (p.last() != v || facts.isOutput.count(v) || !p.prologue.empty()) continue;
    std::vector<const Node *> members{p.root};
    members.insert(members.end(), p.chain.begin(), p.chain.end());
    if (!std::all_of(members.begin(), members.end(), [](const Node *m) { return perSampleProducer(*m); })) continue;
    const Node *last = own != groupAt.end() ? groups[own->second].last() : &c;
    const size_t runsAt = facts.position.at(last);
    std::vector<const Node *> siblings;
    bool ok = true;
    for (const Node *u : facts.users.at(v)) {
      if (u == &c) {
        ok = ok && std::count(c.operands.begin(), c.operands.end(), v) == 1;
        continue;
      }
      ok = ok && perSampleSibling(*u) && facts.position.at(u) < runsAt && !groupAt.count(u);
      if (ok)
        for (const Node *w : facts.users.at(u)) ok = ok && facts.position.at(w) > runsAt;
      siblings.push_back(u);
    }
    if (!ok) continue;
    FusionGroup g = own != groupAt.end() ? groups[own->second] : FusionGroup{&c, {}};
    g.prologue = std::move(members);
    g.prologueOperand = operand;
    g.siblings = std::move(siblings);
    if (producer != groupAt.end()) absorbed[producer->second] = true;
    if (own != groupAt.end()) {
      groups[own->second] = std::move(g);
    } else {
      added.push_back(std::move(g));
      groupAt[&c] = groups.size() + added.size() - 1;
    }
  }
  for (FusionGroup &g : added) {
    groups.push_back(std::move(g));
    absorbed.push_back(false);
  }
  std::vector<FusionGroup> kept;
  for (size_t i = 0; i < groups.size(); ++i)
    if (!absorbed[i]) kept.push_back(std::move(groups[i]));
  groups = std::move(kept);
}

}  // namespace

bool FusionPlan::isInterior(const Node *n) const {
  const FusionGroup *g = group(n);
  return g && g->last() != n && std::find(g->siblings.begin(), g->siblings.end(), n) == g->siblings.end();
}

bool FusionPlan::runsInGroup(const Node *n) const {
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
  const Node *prev = nullptr;
  if (auto it = std::find(g->chain.begin(), g->chain.end(), &n); it != g->chain.end())
    prev = it == g->chain.begin() ? g->root : *std::prev(it);
  else if (auto p = std::find(g->prologue.begin(), g->prologue.end(), &n); p != g->prologue.end())
    prev = p == g->prologue.begin() ? nullptr : *std::prev(p);
  if (!prev) return -1;
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
  FunctionFacts facts{position, {}, isOutput};
  for (const auto &up : f.nodes) {
    facts.users[up.get()];
    for (const Node *o : up->operands) {
      auto &list = facts.users[o];
      if (list.empty() || list.back() != up.get()) list.push_back(up.get());
    }
  }
  addPrologues(f, facts, groups);
  std::sort(groups.begin(), groups.end(), [&](const FusionGroup &a, const FusionGroup &b) {
    return position.at(a.last()) < position.at(b.last());
  });
  plan.groups = std::move(groups);
  for (size_t gi = 0; gi < plan.groups.size(); ++gi) {
    const FusionGroup &g = plan.groups[gi];
    plan.groupOf[g.root] = (int)gi;
    for (const auto *members : {&g.chain, &g.prologue, &g.siblings})
      for (const Node *m : *members) plan.groupOf[m] = (int)gi;
  }
  return plan;
}

namespace {

// The `--emit=ir-opt` marks of `plan`'s groups (see printFused).
std::string fusionNote(const FusionPlan &plan, const Node &n) {
  const FusionGroup *g = plan.group(&n);
  if (!g) return "";
  const std::string last = "%" + std::to_string(g->last()->id);
  if (std::find(g->siblings.begin(), g->siblings.end(), &n) != g->siblings.end()) return "computed in " + last;
  if (g->last() != &n) return "fused into " + last;
  auto item = [](const Node *m) { return "%" + std::to_string(m->id) + " " + ir::mnemonic(m->op); };
  std::string text = "kernel: ";
  for (const Node *member : g->prologue) text += item(member) + " -> ";
  text += item(g->root);
  for (const Node *member : g->chain) text += " -> " + item(member);
  for (const Node *sibling : g->siblings) text += ", " + item(sibling);
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
