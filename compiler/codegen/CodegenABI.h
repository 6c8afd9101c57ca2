// The LLVM mirror of `mtlc_args` (runtime/abi.h), the one record every generated entry point takes.
// This is the only place in the compiler that knows the record's layout: keep the field list below
// in the order of the C struct. CodegenABI.cpp static_asserts the C offsets it assumes, and
// tests/codegen/TestABI.cpp checks the LLVM struct's offsets against offsetof for the host.
#pragma once

#include <llvm/IR/IRBuilder.h>

namespace mtlc::codegen {

// Fields of mtlc_args, in declaration order (the struct type's element indices).
enum class ArgsField : unsigned {
  Params,       // float *
  Grads,        // float *
  Acts,         // float *
  Inputs,       // const float *const *
  Labels,       // const float *const *
  LossWeights,  // const float *
  Losses,       // float *
  Outputs,      // float *const *
  N,            // int64_t
  Seed,         // uint64_t
  Pool,         // void *
  ParallelFor,  // void (*)(void *, int64_t, void (*)(void *, int64_t, int64_t), void *)
  Threads,      // int32_t
  GradsReady,   // void (*)(void *, int64_t, int64_t)
  GradsReadyCtx,  // void *
  Count
};

// %mtlc_args = type { ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, i64, i64, ptr, ptr, i32, ptr, ptr }
llvm::StructType *argsStructType(llvm::LLVMContext &ctx);

// void(const mtlc_args *): the C type mtlc_entry_fn.
llvm::FunctionType *entryFunctionType(llvm::LLVMContext &ctx);

// Loads one field from an mtlc_args pointer.
llvm::Value *loadArgsField(llvm::IRBuilder<> &b, llvm::Value *args, ArgsField field);

// For tests: the byte offset of each field under a data layout (compare with offsetof).
uint64_t argsFieldOffset(const llvm::DataLayout &dl, llvm::LLVMContext &ctx, ArgsField field);

}  // namespace mtlc::codegen
