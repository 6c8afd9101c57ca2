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
  %14 = const 1 : []
  %15 = mul %14, %12 : []
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
  CHECK(passes::eliminateDeadCode(f));
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
  CHECK(ir::verify(m).empty());
  CHECK_FALSE(passes::eliminateDeadCode(f));
}

TEST_CASE("dce: keeps everything an output needs and nothing else") {
  ir::Module m;
  m.name = "s";
  m.inputs = {ir::Type{{3}, true}};
  m.heads = {ir::Type{{3}, true}};
  m.functions.push_back(std::make_unique<ir::Function>());
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
