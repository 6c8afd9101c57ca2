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
  // `mul %const1, %loss_weight` (the seed of d(total) times w) is bypassed: cross_entropy_bwd
  // reads the loss weight itself, so no pass over the gradient scales it. Dead nodes stay for dce.
  checkGoldenPass(lowered.module, "train_step", passes::foldConstants, "tiny.lowered.ir", "tiny.folded.ir");
}

TEST_CASE("fold-constants: x*1, 1*x, x+0 and const∘const on a hand-built function") {
  ir::Module m = handBuiltModule({}, {ir::Type{{1}, true}}, {ir::Type{{1}, true}});
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
