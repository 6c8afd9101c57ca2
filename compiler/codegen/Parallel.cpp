// Outlined parallel loops (Kernel.h, parallelFor): the body is emitted into its own function
// first, using whatever values of the enclosing kernel it likes; then every operand that belongs
// to the enclosing function is found, packed into a context struct at the call site and loaded
// back at the top of the outlined function (as OpenMP outlining does with its captured
// variables). The runtime's parallel_for splits [0, count) into contiguous ranges.
#include "CodegenABI.h"
#include "Kernel.h"

#include <llvm/Analysis/ConstantFolding.h>
#include <llvm/IR/Module.h>

#include <algorithm>
#include <map>

namespace mtlc::codegen {

namespace {

// `v` evaluated with n = k.maxBatch, when it is built from n and constants only (else null).
llvm::Constant *atLargestBatch(const Kernel &k, llvm::Value *v, const llvm::DataLayout &dl, int depth = 0) {
  if (v == k.n) return llvm::ConstantInt::get(v->getType(), std::max<int64_t>(k.maxBatch, 1));
  if (auto *c = llvm::dyn_cast<llvm::Constant>(v)) return c;
  auto *inst = llvm::dyn_cast<llvm::Instruction>(v);
  // Arithmetic on n only: no loop-carried values, nothing read from memory.
  if (!inst || depth > 12 || llvm::isa<llvm::PHINode>(inst) || inst->mayReadOrWriteMemory()) return nullptr;
  llvm::SmallVector<llvm::Constant *, 4> ops;
  for (llvm::Value *op : inst->operands()) {
    llvm::Constant *c = atLargestBatch(k, op, dl, depth + 1);
    if (!c) return nullptr;
    ops.push_back(c);
  }
  return llvm::ConstantFoldInstOperands(inst, ops, dl);
}

}  // namespace

void parallelFor(Kernel &k, llvm::Value *count, llvm::Value *worthIt,
                 const std::function<void(Kernel &h, llvm::Value *begin, llvm::Value *end)> &body) {
  llvm::IRBuilder<> &b = k.b;
  if (worthIt && !(k.opts && k.opts->parallelAlways)) {
    const llvm::DataLayout &dl = b.GetInsertBlock()->getModule()->getDataLayout();
    auto *atMax = llvm::dyn_cast_or_null<llvm::ConstantInt>(atLargestBatch(k, worthIt, dl));
    if (atMax && atMax->isZero()) return body(k, b.getInt64(0), count);  // never worth splitting
  }
  llvm::Function *outer = b.GetInsertBlock()->getParent();
  llvm::Module &m = *outer->getParent();
  llvm::LLVMContext &ctx = m.getContext();
  llvm::Type *ptr = b.getPtrTy(), *i64 = b.getInt64Ty();
  auto *bodyType = llvm::FunctionType::get(b.getVoidTy(), {ptr, i64, i64}, false);
  auto *fn = llvm::Function::Create(bodyType, llvm::Function::InternalLinkage,
                                    outer->getName() + ".par", m);
  fn->setDoesNotThrow();
  fn->addFnAttr(llvm::Attribute::NoInline);  // it is called through a pointer anyway
  for (llvm::Attribute::AttrKind a : {llvm::Attribute::NoAlias, llvm::Attribute::NoCapture})
    fn->addParamAttr(0, a);
  fn->getArg(0)->setName("ctx");
  fn->getArg(1)->setName("begin");
  fn->getArg(2)->setName("end");
  for (const auto &attr : outer->getAttributes().getFnAttrs())
    if (attr.isStringAttribute()) fn->addFnAttr(attr);  // kLightPipeline, target attributes

  auto *entry = llvm::BasicBlock::Create(ctx, "entry", fn);
  auto *start = llvm::BasicBlock::Create(ctx, "body", fn);
  {
    llvm::IRBuilder<> hb(start);
    Kernel h{hb, k.node, k.out, k.in, k.n, k.seed, k.scratch, k.opts, k.maxBatch, k.chain, k.args, k.prologue, k.siblingOut};
    body(h, fn->getArg(1), fn->getArg(2));
    hb.CreateRetVoid();
  }

  // The enclosing function's values the body uses, in first-use order.
  std::vector<llvm::Value *> captured;
  std::map<llvm::Value *, unsigned> slot;
  std::vector<llvm::Use *> uses;
  for (llvm::BasicBlock &bb : *fn)
    for (llvm::Instruction &inst : bb)
      for (llvm::Use &u : inst.operands()) {
        llvm::Value *v = u.get();
        bool foreign = (llvm::isa<llvm::Instruction>(v) && llvm::cast<llvm::Instruction>(v)->getFunction() != fn) ||
                       (llvm::isa<llvm::Argument>(v) && llvm::cast<llvm::Argument>(v)->getParent() != fn);
        if (!foreign) continue;
        if (slot.emplace(v, captured.size()).second) captured.push_back(v);
        uses.push_back(&u);
      }
  std::vector<llvm::Type *> fields;
  for (llvm::Value *v : captured) fields.push_back(v->getType());
  auto *ctxType = llvm::StructType::get(ctx, fields);
  {
    llvm::IRBuilder<> eb(entry);
    std::vector<llvm::Value *> loaded;
    for (unsigned i = 0; i < captured.size(); ++i)
      loaded.push_back(eb.CreateLoad(fields[i], eb.CreateStructGEP(ctxType, fn->getArg(0), i),
                                     captured[i]->getName()));
    eb.CreateBr(start);
    for (llvm::Use *u : uses) u->set(loaded[slot[u->get()]]);
  }

  // The call site: the context on the enclosing kernel's stack, then parallel_for or a direct call.
  llvm::Value *frame;
  {
    llvm::IRBuilder<> ab(&outer->getEntryBlock(), outer->getEntryBlock().begin());
    frame = ab.CreateAlloca(ctxType, nullptr, "par.ctx");
  }
  for (unsigned i = 0; i < captured.size(); ++i) b.CreateStore(captured[i], b.CreateStructGEP(ctxType, frame, i));
  auto direct = [&] { b.CreateCall(fn, {frame, b.getInt64(0), count}); };
  if (!k.args) return direct();
  llvm::Value *pfn = loadArgsField(b, k.args, ArgsField::ParallelFor);
  llvm::Value *threads = loadArgsField(b, k.args, ArgsField::Threads);
  llvm::Value *go = b.CreateAnd(b.CreateICmpNE(pfn, llvm::ConstantPointerNull::get(b.getPtrTy())),
                                b.CreateICmpSGT(threads, b.getInt32(1)));
  go = b.CreateAnd(go, b.CreateICmpSGT(count, b.getInt64(1)));
  if (worthIt && !(k.opts && k.opts->parallelAlways)) go = b.CreateAnd(go, worthIt);
  auto *par = llvm::BasicBlock::Create(ctx, "par.threads", outer);
  auto *ser = llvm::BasicBlock::Create(ctx, "par.serial", outer);
  auto *done = llvm::BasicBlock::Create(ctx, "par.done", outer);
  b.CreateCondBr(go, par, ser);
  b.SetInsertPoint(par);
  auto *pfType = llvm::FunctionType::get(b.getVoidTy(), {ptr, i64, ptr, ptr}, false);
  b.CreateCall(pfType, pfn, {loadArgsField(b, k.args, ArgsField::Pool), count, fn, frame});
  b.CreateBr(done);
  b.SetInsertPoint(ser);
  direct();
  b.CreateBr(done);
  b.SetInsertPoint(done);
}

void parallelRange(Kernel &k, llvm::Value *count, int64_t grain, int64_t minTotal,
                   const std::function<void(Kernel &h, llvm::Value *i0, llvm::Value *i1)> &body) {
  llvm::Value *blocks = k.b.CreateUDiv(k.add(count, grain - 1), k.c(grain));
  parallelFor(k, blocks, k.b.CreateICmpSGE(count, k.c(minTotal)), [&](Kernel &h, llvm::Value *b0, llvm::Value *b1) {
    body(h, h.mul(b0, grain), h.smin(h.mul(b1, grain), count));
  });
}

}  // namespace mtlc::codegen
