// The fusion planner groups by op class: what fuses in the flagship's forward and backward graphs.
#include "LowerExample.h"

#include "passes/Fusion.h"
#include "passes/Passes.h"

using namespace mtlc;
using ir::OpKind;

namespace {

std::vector<std::vector<OpKind>> groupOps(const passes::FusionPlan &plan) {
  std::vector<std::vector<OpKind>> out;
  for (const auto &g : plan.groups) {
    std::vector<OpKind> ops{g.root->op};
    for (const auto *n : g.chain) ops.push_back(n->op);
    out.push_back(ops);
  }
  return out;
}

bool hasGroup(const passes::FusionPlan &plan, std::vector<OpKind> ops) {
  for (const auto &g : groupOps(plan))
    if (g == ops) return true;
  return false;
}

}  // namespace

TEST_CASE("fusion: golden train_step after the rewrites, groups marked as --emit=ir-opt shows them") {
  auto lowered = lowerText(kTinyProgram);
  passes::runGraphPasses(lowered.module);
  const ir::Module &m = lowered.module;
  CHECK(printed(m, "train_step") == golden("tiny.dce.ir"));
  std::ostringstream os;
  passes::printFused(m, *m.function("train_step"), os);
  // Softmax + cross-entropy is one node each way (cross_entropy forward, cross_entropy_bwd
  // backward, both row-wise kernels that never store the probabilities); matmul + bias_add is one
  // kernel (the logits); the loss gradient seeds the weight-gradient matmul directly.
  CHECK(os.str() == golden("tiny.fused.ir"));
}

TEST_CASE("forward: bias and relu fuse into the matmul and the conv that produce them") {
  // The heads' first products apart (with the pass `siblings` they are one product, and bias and
  // relu fuse into each head's slice of it instead).
  auto withSiblings = lowerExample("fashion.mtl");
  passes::runGraphPasses(withSiblings.module);
  CHECK(hasGroup(passes::planFusion(*withSiblings.module.function("predict")),
                 {OpKind::Slice, OpKind::BiasAdd, OpKind::Relu}));
  auto lowered = lowerExample("fashion.mtl");
  passes::PassSettings apart;
  apart.disabled = {"siblings"};
  passes::runGraphPasses(lowered.module, apart);
  auto plan = passes::planFusion(*lowered.module.function("predict"));
  CHECK(hasGroup(plan, {OpKind::Conv2d, OpKind::BiasAdd, OpKind::Relu}));
  CHECK(hasGroup(plan, {OpKind::MatMul, OpKind::BiasAdd, OpKind::Relu}));
  // Heads end in matmul + bias_add: the output itself is the group's last node.
  CHECK(hasGroup(plan, {OpKind::MatMul, OpKind::BiasAdd}));
  for (const auto &g : plan.groups) {
    CHECK_FALSE(plan.isInterior(g.last()));
    CHECK(plan.isInterior(g.root));
  }
}

TEST_CASE("backward: the relu derivative fuses into the matmul that produces the gradient") {
  auto lowered = lowerExample("fashion.mtl");
  passes::runGraphPasses(lowered.module);
  const ir::Function &train = *lowered.module.function("train_step");
  auto plan = passes::planFusion(train);
  CHECK(hasGroup(plan, {OpKind::MatMul, OpKind::ReluBwd}));
  // In training the pre-activation is not saved: relu_bwd reads relu's output, so the forward
  // groups are as long as at inference.
  CHECK(hasGroup(plan, {OpKind::Conv2d, OpKind::BiasAdd, OpKind::Relu}));
  for (const auto &g : plan.groups)
    for (const auto *n : g.chain) CHECK(passes::dataOperand(*n, plan) >= 0);
  // Nothing that is an output or has two readers is interior.
  auto uses = train.useCounts();
  for (size_t i = 0; i < train.nodes.size(); ++i)
    if (plan.isInterior(train.nodes[i].get())) CHECK(uses[i] == 1);
}

TEST_CASE("a value read twice is never fused away") {
  auto lowered = lowerText(R"(model m
input x : f32[4]
shared t = x -> dense(8) -> sigmoid
task a { t -> dense(1) loss mse }
task b { t -> dense(1) loss mse }
)");
  passes::runGraphPasses(lowered.module);
  auto plan = passes::planFusion(*lowered.module.function("predict"));
  // sigmoid's output feeds two heads: it ends its group.
  CHECK(hasGroup(plan, {OpKind::MatMul, OpKind::BiasAdd, OpKind::Sigmoid}));
  for (const auto &g : plan.groups)
    if (g.last()->op == OpKind::Sigmoid) CHECK_FALSE(plan.isInterior(g.last()));
}
