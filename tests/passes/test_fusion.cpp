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
  // Nothing that is an output or has two readers is interior, but a per-sample prologue's value,
  // which its kernel's root and siblings read.
  auto uses = train.useCounts();
  for (size_t i = 0; i < train.nodes.size(); ++i) {
    const ir::Node *n = train.nodes[i].get();
    if (!plan.isInterior(n)) continue;
    const passes::FusionGroup *g = plan.group(n);
    if (!g->prologue.empty() && g->prologue.back() == n) CHECK(uses[i] == 1 + (long)g->siblings.size());
    else CHECK(uses[i] == 1);
  }
}

TEST_CASE("backward: the pooling and relu gradients run per sample inside the filter and bias gradients") {
  auto lowered = lowerExample("fashion.mtl");
  passes::runGraphPasses(lowered.module);
  const ir::Function &train = *lowered.module.function("train_step");
  auto plan = passes::planFusion(train);
  const passes::FusionGroup *g = nullptr;
  for (const auto &group : plan.groups)
    if (group.root->op == OpKind::Conv2dBwdFilter) g = &group;
  REQUIRE(g != nullptr);
  REQUIRE(g->prologue.size() == 2);
  CHECK(g->prologue[0]->op == OpKind::MaxPoolBwd);
  CHECK(g->prologue[1]->op == OpKind::ReluBwd);
  CHECK(g->prologueOperand == 1);
  CHECK(g->root->operands[1] == g->prologue[1]);
  REQUIRE(g->siblings.size() == 1);
  CHECK(g->siblings[0]->op == OpKind::BiasGrad);
  CHECK(passes::dataOperand(*g->prologue[0], plan) == -1);
  CHECK(passes::dataOperand(*g->prologue[1], plan) == 1);
  // The data gradient is never stored; the bias gradient is, by the group's kernel.
  for (const ir::Node *m : g->prologue) CHECK(plan.isInterior(m));
  CHECK_FALSE(plan.isInterior(g->siblings[0]));
  CHECK(plan.runsInGroup(g->siblings[0]));
  CHECK_FALSE(plan.runsInGroup(g->root));
  // The maxpool_bwd → relu_bwd group it replaces is gone.
  CHECK_FALSE(hasGroup(plan, {OpKind::MaxPoolBwd, OpKind::ReluBwd}));
  std::ostringstream os;
  passes::printFused(lowered.module, train, os);
  CHECK(os.str().find("kernel: %56 maxpool_bwd -> %57 relu_bwd -> %59 conv2d_bwd_filter, %58 bias_grad") !=
        std::string::npos);
  CHECK(os.str().find("bias_grad %57 : [32]  # d(trunk.0.bias)  ; computed in %59") != std::string::npos);
}

TEST_CASE("a per-sample prologue needs every reader of its value in the kernel") {
  // Two conv layers: the second's dy (after its pool and relu) is also read by its data gradient,
  // and the first's dy comes out of that data gradient's GEMM (not a per-sample producer): both
  // are stored, and the filter gradients read them from memory.
  auto lowered = lowerText(R"(model m
input x : f32[1, 12, 12]
shared t = x -> conv2d(4, kernel=3) -> relu -> conv2d(3, kernel=3) -> relu -> maxpool(2) -> flatten
task a { t -> dense(2) loss cross_entropy }
)");
  passes::runGraphPasses(lowered.module);
  const ir::Function &train = *lowered.module.function("train_step");
  auto plan = passes::planFusion(train);
  int filterGrads = 0;
  for (const auto &up : train.nodes) {
    if (up->op != OpKind::Conv2dBwdFilter) continue;
    ++filterGrads;
    CHECK_FALSE(plan.isInterior(up->operands[1]));
    const passes::FusionGroup *g = plan.group(up.get());
    CHECK((g == nullptr || g->prologue.empty()));
  }
  CHECK(filterGrads == 2);
  for (const auto &up : train.nodes)
    if (up->op == OpKind::BiasGrad) CHECK_FALSE(plan.runsInGroup(up.get()));
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
