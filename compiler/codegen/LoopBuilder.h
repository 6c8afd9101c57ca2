// Counted loops for generated kernels: `for (i = begin; i < end; ++i)` with an i64 induction
// variable, emitted with an IRBuilder. Bounds may be constants or run-time values (the batch size
// `n`). Loops are emitted in the plain top-tested form; LLVM's loop passes rotate, unroll and
// vectorise them.
#pragma once

#include <llvm/ADT/STLFunctionalExtras.h>
#include <llvm/ADT/SmallVector.h>
#include <llvm/IR/IRBuilder.h>

namespace mtlc::codegen {

using LoopBody = llvm::function_ref<void(llvm::Value *i)>;
using LoopNestBody = llvm::function_ref<void(llvm::ArrayRef<llvm::Value *> indices)>;

// Values threaded through the iterations (accumulators): the body gets the current ones and
// returns the next ones.
using Carried = llvm::SmallVector<llvm::Value *, 2>;
using ReduceBody = llvm::function_ref<Carried(llvm::Value *i, llvm::ArrayRef<llvm::Value *> acc)>;

// for (i = begin; i < end; ++i) body(i). The builder is left after the loop.
void forLoop(llvm::IRBuilder<> &b, llvm::Value *begin, llvm::Value *end, LoopBody body,
             const llvm::Twine &name = "i");
void forLoop(llvm::IRBuilder<> &b, llvm::Value *end, LoopBody body, const llvm::Twine &name = "i");

// for (i0 < ends[0]) for (i1 < ends[1]) ... body({i0, i1, ...}): a perfect nest from 0.
void forLoops(llvm::IRBuilder<> &b, llvm::ArrayRef<llvm::Value *> ends, LoopNestBody body,
              const llvm::Twine &name = "i");

// A loop carrying values from one iteration to the next; returns their values after the loop
// (the initial ones when the range is empty).
Carried reduceLoop(llvm::IRBuilder<> &b, llvm::Value *begin, llvm::Value *end,
                   llvm::ArrayRef<llvm::Value *> init, ReduceBody body,
                   const llvm::Twine &name = "r");
// The common single-accumulator case.
llvm::Value *reduceLoop(llvm::IRBuilder<> &b, llvm::Value *begin, llvm::Value *end,
                        llvm::Value *init,
                        llvm::function_ref<llvm::Value *(llvm::Value *i, llvm::Value *acc)> body,
                        const llvm::Twine &name = "r");

}  // namespace mtlc::codegen
