// Sibling products (ir/Siblings.h, passes/SiblingProducts.cpp): the lowering's layout puts their
// weights back to back without changing the parameter table, and the pass runs each run of them
// as one product over the span, forward and backward. The numbers are checked against the
// separate products in tests/codegen/TestSiblings.cpp.
#include "LowerExample.h"

#include "ir/Siblings.h"
#include "ir/Verifier.h"
#include "passes/Passes.h"

#include <algorithm>

using namespace mtlc;
using ir::OpKind;

namespace {

const char *kMixture = R"(model mm
input x : f32[100]
shared experts = x -> mixture(experts=4) { dense(16) -> relu }
task a { gate(experts) -> dense(8) -> relu -> dense(1)  loss mse }
task b { gate(experts) -> dense(8) -> relu -> dense(1)  loss mse }
train { optimizer adam(lr=0.001)  batch 32 }
)";

// Products reading `input` (x·Wᵀ with W a parameter or a span).
std::vector<const ir::Node *> productsOf(const ir::Function &f, const ir::Node *input) {
  std::vector<const ir::Node *> out;
  for (const auto &n : f.nodes)
    if (n->op == OpKind::MatMul && n->ints[1] == 1 && n->operands[0] == input && n->operands[1]->op == OpKind::Param)
      out.push_back(n.get());
  return out;
}

const ir::Node *firstInput(const ir::Function &f) {
  for (const auto &n : f.nodes)
    if (n->op == OpKind::Input) return n.get();
  return nullptr;
}

// Every trainable parameter's gradient is written by exactly one Grad output (alone or in a span).
void checkEveryGradientOnce(const ir::Module &m, const ir::Function &f) {
  std::vector<int> covered(m.params.size(), 0);
  for (const auto &o : f.outputs) {
    if (o.kind != ir::Output::Kind::Grad) continue;
    const std::vector<int> span = ir::paramSpan(m, o.index, o.value->type.dims);
    REQUIRE_FALSE(span.empty());
    for (int p : span) ++covered[p];
  }
  for (size_t i = 0; i < m.params.size(); ++i) {
    INFO(m.params[i].name);
    CHECK(covered[i] == (m.params[i].state ? 0 : 1));
  }
}

}  // namespace

TEST_CASE("siblings: a mixture's experts and gates become one product, forward and backward") {
  auto lowered = lowerText(kMixture);
  const ir::Module &m = lowered.module;
  // The layout: the 4 expert weights ([16,100]) and 2 gate weights ([4,100]) back to back, in program order; the
  // table (names, order, hence initialisation order) as the lowering built it.
  std::vector<std::string> names;
  for (const auto &p : lowered.params) names.push_back(p.name);
  CHECK(names.front() == "experts.0.0.0.weight");
  CHECK(names[1] == "experts.0.0.0.bias");
  const std::vector<std::string> weights = {"experts.0.0.0.weight", "experts.0.1.0.weight", "experts.0.2.0.weight",
                                            "experts.0.3.0.weight", "experts.0.gate.a.weight", "experts.0.gate.b.weight"};
  int64_t next = 0;
  for (const std::string &w : weights) {
    auto it = std::find(names.begin(), names.end(), w);
    REQUIRE(it != names.end());
    const size_t i = size_t(it - names.begin());
    CHECK(m.params[i].offset == next);
    CHECK(lowered.params[i].offset == m.params[i].offset);
    next += m.params[i].elements();
  }

  passes::runGraphPasses(lowered.module, /*verifyEach=*/true);
  CHECK(ir::verify(m).empty());
  for (const char *fname : {"train_step", "eval_step", "predict"}) {
    const ir::Function &f = *m.function(fname);
    auto products = productsOf(f, firstInput(f));
    REQUIRE(products.size() == 1);
    CHECK(products[0]->type.dims == std::vector<int64_t>{4 * 16 + 2 * 4});
    CHECK(ir::paramSpan(m, (int)products[0]->operands[1]->ints[0], products[0]->operands[1]->type.dims).size() == 6);
  }
  const ir::Function &train = *m.function("train_step");
  checkEveryGradientOnce(m, train);
  // The weight gradient of the span is one product Cᵀ·x over the concatenated output gradients.
  auto spanGrad = std::find_if(train.outputs.begin(), train.outputs.end(), [&](const ir::Output &o) {
    return o.kind == ir::Output::Kind::Grad && o.value->type.dims == std::vector<int64_t>{72, 100};
  });
  REQUIRE(spanGrad != train.outputs.end());
  CHECK(spanGrad->value->op == OpKind::MatMul);
  CHECK(spanGrad->value->operands[0]->op == OpKind::Concat);
  CHECK(spanGrad->value->operands[1] == firstInput(train));
}

TEST_CASE("siblings: the flagship's heads share one product, and its input gradient is one product") {
  auto lowered = lowerExample("fashion.mtl");
  passes::runGraphPasses(lowered.module, /*verifyEach=*/true);
  const ir::Module &m = lowered.module;
  const ir::Function &train = *m.function("train_step");
  checkEveryGradientOnce(m, train);
  // Both dense(64) heads read the flattened trunk through one [128,5408] span.
  int spans = 0;
  for (const auto &n : train.nodes)
    if (n->op == OpKind::Param && n->type.dims == std::vector<int64_t>{128, 5408}) ++spans;
  CHECK(spans == 1);
  // dA = C·[W₀;W₁]: no add of two [n,5408] products is left.
  for (const auto &n : train.nodes)
    if (n->op == OpKind::Add && n->type.batched && n->type.dims == std::vector<int64_t>{5408})
      FAIL("the input gradient is still a sum of two products");
  int inputGrads = 0;
  for (const auto &n : train.nodes)
    if (n->op == OpKind::MatMul && n->ints[0] == 0 && n->ints[1] == 0 && n->type.dims == std::vector<int64_t>{5408} &&
        n->operands[0]->op == OpKind::Concat)
      ++inputGrads;
  CHECK(inputGrads == 1);
}

TEST_CASE("siblings: runs only over adjacent weights, and --disable-pass=siblings keeps the products apart") {
  // Over a 6-wide trunk dense(16) and dense(8) are whole 16-float units, dense(3) (18 floats) is
  // not: a run takes at most one such weight, last, and the other dense(3) stays a product alone.
  const char *text = R"(model t
input x : f32[6]
shared trunk = x -> dense(6) -> relu
task a { trunk -> dense(16)  loss mse }
task b { trunk -> dense(3)  loss cross_entropy }
task c { trunk -> dense(3)  loss cross_entropy }
task d { trunk -> dense(8)  loss mse }
train { optimizer sgd(lr=0.1)  batch 8 }
)";
  auto lowered = lowerText(text);
  auto apart = lowerText(text);
  passes::runGraphPasses(lowered.module, /*verifyEach=*/true);
  passes::PassSettings off;
  off.disabled = {"siblings"};
  passes::runGraphPasses(apart.module, off, /*verifyEach=*/true);
  const ir::Function &f = *lowered.module.function("train_step");
  const ir::Function &g = *apart.module.function("train_step");
  checkEveryGradientOnce(lowered.module, f);
  checkEveryGradientOnce(apart.module, g);
  const ir::Node *trunk = nullptr;
  for (const auto &n : f.nodes)
    if (n->op == OpKind::Relu) trunk = n.get();
  REQUIRE(trunk);
  auto products = productsOf(f, trunk);
  REQUIRE(products.size() == 2);
  std::vector<int64_t> widths;
  for (const ir::Node *p : products) widths.push_back(p->type.dims[0]);
  std::sort(widths.begin(), widths.end());
  CHECK(widths == std::vector<int64_t>{3, 27});
  const ir::Node *trunkApart = nullptr;
  for (const auto &n : g.nodes)
    if (n->op == OpKind::Relu) trunkApart = n.get();
  CHECK(productsOf(g, trunkApart).size() == 4);
}
