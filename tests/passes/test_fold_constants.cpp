// fold-constants (passes/FoldConstants.cpp): golden IR before/after on a real training graph,
// where it folds the loss weight into the gradient seed, and the rules on a hand-built function.
#include "LowerExample.h"

#include "ir/Builder.h"
#include "ir/Verifier.h"
#include "passes/Passes.h"

using namespace mtlc;
using ir::OpKind;

TEST_CASE("fold-constants: golden train_step before and after; the loss weight seeds the gradient") {
  auto lowered = lowerText(kTinyProgram);
  ir::Module &m = lowered.module;
  CHECK(printed(m, "train_step") == golden("tiny.lowered.ir"));
  CHECK(passes::foldConstants(*m.function("train_step")));
  // `mul %const1, %loss_weight` (the seed of d(total) times w) is gone: cross_entropy_bwd reads
  // the loss weight itself, so no pass over the gradient scales it. The dead nodes stay for dce.
  CHECK(printed(m, "train_step") == golden("tiny.folded.ir"));
  CHECK(ir::verify(m).empty());
  CHECK_FALSE(passes::foldConstants(*m.function("train_step")));  // a fixed point
}

TEST_CASE("fold-constants: x*1, 1*x, x+0 and const∘const on a hand-built function") {
  ir::Module m;
  m.name = "s";
  m.labels = {ir::Type{{1}, true}};
  m.heads = {ir::Type{{1}, true}};
  m.functions.push_back(std::make_unique<ir::Function>());
  ir::Function &f = *m.functions[0];
  ir::Builder b(f);
  auto *w = b.lossWeight(0);
  auto *prod = b.mul(b.constant(1.0), w);                // 1 * w  -> w
  auto *sum = b.add(prod, b.constant(0.0));              // w + 0  -> w
  auto *both = b.mul(b.constant(2.0), b.constant(3.0));  // 2 * 3  -> 6
  f.outputs.push_back({ir::Output::Kind::TotalLoss, 0, b.add(sum, both)});
  CHECK(passes::foldConstants(f));
  const ir::Node *total = f.outputs[0].value;
  REQUIRE(total->operands.size() == 2);
  CHECK(total->operands[0] == w);
  CHECK(total->operands[1]->op == OpKind::Const);
  CHECK(total->operands[1]->f == 6.0);
  CHECK(ir::verify(m).empty());
}
