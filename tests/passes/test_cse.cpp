// cse (passes/CommonSubexpressions.cpp): golden IR before/after on a real graph (the per-task
// gradient seeds of task_grads merge) and the rules on a hand-built function.
#include "LowerExample.h"

#include "ir/Builder.h"
#include "ir/Verifier.h"
#include "passes/Passes.h"

using namespace mtlc;
using ir::OpKind;

namespace {

int count(const ir::Function &f, OpKind op) {
  int c = 0;
  for (const auto &n : f.nodes) c += n->op == op;
  return c;
}

}  // namespace

TEST_CASE("cse: golden task_grads before and after (after fold-constants): the seeds merge") {
  auto lowered = lowerText(kTwoTaskProgram);
  ir::Module &m = lowered.module;
  ir::Function &f = *m.function("task_grads");
  passes::foldConstants(f);
  CHECK(printed(m, "task_grads") == R"(func @task_grads(n <= 8) {
  %0 = input 0 : [n,3]
  %1 = param "s.0.weight" : [2,3]
  %2 = matmul %0, %1 transB : [n,2]
  %3 = param "s.0.bias" : [2]
  %4 = bias_add %2, %3 : [n,2]  # s.0
  %5 = param "a.0.weight" : [2,2]
  %6 = matmul %4, %5 transB : [n,2]
  %7 = param "a.0.bias" : [2]
  %8 = bias_add %6, %7 : [n,2]  # a.0
  %9 = param "b.0.weight" : [1,2]
  %10 = matmul %4, %9 transB : [n,1]
  %11 = param "b.0.bias" : [1]
  %12 = bias_add %10, %11 : [n,1]  # b.0
  %13 = label task 0 : [n,1]
  %14 = cross_entropy %8, %13 : []  # a.loss
  %15 = loss_weight task 0 : []
  %16 = mul %15, %14 : []
  %17 = label task 1 : [n,1]
  %18 = mse %12, %17 : []  # b.loss
  %19 = loss_weight task 1 : []
  %20 = mul %19, %18 : []
  %21 = add %16, %20 : []  # total_loss
  %22 = const 1 : []
  %23 = cross_entropy_bwd %8, %13, %22 : [n,2]
  %24 = bias_grad %23 : [2]
  %25 = matmul %23, %5 : [n,2]
  %26 = matmul %23, %4 transA : [2,2]
  %27 = bias_grad %25 : [2]
  %28 = matmul %25, %0 transA : [2,3]
  %29 = const 1 : []
  %30 = mse_bwd %12, %17, %29 : [n,1]
  %31 = bias_grad %30 : [1]
  %32 = matmul %30, %9 : [n,2]
  %33 = matmul %30, %4 transA : [1,2]
  %34 = bias_grad %32 : [2]
  %35 = matmul %32, %0 transA : [2,3]
  return head(task 0) = %8
  return head(task 1) = %12
  return loss(task 0) = %14
  return loss(task 1) = %18
  return total_loss = %21
  return task_grad(task 0, a.0.bias) = %24
  return task_grad(task 0, a.0.weight) = %26
  return task_grad(task 0, s.0.bias) = %27
  return task_grad(task 0, s.0.weight) = %28
  return task_grad(task 1, b.0.bias) = %31
  return task_grad(task 1, b.0.weight) = %33
  return task_grad(task 1, s.0.bias) = %34
  return task_grad(task 1, s.0.weight) = %35
}
)");
  CHECK(passes::eliminateCommonSubexpressions(f));
  // Both tasks' seeds read one `const 1`; the other is left for dce.
  CHECK(printed(m, "task_grads") == R"(func @task_grads(n <= 8) {
  %0 = input 0 : [n,3]
  %1 = param "s.0.weight" : [2,3]
  %2 = matmul %0, %1 transB : [n,2]
  %3 = param "s.0.bias" : [2]
  %4 = bias_add %2, %3 : [n,2]  # s.0
  %5 = param "a.0.weight" : [2,2]
  %6 = matmul %4, %5 transB : [n,2]
  %7 = param "a.0.bias" : [2]
  %8 = bias_add %6, %7 : [n,2]  # a.0
  %9 = param "b.0.weight" : [1,2]
  %10 = matmul %4, %9 transB : [n,1]
  %11 = param "b.0.bias" : [1]
  %12 = bias_add %10, %11 : [n,1]  # b.0
  %13 = label task 0 : [n,1]
  %14 = cross_entropy %8, %13 : []  # a.loss
  %15 = loss_weight task 0 : []
  %16 = mul %15, %14 : []
  %17 = label task 1 : [n,1]
  %18 = mse %12, %17 : []  # b.loss
  %19 = loss_weight task 1 : []
  %20 = mul %19, %18 : []
  %21 = add %16, %20 : []  # total_loss
  %22 = const 1 : []
  %23 = cross_entropy_bwd %8, %13, %22 : [n,2]
  %24 = bias_grad %23 : [2]
  %25 = matmul %23, %5 : [n,2]
  %26 = matmul %23, %4 transA : [2,2]
  %27 = bias_grad %25 : [2]
  %28 = matmul %25, %0 transA : [2,3]
  %29 = const 1 : []
  %30 = mse_bwd %12, %17, %22 : [n,1]
  %31 = bias_grad %30 : [1]
  %32 = matmul %30, %9 : [n,2]
  %33 = matmul %30, %4 transA : [1,2]
  %34 = bias_grad %32 : [2]
  %35 = matmul %32, %0 transA : [2,3]
  return head(task 0) = %8
  return head(task 1) = %12
  return loss(task 0) = %14
  return loss(task 1) = %18
  return total_loss = %21
  return task_grad(task 0, a.0.bias) = %24
  return task_grad(task 0, a.0.weight) = %26
  return task_grad(task 0, s.0.bias) = %27
  return task_grad(task 0, s.0.weight) = %28
  return task_grad(task 1, b.0.bias) = %31
  return task_grad(task 1, b.0.weight) = %33
  return task_grad(task 1, s.0.bias) = %34
  return task_grad(task 1, s.0.weight) = %35
}
)");
  CHECK(ir::verify(m).empty());
  CHECK_FALSE(passes::eliminateCommonSubexpressions(f));
}

TEST_CASE("cse: identical nodes merge, leaves included; different attributes stay apart") {
  ir::Module m;
  m.name = "s";
  m.inputs = {ir::Type{{3}, true}};
  m.heads = {ir::Type{{3}, true}};
  m.functions.push_back(std::make_unique<ir::Function>());
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
  CHECK(count(f, OpKind::Input) == 1);
  CHECK(count(f, OpKind::Relu) == 1);
  CHECK(count(f, OpKind::LeakyRelu) == 2);
  CHECK(ir::verify(m).empty());
}
