// cse (passes/CommonSubexpressions.cpp): golden IR before/after on a real graph (the per-task
// gradient seeds of task_grads merge) and the rules on a hand-built function.
#include "LowerExample.h"

#include "ir/Builder.h"
#include "ir/Verifier.h"
#include "passes/Passes.h"

using namespace mtlc;
using ir::OpKind;

TEST_CASE("cse: golden task_grads before and after (after fold-constants): the seeds merge") {
  auto lowered = lowerText(kTwoTaskProgram);
  ir::Module &m = lowered.module;
  ir::Function &f = *m.function("task_grads");
  passes::foldConstants(f);
  // Both tasks' seeds read one `const 1`; the other is left for dce.
  checkGoldenPass(m, "task_grads", passes::eliminateCommonSubexpressions, "two.folded.ir", "two.cse.ir");
}

TEST_CASE("cse: identical nodes merge, leaves included; different attributes stay apart") {
  ir::Module m = handBuiltModule({ir::Type{{3}, true}}, {ir::Type{{3}, true}});
  ir::Function &f = *m.functions[0];
  ir::Builder b(f);
  auto *x1 = b.input(0, m.inputs[0]);
  auto *x2 = b.input(0, m.inputs[0]);
  auto *r1 = b.unary(OpKind::Relu, x1);
  auto *r2 = b.unary(OpKind::Relu, x2);
  auto *l1 = b.unary(OpKind::LeakyRelu, x1, 0.1);
  auto *l2 = b.unary(OpKind::LeakyRelu, x1, 0.2);
  f.outputs.push_back({ir::Output::Kind::Head, 0, b.add(b.add(r1, r2), b.add(l1, l2))});
  CHECK(passes::eliminateCommonSubexpressions(f));
  CHECK(passes::eliminateDeadCode(f));
  CHECK(countOps(f, OpKind::Input) == 1);
  CHECK(countOps(f, OpKind::Relu) == 1);
  CHECK(countOps(f, OpKind::LeakyRelu) == 2);
  CHECK(ir::verify(m).empty());
}
