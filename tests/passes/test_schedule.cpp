// The scheduled module (passes/Schedule.h): fusion groups, the memory plan and each kernel's
// scratch, built once; the scratch sizes come only from the back end's hook.
#include "LowerExample.h"

#include "passes/Passes.h"
#include "passes/Schedule.h"

#include <algorithm>

using namespace mtlc;
using ir::OpKind;

namespace {

bool hasKernel(OpKind op) {
  return op != OpKind::Input && op != OpKind::Label && op != OpKind::Param && op != OpKind::LossWeight &&
         op != OpKind::Reshape;
}

// A stand-in back end: every MatMul kernel asks for `floats` (times the batch when `perSample`).
passes::KernelHooks matMulScratch(int64_t floats, int *calls, bool perSample = false) {
  return {[=](const ir::Node &n, const passes::FusionGroup *, int64_t maxBatch) {
    ++*calls;
    return n.op == OpKind::MatMul ? floats * (perSample ? maxBatch : 1) : int64_t(0);
  }};
}

}  // namespace

TEST_CASE("schedule: kernels in call order, each with the scratch its hook asked for") {
  auto lowered = lowerExample("fashion.mtl");
  passes::runGraphPasses(lowered.module);
  const ir::Module &m = lowered.module;
  // More than every value of the flagship together, so that it shows in the arena's size.
  const int64_t big = int64_t(1) << 24;
  int calls = 0;
  passes::ScheduledModule s = passes::scheduleModule(m, true, matMulScratch(big, &calls));
  CHECK(s.module == &m);
  CHECK(s.maxBatch == m.maxBatch);
  REQUIRE(s.functions.size() == m.functions.size());
  int64_t most = 0;
  int matMuls = 0;
  for (size_t i = 0; i < m.functions.size(); ++i) {
    const ir::Function &f = *m.functions[i];
    const passes::ScheduledFunction &sf = s.of(f);
    CHECK(sf.function == &f);
    CHECK_FALSE(sf.fusion.groups.empty());
    most = std::max(most, sf.memory.actsFloats);
    // One kernel per node that computes, except the members its group computes; in node order.
    std::vector<const ir::Node *> expected;
    for (const auto &n : f.nodes)
      if (hasKernel(n->op) && !sf.fusion.runsInGroup(n.get()))
        expected.push_back(sf.fusion.group(n.get()) ? sf.fusion.group(n.get())->root : n.get());
    std::vector<const ir::Node *> roots;
    for (const passes::ScheduledKernel &k : sf.kernels) {
      roots.push_back(k.root);
      INFO(f.name << " kernel " << k.key);
      CHECK(sf.memory.scratch.at(k.root->id) == k.scratchOffset);
      if (k.root->op == OpKind::MatMul) {
        ++matMuls;
        CHECK(k.scratchFloats == big);
        CHECK(k.scratchOffset >= 0);
        CHECK(k.scratchOffset + big <= sf.memory.actsFloats);
        CHECK(k.key.find("scratch=" + std::to_string(big)) != std::string::npos);
      } else {
        CHECK(k.scratchFloats == 0);
        CHECK(k.scratchOffset == -1);
      }
      // A fused kernel's key names every member and the operand the chain flows through.
      if (const passes::FusionGroup *g = sf.group(k)) {
        CHECK(g->root == k.root);
        CHECK(std::count(k.key.begin(), k.key.end(), '|') == (long)g->chain.size());
        CHECK(k.key.find(ir::mnemonic(g->last()->op)) != std::string::npos);
      }
    }
    CHECK(roots == expected);
  }
  CHECK(matMuls > 0);
  CHECK(s.actsFloats == most);
  // The hook is asked once per kernel a plan places (no recomputation behind the schedule).
  int kernels = 0;
  for (const auto &sf : s.functions) kernels += int(sf.kernels.size());
  CHECK(calls == kernels);

  // Without the hook's scratch the arena is smaller than that scratch, and no kernel has any.
  int none = 0;
  passes::ScheduledModule bare = passes::scheduleModule(m, true, matMulScratch(0, &none));
  CHECK(bare.actsFloats < big);
  CHECK(s.actsFloats >= big);
  for (const auto &sf : bare.functions)
    for (const auto &k : sf.kernels) CHECK(k.scratchOffset == -1);
}

TEST_CASE("schedule: unfused, every computing node is a kernel of its own") {
  auto lowered = lowerExample("tabular.mtl");
  passes::runGraphPasses(lowered.module);
  int calls = 0;
  passes::ScheduledModule s = passes::scheduleModule(lowered.module, false, matMulScratch(64, &calls));
  CHECK_FALSE(s.fused);
  for (const passes::ScheduledFunction &sf : s.functions) {
    CHECK(sf.fusion.groups.empty());
    size_t computing = std::count_if(sf.function->nodes.begin(), sf.function->nodes.end(),
                                     [](const auto &n) { return hasKernel(n->op); });
    CHECK(sf.kernels.size() == computing);
    for (const auto &k : sf.kernels) CHECK(k.group == -1);
  }
}

TEST_CASE("schedule: the context key carries the batch the kernels are sized for") {
  auto lowered = lowerExample("tabular.mtl");
  passes::runGraphPasses(lowered.module);
  int calls = 0;
  passes::ScheduledModule a = passes::scheduleModule(lowered.module, true, matMulScratch(8, &calls, true));
  lowered.module.maxBatch *= 2;
  passes::ScheduledModule b = passes::scheduleModule(lowered.module, true, matMulScratch(8, &calls, true));
  CHECK(a.contextKey() != b.contextKey());
  // A batch-dependent scratch changes the keys of the kernels that have it, and only theirs.
  REQUIRE(a.functions[0].kernels.size() == b.functions[0].kernels.size());
  for (size_t i = 0; i < a.functions[0].kernels.size(); ++i) {
    const auto &ka = a.functions[0].kernels[i], &kb = b.functions[0].kernels[i];
    CHECK((ka.key == kb.key) == (ka.root->op != OpKind::MatMul));
  }
}
