#include "CodegenABI.h"

#include "spec/abi.h"

#include <cstddef>

namespace mtlc::codegen {

// The mirror below assumes an LP64 layout: eight 8-byte pointers, two 8-byte integers, two
// pointers, an int32 (4 bytes of padding) and two pointers. If abi.h changes, these fire; update ArgsField
// and argsStructType together.
static_assert(sizeof(void *) == 8, "mtlc assumes a 64-bit target");
static_assert(offsetof(mtlc_args, params) == 0);
static_assert(offsetof(mtlc_args, grads) == 8);
static_assert(offsetof(mtlc_args, acts) == 16);
static_assert(offsetof(mtlc_args, inputs) == 24);
static_assert(offsetof(mtlc_args, labels) == 32);
static_assert(offsetof(mtlc_args, loss_weights) == 40);
static_assert(offsetof(mtlc_args, losses) == 48);
static_assert(offsetof(mtlc_args, outputs) == 56);
static_assert(offsetof(mtlc_args, n) == 64);
static_assert(offsetof(mtlc_args, seed) == 72);
static_assert(offsetof(mtlc_args, pool) == 80);
static_assert(offsetof(mtlc_args, parallel_for) == 88);
static_assert(offsetof(mtlc_args, threads) == 96);
static_assert(offsetof(mtlc_args, grads_ready) == 104);
static_assert(offsetof(mtlc_args, grads_ready_ctx) == 112);
static_assert(sizeof(mtlc_args) == 120);

llvm::StructType *argsStructType(llvm::LLVMContext &ctx) {
  if (auto *existing = llvm::StructType::getTypeByName(ctx, "mtlc_args")) return existing;
  llvm::Type *ptr = llvm::PointerType::getUnqual(ctx);
  llvm::Type *i64 = llvm::Type::getInt64Ty(ctx), *i32 = llvm::Type::getInt32Ty(ctx);
  llvm::Type *fields[] = {
      ptr,  // params
      ptr,  // grads
      ptr,  // acts
      ptr,  // inputs
      ptr,  // labels
      ptr,  // loss_weights
      ptr,  // losses
      ptr,  // outputs
      i64,  // n
      i64,  // seed
      ptr,  // pool
      ptr,  // parallel_for
      i32,  // threads
      ptr,  // grads_ready
      ptr,  // grads_ready_ctx
  };
  static_assert(std::size(fields) == (size_t)ArgsField::Count);
  return llvm::StructType::create(ctx, fields, "mtlc_args");
}

llvm::FunctionType *entryFunctionType(llvm::LLVMContext &ctx) {
  return llvm::FunctionType::get(llvm::Type::getVoidTy(ctx), {llvm::PointerType::getUnqual(ctx)},
                                 false);
}

llvm::Value *loadArgsField(llvm::IRBuilder<> &b, llvm::Value *args, ArgsField field) {
  static const char *names[] = {"params", "grads",  "acts",    "inputs", "labels",
                                "loss_weights", "losses", "outputs", "n",      "seed",
                                "pool",   "parallel_for", "threads", "grads_ready", "grads_ready_ctx"};
  static_assert(std::size(names) == (size_t)ArgsField::Count);
  llvm::StructType *st = argsStructType(b.getContext());
  unsigned i = (unsigned)field;
  llvm::Value *addr = b.CreateStructGEP(st, args, i, std::string(names[i]) + ".addr");
  return b.CreateLoad(st->getElementType(i), addr, names[i]);
}

uint64_t argsFieldOffset(const llvm::DataLayout &dl, llvm::LLVMContext &ctx, ArgsField field) {
  return dl.getStructLayout(argsStructType(ctx))->getElementOffset((unsigned)field);
}

}  // namespace mtlc::codegen
