// IR → LLVM IR. Each ir::Function of a module becomes one external entry point
//     void mtlc_<module>_<function>(const mtlc_args *)      (C type mtlc_entry_fn, runtime/abi.h)
// that calls one generated kernel per node, in graph order, on the storage the memory plan
// (passes/MemoryPlan.h) assigns. Kernels are loops written here with IRBuilder — no op library,
// no BLAS; the only external call is libm's erff (GELU), plus what LLVM lowers intrinsics to.
//
// This header keeps LLVM's headers out of its includers; the JIT (jit/Compile.h) is the usual
// way in.
#pragma once

#include "ir/IR.h"

#include <memory>
#include <string>

namespace llvm {
class DataLayout;
class LLVMContext;
class Module;
class TargetMachine;
}  // namespace llvm

namespace mtlc::codegen {

// "mtlc_" + module name + "_" + function name, e.g. mtlc_fashion_train_step.
std::string entrySymbol(const ir::Module &m, const ir::Function &f);

// Emits every function of `m`. Throws std::logic_error if the result fails LLVM's verifier
// (a compiler bug).
std::unique_ptr<llvm::Module> emitModule(const ir::Module &m, llvm::LLVMContext &ctx,
                                         const llvm::DataLayout &dl);

// LLVM's O3 pipeline (new pass manager) tuned for `tm`'s target: sets the module's triple and data
// layout and each function's target-cpu / target-features, so the vectoriser uses the host's
// vector width.
void optimizeModule(llvm::Module &m, llvm::TargetMachine &tm);

// Textual LLVM IR (`--emit=llvm`).
std::string printModule(const llvm::Module &m);

}  // namespace mtlc::codegen
