#include "Kernel.h"

#include <llvm/IR/Module.h>

namespace mtlc::codegen {

llvm::Value *Kernel::at(llvm::Value *base, llvm::Value *index) {
  return b.CreateInBoundsGEP(b.getFloatTy(), base, index);
}

llvm::Value *Kernel::load(llvm::Value *base, llvm::Value *index) {
  return b.CreateLoad(b.getFloatTy(), at(base, index));
}

void Kernel::store(llvm::Value *v, llvm::Value *base, llvm::Value *index) {
  b.CreateStore(v, at(base, index));
}

void Kernel::zero(llvm::Value *base, llvm::Value *floats) {
  b.CreateMemSet(base, b.getInt8(0), mul(floats, (int64_t)sizeof(float)), llvm::MaybeAlign(4));
}

llvm::Value *Kernel::fma(llvm::Value *x, llvm::Value *y, llvm::Value *z) {
  return b.CreateIntrinsic(llvm::Intrinsic::fmuladd, {x->getType()}, {x, y, z});
}

llvm::Value *Kernel::sumAdd(llvm::Value *acc, llvm::Value *v) {
  auto *sum = llvm::cast<llvm::Instruction>(b.CreateFAdd(acc, v));
  sum->setHasAllowReassoc(true);
  sum->setHasAllowContract(true);
  return sum;
}

llvm::Value *Kernel::dotAdd(llvm::Value *acc, llvm::Value *x, llvm::Value *y) {
  auto *prod = llvm::cast<llvm::Instruction>(b.CreateFMul(x, y));
  prod->setHasAllowContract(true);
  return sumAdd(acc, prod);
}

}  // namespace mtlc::codegen

namespace mtlc::codegen {

const TargetInfo &Kernel::target() const {
  static const TargetInfo fallback;
  return opts ? opts->target : fallback;
}

llvm::Value *Kernel::laneMask(int lanes, llvm::Value *first, llvm::Value *limit) {
  // i32 lane arithmetic: tile and block extents are small.
  llvm::SmallVector<llvm::Constant *, 16> iota;
  for (int l = 0; l < lanes; ++l) iota.push_back(b.getInt32(l));
  llvm::Value *f = b.CreateTrunc(first, b.getInt32Ty()), *lim = b.CreateTrunc(limit, b.getInt32Ty());
  llvm::Value *idx = b.CreateAdd(llvm::ConstantVector::get(iota), b.CreateVectorSplat(lanes, f));
  return b.CreateICmpSLT(idx, b.CreateVectorSplat(lanes, lim));
}

namespace {

// A masked access split by its mask (TargetInfo::slowMaskedMemory): the builder is left in `full`
// (every lane on), `partial` (some lane off) is empty, and both are to end by branching to `done`.
struct MaskSplit {
  llvm::BasicBlock *full, *partial, *done;
};

MaskSplit splitOnFullMask(llvm::IRBuilder<> &b, llvm::Value *mask, const std::string &what) {
  llvm::Function *fn = b.GetInsertBlock()->getParent();
  auto &ctx = b.getContext();
  auto block = [&](const char *part) { return llvm::BasicBlock::Create(ctx, what + part, fn); };
  MaskSplit s{block(".full"), block(".partial"), block(".done")};
  b.CreateCondBr(b.CreateAndReduce(mask), s.full, s.partial);
  b.SetInsertPoint(s.full);
  return s;
}

}  // namespace

llvm::Value *Kernel::maskedLoad(int lanes, llvm::Value *base, llvm::Value *index, llvm::Value *mask) {
  llvm::Value *ptr = rawAt(base, index);
  llvm::Constant *zero = llvm::Constant::getNullValue(vec(lanes));
  if (!target().slowMaskedMemory || llvm::isa<llvm::Constant>(mask))  // see TargetInfo
    return b.CreateMaskedLoad(vec(lanes), ptr, llvm::Align(4), mask, zero);
  MaskSplit s = splitOnFullMask(b, mask, "load");
  llvm::Value *whole = b.CreateAlignedLoad(vec(lanes), ptr, llvm::Align(4));
  b.CreateBr(s.done);
  // Every lane off: no load at all (on Zen 1 such a load cost hundreds of cycles in the GEMM's
  // edge tiles, more than a partial one).
  auto *some = llvm::BasicBlock::Create(b.getContext(), "load.some", s.full->getParent());
  b.SetInsertPoint(s.partial);
  b.CreateCondBr(b.CreateOrReduce(mask), some, s.done);
  b.SetInsertPoint(some);
  llvm::Value *part = b.CreateMaskedLoad(vec(lanes), ptr, llvm::Align(4), mask, zero);
  b.CreateBr(s.done);
  b.SetInsertPoint(s.done);
  llvm::PHINode *phi = b.CreatePHI(vec(lanes), 3);
  phi->addIncoming(whole, s.full);
  phi->addIncoming(part, some);
  phi->addIncoming(zero, s.partial);
  return phi;
}

void Kernel::maskedStore(llvm::Value *v, llvm::Value *base, llvm::Value *index, llvm::Value *mask) {
  llvm::Value *ptr = rawAt(base, index);
  if (!target().slowMaskedMemory || llvm::isa<llvm::Constant>(mask)) {
    b.CreateMaskedStore(v, ptr, llvm::Align(4), mask);
    return;
  }
  // Most stores of a loop over rows are full vectors (only the last of a row is partial): a
  // plain store for those, the masked one only where a lane is off.
  MaskSplit s = splitOnFullMask(b, mask, "store");
  b.CreateAlignedStore(v, ptr, llvm::Align(4));
  b.CreateBr(s.done);
  b.SetInsertPoint(s.partial);
  b.CreateMaskedStore(v, ptr, llvm::Align(4), mask);
  b.CreateBr(s.done);
  b.SetInsertPoint(s.done);
}

llvm::Value *Kernel::vload(int lanes, llvm::Value *base, llvm::Value *index) {
  return b.CreateAlignedLoad(vec(lanes), at(base, index), llvm::Align(4));
}

void Kernel::vstore(llvm::Value *v, llvm::Value *base, llvm::Value *index) {
  b.CreateAlignedStore(v, at(base, index), llvm::Align(4));
}

}  // namespace mtlc::codegen
