#include "MemoryPlan.h"

#include "Fusion.h"

#include <algorithm>
#include <map>
#include <stdexcept>

namespace mtlc::passes {

namespace {

using ir::Node;
using ir::OpKind;
using Base = Storage::Base;

// Hands out acts slots with reuse: a slot released at its value's last use goes back to a free
// list (coalesced with free neighbours) and the next allocation takes the smallest free block that
// fits (best fit), growing the arena only when none does. `total` counts what a bump allocator
// would have used, for the summary's planned-versus-naive figure.
class ActsAllocator {
 public:
  static int64_t rounded(int64_t floats) {
    return (std::max<int64_t>(floats, 1) + kSlotAlign - 1) / kSlotAlign * kSlotAlign;
  }

  int64_t allocate(int64_t floats) {
    int64_t size = rounded(floats);
    total_ += size;
    auto best = free_.end();
    for (auto it = free_.begin(); it != free_.end(); ++it)
      if (it->second >= size && (best == free_.end() || it->second < best->second)) best = it;
    if (best == free_.end()) {
      // Nothing fits: extend the arena, absorbing a free block that ends at the top.
      int64_t at = top_;
      if (!free_.empty() && std::prev(free_.end())->first + std::prev(free_.end())->second == top_) {
        at = std::prev(free_.end())->first;
        free_.erase(std::prev(free_.end()));
      }
      top_ = at + size;
      return at;
    }
    int64_t at = best->first, left = best->second - size;
    free_.erase(best);
    if (left > 0) free_[at + size] = left;
    return at;
  }

  void release(int64_t at, int64_t floats) {
    int64_t size = rounded(floats);
    auto next = free_.lower_bound(at);
    if (next != free_.end() && at + size == next->first) {  // merge with the block after
      size += next->second;
      next = free_.erase(next);
    }
    if (next != free_.begin()) {  // merge with the block before
      auto prev = std::prev(next);
      if (prev->first + prev->second == at) {
        prev->second += size;
        return;
      }
    }
    free_[at] = size;
  }

  int64_t size() const { return top_; }
  int64_t withoutReuse() const { return total_; }

 private:
  std::map<int64_t, int64_t> free_;  // offset -> size of each free block
  int64_t top_ = 0, total_ = 0;
};

// Where the caller wants an output written.
Storage outputStorage(const ir::Module &m, const ir::Output &o) {
  switch (o.kind) {
    case ir::Output::Kind::Grad: return {Base::Grads, 0, m.params.at(o.index).offset};
    case ir::Output::Kind::Head: return {Base::Output, o.index, 0};
    case ir::Output::Kind::TaskLoss: return {Base::Losses, 0, o.index};
    case ir::Output::Kind::TotalLoss: return {Base::Losses, 0, (int64_t)m.labels.size()};
    case ir::Output::Kind::TaskGrad:
      return {Base::Grads, 0, o.task * m.paramFloats + m.params.at(o.index).offset};
    case ir::Output::Kind::RepGrad: return {Base::Output, (int)m.labels.size() + o.index, 0};
  }
  throw std::logic_error("planMemory: unknown output kind");
}

// Leaves are the call's arguments; they never take a slot.
Storage leafStorage(const ir::Module &m, const Node &n) {
  int index = (int)n.ints.at(0);
  switch (n.op) {
    case OpKind::Input: return {Base::Input, index, 0};
    case OpKind::Label: return {Base::Label, index, 0};
    case OpKind::Param: return {Base::Params, 0, m.params.at(index).offset};
    case OpKind::LossWeight: return {Base::LossWeights, 0, index};
    default: throw std::logic_error("planMemory: not an external leaf");
  }
}

bool isExternalLeaf(OpKind op) {
  return op == OpKind::Input || op == OpKind::Label || op == OpKind::Param ||
         op == OpKind::LossWeight;
}

}  // namespace

MemoryPlan planMemory(const ir::Module &m, const ir::Function &f, const FusionPlan *fusion,
                      const ScratchFloats &scratch) {
  int ids = f.nextId;
  for (const auto &n : f.nodes) ids = std::max(ids, n->id + 1);

  MemoryPlan plan;
  plan.offset.assign(ids, -1);
  plan.scratch.assign(ids, -1);
  plan.scratchFloats.assign(ids, 0);
  plan.storage.assign(ids, Storage{});

  // Outputs first: the first output bound to a computed node decides where that node is written.
  // Any other output (a second binding, a leaf, a view) is copied at the end.
  std::vector<bool> boundInPlace(ids, false);
  std::vector<const ir::Output *> copyOuts;
  for (const auto &o : f.outputs) {
    const Node &n = *o.value;
    bool computedHere = !isExternalLeaf(n.op) && n.op != OpKind::Reshape;
    if (computedHere && !boundInPlace[n.id]) {
      boundInPlace[n.id] = true;
      plan.storage[n.id] = outputStorage(m, o);
    } else {
      copyOuts.push_back(&o);
    }
  }

  // Fusion: where each node's computation happens (a group member: at its group's last node).
  std::vector<size_t> runsAt(f.nodes.size());
  {
    std::vector<size_t> position(ids, 0);
    for (size_t i = 0; i < f.nodes.size(); ++i) position[f.nodes[i]->id] = i;
    for (size_t i = 0; i < f.nodes.size(); ++i) {
      const FusionGroup *g = fusion ? fusion->group(f.nodes[i].get()) : nullptr;
      runsAt[i] = g ? position[g->last()->id] : i;
    }
  }
  auto interior = [&](const Node &n) { return fusion && fusion->isInterior(&n); };

  // Liveness: a value's slot is free after the last node that reads it (through any chain of
  // views); values copied to outputs at the end live to the end.
  std::vector<int> owner(ids, -1);  // node id -> id of the node whose slot it uses (views)
  std::vector<size_t> lastUse(ids, 0);
  for (size_t i = 0; i < f.nodes.size(); ++i) {
    const Node &n = *f.nodes[i];
    owner[n.id] = n.op == OpKind::Reshape ? owner[n.operands.at(0)->id] : n.id;
    for (const Node *o : n.operands) lastUse[owner[o->id]] = std::max(lastUse[owner[o->id]], runsAt[i]);
  }
  for (const ir::Output *o : copyOuts) lastUse[owner[o->value->id]] = f.nodes.size();
  std::vector<std::vector<int>> dyingAt(f.nodes.size());
  for (const auto &up : f.nodes)
    if (owner[up->id] == up->id && lastUse[up->id] < f.nodes.size())
      dyingAt[lastUse[up->id]].push_back(up->id);

  ActsAllocator acts;
  std::vector<int64_t> slotFloats(ids, 0);
  for (size_t i = 0; i < f.nodes.size(); ++i) {
    const Node &n = *f.nodes[i];
    if (isExternalLeaf(n.op)) {
      plan.storage[n.id] = leafStorage(m, n);
    } else if (n.op == OpKind::Reshape) {
      plan.storage[n.id] = plan.storage[n.operands.at(0)->id];  // a view: same elements, new type
      plan.offset[n.id] = plan.offset[n.operands.at(0)->id];
    } else if (interior(n)) {
      // fused: stays in registers
    } else if (!boundInPlace[n.id]) {
      slotFloats[n.id] = n.type.elements() * (n.type.batched ? m.maxBatch : 1);
      plan.offset[n.id] = acts.allocate(slotFloats[n.id]);
      plan.storage[n.id] = {Base::Acts, 0, plan.offset[n.id]};
    }
    // The kernel's scratch lives only while it runs; its output and operands stay put meanwhile.
    // A fused group's kernel is its root's, run at the group's last node.
    const FusionGroup *group = fusion ? fusion->group(&n) : nullptr;
    const Node &kernel = group && group->last() == &n ? *group->root : n;
    // Leaves and views run no kernel; a fused member's kernel is its group's.
    bool runsKernel = !isExternalLeaf(n.op) && n.op != OpKind::Reshape && !(fusion && fusion->runsInGroup(&n));
    int64_t floats = runsKernel ? scratch(kernel, group && group->last() == &n ? group : nullptr, m.maxBatch) : 0;
    if (floats) {
      plan.scratchFloats[kernel.id] = floats;
      plan.scratch[kernel.id] = acts.allocate(floats);
      if (m.reuseActs) acts.release(plan.scratch[kernel.id], floats);
    }
    if (!m.reuseActs) continue;
    for (int id : dyingAt[i])
      if (plan.offset[id] >= 0 && slotFloats[id] > 0) acts.release(plan.offset[id], slotFloats[id]);
  }
  plan.actsFloats = acts.size();
  plan.actsFloatsWithoutReuse = acts.withoutReuse();

  for (const ir::Output *o : copyOuts) plan.copies.push_back({o->value, outputStorage(m, *o)});
  return plan;
}

}  // namespace mtlc::passes
