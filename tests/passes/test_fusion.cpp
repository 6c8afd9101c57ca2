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
  CHECK(printed(m, "train_step") == R"(func @train_step(n <= 8) {
  %0 = input 0 : [n,4]
  %1 = param "y.0.weight" : [3,4]
  %2 = matmul %0, %1 transB : [n,3]
  %3 = param "y.0.bias" : [3]
  %4 = bias_add %2, %3 : [n,3]  # y.0
  %5 = relu %4 : [n,3]  # y.1
  %6 = param "y.2.weight" : [2,3]
  %7 = matmul %5, %6 transB : [n,2]
  %8 = param "y.2.bias" : [2]
  %9 = bias_add %7, %8 : [n,2]  # y.2
  %10 = label task 0 : [n,1]
  %11 = cross_entropy %9, %10 : []  # y.loss
  %12 = loss_weight task 0 : []
  %13 = mul %12, %11 : []  # total_loss
  %16 = cross_entropy_bwd %9, %10, %12 : [n,2]
  %17 = bias_grad %16 : [2]  # d(y.2.bias)
  %18 = matmul %16, %6 : [n,3]
  %19 = matmul %16, %5 transA : [2,3]  # d(y.2.weight)
  %20 = relu_bwd %5, %18 : [n,3]
  %21 = bias_grad %20 : [3]  # d(y.0.bias)
  %22 = matmul %20, %0 transA : [3,4]  # d(y.0.weight)
  return head(task 0) = %9
  return loss(task 0) = %11
  return total_loss = %13
  return grad(y.0.weight) = %22
  return grad(y.0.bias) = %21
  return grad(y.2.weight) = %19
  return grad(y.2.bias) = %17
}
)");
  std::ostringstream os;
  passes::printFused(m, *m.function("train_step"), os);
  // Softmax + cross-entropy is one node each way (cross_entropy forward, cross_entropy_bwd
  // backward, both row-wise kernels that never store the probabilities); matmul + bias_add is one
  // kernel (the logits); the loss gradient seeds the weight-gradient matmul directly.
  CHECK(os.str() == R"(func @train_step(n <= 8) {
  %0 = input 0 : [n,4]
  %1 = param "y.0.weight" : [3,4]
  %2 = matmul %0, %1 transB : [n,3]  ; fused into %5
  %3 = param "y.0.bias" : [3]
  %4 = bias_add %2, %3 : [n,3]  # y.0  ; fused into %5
  %5 = relu %4 : [n,3]  # y.1  ; kernel: %2 matmul -> %4 bias_add -> %5 relu
  %6 = param "y.2.weight" : [2,3]
  %7 = matmul %5, %6 transB : [n,2]  ; fused into %9
  %8 = param "y.2.bias" : [2]
  %9 = bias_add %7, %8 : [n,2]  # y.2  ; kernel: %7 matmul -> %9 bias_add
  %10 = label task 0 : [n,1]
  %11 = cross_entropy %9, %10 : []  # y.loss
  %12 = loss_weight task 0 : []
  %13 = mul %12, %11 : []  # total_loss
  %16 = cross_entropy_bwd %9, %10, %12 : [n,2]
  %17 = bias_grad %16 : [2]  # d(y.2.bias)
  %18 = matmul %16, %6 : [n,3]  ; fused into %20
  %19 = matmul %16, %5 transA : [2,3]  # d(y.2.weight)
  %20 = relu_bwd %5, %18 : [n,3]  ; kernel: %18 matmul -> %20 relu_bwd
  %21 = bias_grad %20 : [3]  # d(y.0.bias)
  %22 = matmul %20, %0 transA : [3,4]  # d(y.0.weight)
  return head(task 0) = %9
  return loss(task 0) = %11
  return total_loss = %13
  return grad(y.0.weight) = %22
  return grad(y.0.bias) = %21
  return grad(y.2.weight) = %19
  return grad(y.2.bias) = %17
}
)");
}

TEST_CASE("forward: bias and relu fuse into the matmul and the conv that produce them") {
  auto lowered = lowerExample("fashion.mtl");
  passes::runGraphPasses(lowered.module);
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
