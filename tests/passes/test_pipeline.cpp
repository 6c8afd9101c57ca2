// The pass pipeline (passes/Pipeline.cpp): the whole list on real programs with the verifier after
// every pass, and the settings behind -O0 / --disable-pass. Each pass has its own golden tests.
#include "LowerExample.h"

#include "ir/Builder.h"
#include "ir/Verifier.h"
#include "passes/Passes.h"

using namespace mtlc;
using ir::OpKind;

TEST_CASE("the pass list keeps real programs valid and drops the loss-seed arithmetic") {
  for (const char *example : {"fashion.mtl", "tabular.mtl"}) {
    auto lowered = lowerExample(example);
    ir::Function &train = *lowered.module.function("train_step");
    size_t before = train.nodes.size();
    int mulsBefore = countOps(train, OpKind::Mul);
    REQUIRE_NOTHROW(passes::runGraphPasses(lowered.module, /*verifyEach=*/true));
    CHECK(ir::verify(lowered.module).empty());
    // The backward seed 1·w_i folds to w_i for every task: one mul per task remains (forward).
    CHECK(countOps(train, OpKind::Mul) == (int)lowered.module.labels.size());
    CHECK(mulsBefore > countOps(train, OpKind::Mul));
    CHECK(train.nodes.size() < before);
    CHECK(countOps(train, OpKind::Const) == 0);
    // Every parameter still has its gradient (sibling weights' in one span output).
    int64_t grads = 0;
    for (const auto &o : train.outputs)
      if (o.kind == ir::Output::Kind::Grad) grads += (int64_t)ir::paramSpan(lowered.module, o.index, o.value->type.dims).size();
    CHECK(grads == (int64_t)lowered.module.params.size());
  }
}

TEST_CASE("pass settings: -O0 runs none, --disable-pass one; names are checked") {
  CHECK(passes::passNames() == std::vector<std::string>{"fold-constants", "cse", "siblings", "dce", "fusion"});
  passes::PassSettings all, o0, noCse;
  o0.optimize = false;
  noCse.disabled = {"cse"};
  for (const std::string &n : passes::passNames()) {
    CHECK(all.runs(n));
    CHECK_FALSE(o0.runs(n));
    CHECK(noCse.runs(n) == (n != "cse"));
  }
  CHECK(passes::checkPassNames({"dce", "fusion"}).empty());
  CHECK(passes::checkPassNames({"dce", "DCE"}) ==
        "unknown pass 'DCE' (known: fold-constants, cse, siblings, dce, fusion)");

  // Without cse each task's gradient seed keeps its own `const 1`; without any pass the graph is
  // as lowered.
  auto lowered = lowerText(kTwoTaskProgram), merged = lowerText(kTwoTaskProgram);
  passes::runGraphPasses(lowered.module, noCse, /*verifyEach=*/true);
  passes::runGraphPasses(merged.module, all, /*verifyEach=*/true);
  CHECK(countOps(*lowered.module.function("task_grads"), OpKind::Const) == 2);
  CHECK(countOps(*merged.module.function("task_grads"), OpKind::Const) == 1);
  auto untouched = lowerExample("tabular.mtl");
  passes::runGraphPasses(untouched.module, o0);
  CHECK(printed(untouched.module, "train_step") == printed(lowerExample("tabular.mtl").module, "train_step"));
}
