#include "MemoryPlan.h"

#include <algorithm>
#include <stdexcept>

namespace mtlc::passes {

namespace {

using ir::Node;
using ir::OpKind;
using Base = Storage::Base;

// Hands out acts slots. Today a bump allocator: every slot lives for the whole call. Liveness-based
// reuse replaces this class (a release() at each value's last use plus a free list); the planning
// loop below stays the same.
class ActsAllocator {
 public:
  int64_t allocate(int64_t floats) {
    int64_t at = top_;
    top_ += (std::max<int64_t>(floats, 1) + kSlotAlign - 1) / kSlotAlign * kSlotAlign;
    return at;
  }
  int64_t size() const { return top_; }

 private:
  int64_t top_ = 0;
};

// Where the caller wants an output written.
Storage outputStorage(const ir::Module &m, const ir::Output &o) {
  switch (o.kind) {
    case ir::Output::Kind::Grad: return {Base::Grads, 0, m.params.at(o.index).offset};
    case ir::Output::Kind::Head: return {Base::Output, o.index, 0};
    case ir::Output::Kind::TaskLoss: return {Base::Losses, 0, o.index};
    case ir::Output::Kind::TotalLoss: return {Base::Losses, 0, (int64_t)m.labels.size()};
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

int64_t scratchFloats(const ir::Node &n) {
  const std::vector<int64_t> *x = nullptr, *w = nullptr, *y = nullptr;
  switch (n.op) {
    case OpKind::Conv2d: x = &n.operands[0]->type.dims, w = &n.operands[1]->type.dims, y = &n.type.dims; break;
    case OpKind::Conv2dBwdData: x = &n.type.dims, w = &n.operands[1]->type.dims, y = &n.operands[0]->type.dims; break;
    case OpKind::Conv2dBwdFilter: x = &n.operands[0]->type.dims, w = &n.type.dims, y = &n.operands[1]->type.dims; break;
    default: return 0;
  }
  int64_t stride = n.ints.at(0), pad = n.ints.at(1);
  bool pointwise = (*w)[2] == 1 && (*w)[3] == 1 && stride == 1 && pad == 0;
  return pointwise ? 0 : (*x)[0] * (*w)[2] * (*w)[3] * (*y)[1] * (*y)[2];
}

MemoryPlan planMemory(const ir::Module &m, const ir::Function &f) {
  int ids = f.nextId;
  for (const auto &n : f.nodes) ids = std::max(ids, n->id + 1);

  MemoryPlan plan;
  plan.offset.assign(ids, -1);
  plan.scratch.assign(ids, -1);
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

  ActsAllocator acts;
  for (const auto &up : f.nodes) {
    const Node &n = *up;
    if (isExternalLeaf(n.op)) {
      plan.storage[n.id] = leafStorage(m, n);
    } else if (n.op == OpKind::Reshape) {
      plan.storage[n.id] = plan.storage[n.operands.at(0)->id];  // a view: same elements, new type
      plan.offset[n.id] = plan.offset[n.operands.at(0)->id];
    } else if (!boundInPlace[n.id]) {
      int64_t floats = n.type.elements() * (n.type.batched ? m.maxBatch : 1);
      plan.offset[n.id] = acts.allocate(floats);
      plan.storage[n.id] = {Base::Acts, 0, plan.offset[n.id]};
    }
    if (int64_t floats = scratchFloats(n)) plan.scratch[n.id] = acts.allocate(floats);
  }
  plan.actsFloats = acts.size();

  for (const ir::Output *o : copyOuts) plan.copies.push_back({o->value, outputStorage(m, *o)});
  return plan;
}

int64_t maxActsFloats(const ir::Module &m) {
  int64_t most = 0;
  for (const auto &f : m.functions) most = std::max(most, planMemory(m, *f).actsFloats);
  return most;
}

}  // namespace mtlc::passes
