// Constant folding, CSE and DCE: each on a hand-built function, then the whole list on real
// programs with the verifier after every pass.
#include "LowerExample.h"

#include "ir/Builder.h"
#include "ir/Verifier.h"
#include "passes/Passes.h"

using namespace mtlc;
using ir::OpKind;

namespace {

ir::Module scalarModule() {
  ir::Module m;
  m.name = "s";
  m.labels = {ir::Type{{1}, true}};
  m.heads = {ir::Type{{1}, true}};
  m.inputs = {ir::Type{{3}, true}};
  m.params = {{"w", {3}, 0}};
  m.functions.push_back(std::make_unique<ir::Function>());
  return m;
}

int count(const ir::Function &f, OpKind op) {
  int c = 0;
  for (const auto &n : f.nodes) c += n->op == op;
  return c;
}

}  // namespace

TEST_CASE("constant folding removes multiplications by one and additions of zero") {
  ir::Module m = scalarModule();
  ir::Function &f = *m.functions[0];
  ir::Builder b(f);
  auto *w = b.lossWeight(0);
  auto *one = b.constant(1.0);
  auto *prod = b.mul(one, w);                          // 1 * w  -> w
  auto *sum = b.add(prod, b.constant(0.0));            // w + 0  -> w
  auto *both = b.mul(b.constant(2.0), b.constant(3.0));  // 2 * 3 -> 6
  f.outputs.push_back({ir::Output::Kind::TotalLoss, 0, b.add(sum, both)});
  CHECK(passes::foldConstants(f));
  const ir::Node *total = f.outputs[0].value;
  REQUIRE(total->operands.size() == 2);
  CHECK(total->operands[0] == w);
  CHECK(total->operands[1]->op == OpKind::Const);
  CHECK(total->operands[1]->f == 6.0);
  CHECK(passes::eliminateDeadCode(f));
  CHECK(count(f, OpKind::Mul) == 0);
  CHECK(f.nodes.size() == 3);  // loss_weight, const 6, add
  CHECK(ir::verify(m).empty());
  CHECK_FALSE(passes::foldConstants(f));  // a fixed point
}

TEST_CASE("CSE merges identical nodes, leaves included, and keeps different attributes apart") {
  ir::Module m = scalarModule();
  ir::Function &f = *m.functions[0];
  ir::Builder b(f);
  auto *x1 = b.input(0, m.inputs[0]);
  auto *x2 = b.input(0, m.inputs[0]);
  auto *r1 = b.unary(OpKind::Relu, x1);
  auto *r2 = b.unary(OpKind::Relu, x2);
  auto *l1 = b.unary(OpKind::LeakyRelu, x1, 0.1);
  auto *l2 = b.unary(OpKind::LeakyRelu, x1, 0.2);
  f.outputs.push_back({ir::Output::Kind::Head, 0, b.add(b.add(r1, r2), b.add(l1, l2))});
  m.heads = {ir::Type{{3}, true}};
  CHECK(passes::eliminateCommonSubexpressions(f));
  CHECK(passes::eliminateDeadCode(f));
  CHECK(count(f, OpKind::Input) == 1);
  CHECK(count(f, OpKind::Relu) == 1);
  CHECK(count(f, OpKind::LeakyRelu) == 2);
  CHECK(ir::verify(m).empty());
}

TEST_CASE("DCE keeps everything an output needs and nothing else") {
  ir::Module m = scalarModule();
  ir::Function &f = *m.functions[0];
  ir::Builder b(f);
  auto *x = b.input(0, m.inputs[0]);
  b.unary(OpKind::Tanh, b.unary(OpKind::Sigmoid, x));  // unused chain
  auto *head = b.unary(OpKind::Relu, x);
  m.heads = {ir::Type{{3}, true}};
  f.outputs.push_back({ir::Output::Kind::Head, 0, head});
  CHECK(passes::eliminateDeadCode(f));
  CHECK(f.nodes.size() == 2);
  CHECK_FALSE(passes::eliminateDeadCode(f));
}

TEST_CASE("the pass list keeps real programs valid and drops the loss-seed arithmetic") {
  for (const char *example : {"fashion.mtl", "tabular.mtl"}) {
    auto lowered = lowerExample(example);
    ir::Function &train = *lowered.module.function("train_step");
    size_t before = train.nodes.size();
    int mulsBefore = count(train, OpKind::Mul);
    REQUIRE_NOTHROW(passes::runGraphPasses(lowered.module, /*verifyEach=*/true));
    CHECK(ir::verify(lowered.module).empty());
    // The backward seed 1·w_i folds to w_i for every task: one mul per task remains (forward).
    CHECK(count(train, OpKind::Mul) == (int)lowered.module.labels.size());
    CHECK(mulsBefore > count(train, OpKind::Mul));
    CHECK(train.nodes.size() < before);
    CHECK(count(train, OpKind::Const) == 0);
    // Every parameter still has its gradient.
    int grads = 0;
    for (const auto &o : train.outputs) grads += o.kind == ir::Output::Kind::Grad;
    CHECK(grads == (int)lowered.module.params.size());
  }
}
