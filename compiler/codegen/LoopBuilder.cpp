#include "LoopBuilder.h"

#include <llvm/IR/IntrinsicInst.h>
#include <llvm/IR/Metadata.h>

namespace mtlc::codegen {

namespace {

// Intrinsics x86 has no vector instruction for: the vectoriser would call libm once per lane.
bool isLibmCall(const llvm::Instruction &inst) {
  const auto *call = llvm::dyn_cast<llvm::IntrinsicInst>(&inst);
  if (!call) return false;
  switch (call->getIntrinsicID()) {
    case llvm::Intrinsic::exp: case llvm::Intrinsic::exp2: case llvm::Intrinsic::exp10:
    case llvm::Intrinsic::log: case llvm::Intrinsic::log2: case llvm::Intrinsic::log10:
    case llvm::Intrinsic::pow: case llvm::Intrinsic::sin: case llvm::Intrinsic::cos:
    case llvm::Intrinsic::tan: case llvm::Intrinsic::tanh:
      return true;
    default:
      return false;
  }
}

// A loop whose body calls libm stays scalar: vectorised, each call becomes one per lane anyway
// (no vector math library is linked), so the vector loop runs no faster, and its unrolled copies
// of the calls were the costliest code of the loss kernels to compile.
void keepScalarIfCallsLibm(llvm::Function &fn, llvm::BasicBlock *header, llvm::BranchInst *latchBranch) {
  bool inLoop = false;
  for (llvm::BasicBlock &bb : fn) {
    inLoop = inLoop || &bb == header;
    if (!inLoop) continue;
    for (llvm::Instruction &inst : bb)
      if (isLibmCall(inst)) {
        llvm::LLVMContext &ctx = fn.getContext();
        llvm::Metadata *off[] = {llvm::MDString::get(ctx, "llvm.loop.vectorize.enable"),
                                 llvm::ConstantAsMetadata::get(llvm::ConstantInt::getFalse(ctx))};
        llvm::MDNode *loop = llvm::MDNode::getDistinct(ctx, {nullptr, llvm::MDNode::get(ctx, off)});
        loop->replaceOperandWith(0, loop);
        latchBranch->setMetadata(llvm::LLVMContext::MD_loop, loop);
        return;
      }
  }
}

// True when both bounds are constants and the range is empty: no loop needs emitting.
bool knownEmpty(llvm::Value *begin, llvm::Value *end) {
  auto *cb = llvm::dyn_cast<llvm::ConstantInt>(begin);
  auto *ce = llvm::dyn_cast<llvm::ConstantInt>(end);
  return cb && ce && cb->getSExtValue() >= ce->getSExtValue();
}

}  // namespace

Carried reduceLoop(llvm::IRBuilder<> &b, llvm::Value *begin, llvm::Value *end,
                   llvm::ArrayRef<llvm::Value *> init, ReduceBody body, const llvm::Twine &name) {
  if (knownEmpty(begin, end)) return Carried(init.begin(), init.end());

  llvm::LLVMContext &ctx = b.getContext();
  llvm::Function *fn = b.GetInsertBlock()->getParent();
  llvm::BasicBlock *preheader = b.GetInsertBlock();
  auto *header = llvm::BasicBlock::Create(ctx, name + ".head", fn);
  auto *bodyBlock = llvm::BasicBlock::Create(ctx, name + ".body", fn);
  // Created detached and inserted after the body's blocks so the IR reads top to bottom.
  auto *exit = llvm::BasicBlock::Create(ctx, name + ".end");

  b.CreateBr(header);
  b.SetInsertPoint(header);
  llvm::PHINode *iv = b.CreatePHI(b.getInt64Ty(), 2, name);
  iv->addIncoming(begin, preheader);
  llvm::SmallVector<llvm::PHINode *, 2> accs;
  for (llvm::Value *v : init) {
    accs.push_back(b.CreatePHI(v->getType(), 2, name + ".acc"));
    accs.back()->addIncoming(v, preheader);
  }
  b.CreateCondBr(b.CreateICmpSLT(iv, end, name + ".cond"), bodyBlock, exit);

  b.SetInsertPoint(bodyBlock);
  Carried current(accs.begin(), accs.end());
  Carried next = body(iv, current);
  llvm::Value *inc = b.CreateAdd(iv, b.getInt64(1), name + ".next", /*HasNUW=*/true,
                                 /*HasNSW=*/true);
  llvm::BasicBlock *latch = b.GetInsertBlock();
  keepScalarIfCallsLibm(*fn, header, b.CreateBr(header));
  iv->addIncoming(inc, latch);
  for (size_t k = 0; k < accs.size(); ++k) accs[k]->addIncoming(next[k], latch);

  exit->insertInto(fn);
  b.SetInsertPoint(exit);
  return current;  // the header's phis: their value when the condition failed
}

llvm::Value *reduceLoop(llvm::IRBuilder<> &b, llvm::Value *begin, llvm::Value *end,
                        llvm::Value *init,
                        llvm::function_ref<llvm::Value *(llvm::Value *i, llvm::Value *acc)> body,
                        const llvm::Twine &name) {
  return reduceLoop(
      b, begin, end, {init},
      [&](llvm::Value *i, llvm::ArrayRef<llvm::Value *> acc) { return Carried{body(i, acc[0])}; },
      name)[0];
}

void forLoop(llvm::IRBuilder<> &b, llvm::Value *begin, llvm::Value *end, LoopBody body,
             const llvm::Twine &name) {
  reduceLoop(
      b, begin, end, {},
      [&](llvm::Value *i, llvm::ArrayRef<llvm::Value *>) {
        body(i);
        return Carried{};
      },
      name);
}

void forLoop(llvm::IRBuilder<> &b, llvm::Value *end, LoopBody body, const llvm::Twine &name) {
  forLoop(b, b.getInt64(0), end, body, name);
}

void forLoops(llvm::IRBuilder<> &b, llvm::ArrayRef<llvm::Value *> ends, LoopNestBody body,
              const llvm::Twine &name) {
  llvm::SmallVector<llvm::Value *, 6> indices;
  // Recursion over the nest depth: each level opens one loop and descends.
  std::function<void(size_t)> level = [&](size_t d) {
    if (d == ends.size()) return body(indices);
    forLoop(
        b, ends[d],
        [&](llvm::Value *i) {
          indices.push_back(i);
          level(d + 1);
          indices.pop_back();
        },
        name + llvm::Twine(d));
  };
  level(0);
}

}  // namespace mtlc::codegen
