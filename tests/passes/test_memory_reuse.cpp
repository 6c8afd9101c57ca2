// Liveness-based reuse of activation slots: dead values give their slots to later ones, live
// values never share, and the flagship's arena shrinks against one slot per value.
#include "LowerExample.h"

#include "ir/Builder.h"
#include "passes/MemoryPlan.h"
#include "passes/Passes.h"

using namespace mtlc;
using ir::OpKind;

namespace {

// Reuse does not depend on kernels' working memory (test_schedule.cpp plans scratch).
int64_t noScratch(const ir::Node &, const passes::FusionGroup *, int64_t) { return 0; }

// Intervals [first node, last reader] of every acts slot must not overlap in memory.
void checkNoLiveOverlap(const ir::Module &m, const ir::Function &f, const passes::MemoryPlan &p) {
  std::unordered_map<const ir::Node *, size_t> pos;
  for (size_t i = 0; i < f.nodes.size(); ++i) pos[f.nodes[i].get()] = i;
  struct Slot { int64_t at, floats; size_t born, dies; };
  std::vector<Slot> slots;
  for (size_t i = 0; i < f.nodes.size(); ++i) {
    const ir::Node &n = *f.nodes[i];
    if (p.storage[n.id].base != passes::Storage::Base::Acts || n.op == OpKind::Reshape) continue;
    size_t dies = i;
    // Readers through views count as readers.
    std::vector<const ir::Node *> names{&n};
    for (size_t j = i + 1; j < f.nodes.size(); ++j) {
      const ir::Node &r = *f.nodes[j];
      for (const ir::Node *o : r.operands)
        if (std::find(names.begin(), names.end(), o) != names.end()) {
          dies = j;
          if (r.op == OpKind::Reshape) names.push_back(&r);
        }
    }
    for (const auto &o : f.outputs)
      if (std::find(names.begin(), names.end(), o.value) != names.end()) dies = f.nodes.size();
    slots.push_back({p.offset[n.id], n.type.elements() * (n.type.batched ? m.maxBatch : 1), i, dies});
  }
  for (size_t a = 0; a < slots.size(); ++a)
    for (size_t b = a + 1; b < slots.size(); ++b) {
      bool timeOverlap = slots[a].born <= slots[b].dies && slots[b].born <= slots[a].dies;
      bool memOverlap = slots[a].at < slots[b].at + slots[b].floats && slots[b].at < slots[a].at + slots[a].floats;
      INFO("slots " << a << " and " << b);
      CHECK_FALSE((timeOverlap && memOverlap));
    }
}

}  // namespace

TEST_CASE("a chain of elementwise ops ping-pongs between two slots") {
  ir::Module m;
  m.name = "chain";
  m.maxBatch = 4;
  m.inputs = {ir::Type{{100}, true}};
  m.heads = {ir::Type{{100}, true}};
  m.functions.push_back(std::make_unique<ir::Function>());
  ir::Function &f = *m.functions[0];
  ir::Builder b(f);
  ir::Node *x = b.input(0, m.inputs[0]);
  for (OpKind op : {OpKind::Relu, OpKind::Tanh, OpKind::Sigmoid, OpKind::Gelu, OpKind::Relu, OpKind::Tanh})
    x = b.unary(op, x);
  ir::Node *head = b.unary(OpKind::Sigmoid, x);
  f.outputs.push_back({ir::Output::Kind::Head, 0, head});
  auto p = passes::planMemory(m, f, nullptr, noScratch);
  CHECK(p.actsFloatsWithoutReuse == 6 * 400);
  CHECK(p.actsFloats == 2 * 400);
  checkNoLiveOverlap(m, f, p);
  m.reuseActs = false;
  CHECK(passes::planMemory(m, f, nullptr, noScratch).actsFloats == 6 * 400);
}

TEST_CASE("values still needed by the backward pass keep their slots; the flagship shrinks") {
  for (const char *example : {"fashion.mtl", "tabular.mtl"}) {
    auto lowered = lowerExample(example);
    passes::runGraphPasses(lowered.module);
    for (const auto &f : lowered.module.functions) {
      auto p = passes::planMemory(lowered.module, *f, nullptr, noScratch);
      INFO(example << " " << f->name);
      checkNoLiveOverlap(lowered.module, *f, p);
      CHECK(p.actsFloats <= p.actsFloatsWithoutReuse);
    }
  }
  auto lowered = lowerExample("fashion.mtl");
  passes::runGraphPasses(lowered.module);
  auto p = passes::planMemory(lowered.module, *lowered.module.function("train_step"), nullptr, noScratch);
  // Reuse shrinks the flagship's training arena to well under two thirds of one slot per value.
  CHECK(p.actsFloats * 1.5 < p.actsFloatsWithoutReuse);
}
