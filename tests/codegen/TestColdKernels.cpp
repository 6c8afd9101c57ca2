// Cold kernels (codegen::kColdKernel, KernelWork.h): the kernels below kColdShare of a module's
// work, and the entry points, are marked so; the JIT compiles them into a partition of their own
// with unoptimised machine code. The marks follow the work estimate, and a module whose kernels
// are all hot is compiled as before. (Every other codegen test runs its graph through this split:
// the entry point of each is cold, and so are the small kernels of the multi-kernel ones.)
#include "Harness.h"

#include "codegen/Codegen.h"

#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>

#include <map>

using namespace mtlc;
using namespace mtlc::test;

namespace {

// Function name -> whether it is marked cold, for the module emitted from h's IR.
std::map<std::string, bool> coldMarks(Harness &h) {
  llvm::LLVMContext ctx;
  std::unique_ptr<llvm::Module> m =
      codegen::emitModule(codegen::scheduleModule(h.module, {}), ctx, llvm::DataLayout(""), {});
  std::map<std::string, bool> marks;
  for (const llvm::Function &f : *m)
    if (!f.isDeclaration()) marks[f.getName().str()] = f.hasFnAttribute(codegen::kColdKernel);
  return marks;
}

bool anyNamed(const std::map<std::string, bool> &marks, const std::string &part, bool cold) {
  for (const auto &[name, isCold] : marks)
    if (name.find(part) != std::string::npos && isCold == cold) return true;
  return false;
}

}  // namespace

TEST_CASE("cold kernels: a loss after a large layer is cold, the layer and the head are not", "[codegen][cold]") {
  Harness h(64);
  Node *x = h.input({2048});
  Node *W1 = h.param({256, 2048}), *W2 = h.param({1, 256});
  Node *y = h.label({1});
  // Work (KernelWork.h units): the layer 64·2048·256 multiply-adds; the head reads its [64, 256]
  // input (about 1M as cold code, 3% of the total: hot); the loss reads 129 floats.
  Node *hid = h.b.unary(ir::OpKind::Relu, h.b.matmul(x, W1, false, true));
  Node *head = h.b.unary(ir::OpKind::Tanh, h.b.matmul(hid, W2, false, true));
  Node *loss = h.b.loss(ir::OpKind::MSE, head, y);
  h.bind(head, ir::Output::Kind::Head, 0);
  h.bind(loss, ir::Output::Kind::TaskLoss, 0);
  auto marks = coldMarks(h);
  INFO(marks.size() << " functions");
  CHECK(anyNamed(marks, "matmul+relu", false));  // the layer
  CHECK(!anyNamed(marks, "matmul+relu", true));
  CHECK(anyNamed(marks, "matmul+tanh", false));  // the head
  CHECK(!anyNamed(marks, "matmul+tanh", true));
  CHECK(anyNamed(marks, "mse", true));           // the loss
  CHECK(!anyNamed(marks, "mse", false));
  CHECK(anyNamed(marks, "mtlc_", true));         // the entry point
  CHECK(!anyNamed(marks, "mtlc_", false));

  // Compiled and run: the loss against a double loop.
  h.fillUniform(x);
  h.fillUniform(W1, -0.1, 0.1);
  h.fillUniform(W2, -0.1, 0.1);
  h.fillUniform(y);
  const int n = 5;
  h.run(n);
  auto X = values(h, x), A = values(h, W1), B = values(h, W2), Y = values(h, y);
  double sum = 0;
  for (int s = 0; s < n; ++s) {
    double out = 0;
    for (int j = 0; j < 256; ++j) {
      double acc = 0;
      for (int i = 0; i < 2048; ++i) acc += X[s * 2048 + i] * A[j * 2048 + i];
      out += std::max(acc, 0.0) * B[j];
    }
    double d = std::tanh(out) - Y[s];
    sum += d * d;
  }
  requireClose(h.read(loss), {sum / n}, 1e-5, 1e-7, "cold mse");
}

TEST_CASE("cold kernels: a module of one kernel has only its entry point cold", "[codegen][cold]") {
  Harness h(4);
  Node *y = h.b.unary(ir::OpKind::Relu, h.input({8}));
  h.bind(y, ir::Output::Kind::Head, 0);
  auto marks = coldMarks(h);
  CHECK(anyNamed(marks, "relu", false));
  CHECK(!anyNamed(marks, "relu", true));
  CHECK(anyNamed(marks, "mtlc_", true));
}
