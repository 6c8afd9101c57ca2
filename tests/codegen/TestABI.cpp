// The LLVM mirror of mtlc_args must match the C struct the runtime fills in, field by field.
#include "codegen/Codegen.h"
#include "codegen/CodegenABI.h"
#include "jit/JIT.h"
#include "spec/abi.h"

#include "Harness.h"

#include <llvm/IR/DataLayout.h>
#include <llvm/IR/LLVMContext.h>

#include <cstddef>

using namespace mtlc;
using codegen::ArgsField;

TEST_CASE("codegen mirrors the mtlc_args layout of runtime/abi.h", "[codegen][abi]") {
  jit::JIT jit;
  llvm::LLVMContext ctx;
  const llvm::DataLayout &dl = jit.dataLayout();
  auto offset = [&](ArgsField f) { return codegen::argsFieldOffset(dl, ctx, f); };
  CHECK(offset(ArgsField::Params) == offsetof(mtlc_args, params));
  CHECK(offset(ArgsField::Grads) == offsetof(mtlc_args, grads));
  CHECK(offset(ArgsField::Acts) == offsetof(mtlc_args, acts));
  CHECK(offset(ArgsField::Inputs) == offsetof(mtlc_args, inputs));
  CHECK(offset(ArgsField::Labels) == offsetof(mtlc_args, labels));
  CHECK(offset(ArgsField::LossWeights) == offsetof(mtlc_args, loss_weights));
  CHECK(offset(ArgsField::Losses) == offsetof(mtlc_args, losses));
  CHECK(offset(ArgsField::Outputs) == offsetof(mtlc_args, outputs));
  CHECK(offset(ArgsField::N) == offsetof(mtlc_args, n));
  CHECK(offset(ArgsField::Seed) == offsetof(mtlc_args, seed));
  CHECK(offset(ArgsField::Pool) == offsetof(mtlc_args, pool));
  CHECK(offset(ArgsField::ParallelFor) == offsetof(mtlc_args, parallel_for));
  CHECK(offset(ArgsField::Threads) == offsetof(mtlc_args, threads));
  CHECK(offset(ArgsField::GradsReady) == offsetof(mtlc_args, grads_ready));
  CHECK(offset(ArgsField::GradsReadyCtx) == offsetof(mtlc_args, grads_ready_ctx));
  CHECK(dl.getTypeAllocSize(codegen::argsStructType(ctx)) == sizeof(mtlc_args));
}

TEST_CASE("entry points are named mtlc_<module>_<function>", "[codegen][abi]") {
  test::Harness h(4, "train_step");
  h.module.name = "fashion";
  test::Node *x = h.input({3});
  h.bind(h.b.unary(test::OpKind::Relu, x), ir::Output::Kind::Head, 0);
  CHECK(codegen::entrySymbol(h.module, h.fn) == "mtlc_fashion_train_step");

  jit::CompiledModule c = jit::compile(h.module, true, /*keepIR=*/true);
  REQUIRE(c.entries.count("train_step") == 1);
  CHECK(c.entry("train_step") != nullptr);
  CHECK(c.llvmIR.find("define void @mtlc_fashion_train_step(ptr noalias nocapture readonly") !=
        std::string::npos);
  CHECK(c.compileMs > 0);
}
