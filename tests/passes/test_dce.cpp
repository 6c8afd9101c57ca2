// dce (passes/DeadCode.cpp): golden IR before/after on a real training graph (what folding and
// CSE left behind goes) and the rule on a hand-built function.
#include "LowerExample.h"

#include "ir/Builder.h"
#include "ir/Verifier.h"
#include "passes/Passes.h"

using namespace mtlc;
using ir::OpKind;

TEST_CASE("dce: golden train_step before and after (after fold-constants and cse)") {
  auto lowered = lowerText(kTinyProgram);
  ir::Module &m = lowered.module;
  ir::Function &f = *m.function("train_step");
  passes::foldConstants(f);
  passes::eliminateCommonSubexpressions(f);
  checkGoldenPass(m, "train_step", passes::eliminateDeadCode, "tiny.folded.ir", "tiny.dce.ir");
}

TEST_CASE("dce: keeps everything an output needs and nothing else") {
  ir::Module m = handBuiltModule({ir::Type{{3}, true}}, {ir::Type{{3}, true}});
  ir::Function &f = *m.functions[0];
  ir::Builder b(f);
  auto *x = b.input(0, m.inputs[0]);
  b.unary(OpKind::Tanh, b.unary(OpKind::Sigmoid, x));  // unused chain
  auto *head = b.unary(OpKind::Relu, x);
  f.outputs.push_back({ir::Output::Kind::Head, 0, head});
  CHECK(passes::eliminateDeadCode(f));
  CHECK(f.nodes.size() == 2);
  CHECK_FALSE(passes::eliminateDeadCode(f));
}
