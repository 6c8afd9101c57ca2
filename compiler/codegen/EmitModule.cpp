// The entry points: per scheduled function, one external function that loads the mtlc_args
// fields it needs, computes each node's base pointer from the memory plan, and calls each
// scheduled kernel in order. The schedule (passes/Schedule.h) is read, never recomputed here.
#include "Codegen.h"
#include "CodegenABI.h"
#include "EmitMtlOps.h"
#include "EmitFusion.h"
#include "Kernel.h"
#include "KernelWork.h"

#include <llvm/IR/Module.h>
#include <llvm/IR/Verifier.h>
#include <llvm/Support/raw_ostream.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <map>
#include <optional>
#include <utility>

namespace mtlc::codegen {

using ir::OpKind;
using passes::Storage;

// The body of one node's kernel. Every op kind is listed, so a new op in Ops.def is a compile
// warning here until it has an emitter.
void emitKernelBody(Kernel &k) {
  switch (k.node.op) {
    case OpKind::Input:
    case OpKind::Label:
    case OpKind::Param:
    case OpKind::LossWeight:
    case OpKind::Reshape: throw std::logic_error("codegen: node has no kernel");
    case OpKind::MatMul: return emitMatMul(k);
    case OpKind::Conv2d: return emitConv2d(k);
    case OpKind::Conv2dBwdData:
    case OpKind::ConvTranspose2d: return emitConv2dBwdData(k);  // the same computation
    case OpKind::Conv2dBwdFilter: return emitConv2dBwdFilter(k);
    case OpKind::MaxPool:
    case OpKind::AvgPool: return emitPool(k);
    case OpKind::MaxPoolBwd: return emitMaxPoolBwd(k);
    case OpKind::AvgPoolBwd: return emitAvgPoolBwd(k);
    case OpKind::BiasAdd: return emitBiasAdd(k);
    case OpKind::BiasGrad: return emitBiasGrad(k);
    case OpKind::ReduceBatch: return emitReduceBatch(k);
    case OpKind::LayerNorm: return emitLayerNorm(k);
    case OpKind::LayerNormBwdData: return emitLayerNormBwdData(k);
    case OpKind::LayerNormBwdGamma: return emitLayerNormBwdGamma(k);
    case OpKind::BatchNorm: return emitBatchNorm(k);
    case OpKind::BatchNormEval: return emitBatchNormEval(k);
    case OpKind::BatchNormBwdStats: return emitBatchNormBwdStats(k);
    case OpKind::BatchNormBwdData: return emitBatchNormBwdData(k);
    case OpKind::BatchNormBwdParam: return emitBatchNormBwdParam(k);
    case OpKind::GlobalAvgPool: return emitGlobalAvgPool(k);
    case OpKind::GlobalAvgPoolBwd: return emitGlobalAvgPoolBwd(k);
    case OpKind::Upsample: return emitUpsample(k);
    case OpKind::UpsampleBwd: return emitUpsampleBwd(k);
    case OpKind::CrossEntropy:
    case OpKind::BCE:
    case OpKind::MSE:
    case OpKind::L1:
    case OpKind::Cosine: return emitLoss(k);
    case OpKind::CrossEntropyBwd:
    case OpKind::BCEBwd:
    case OpKind::MSEBwd:
    case OpKind::L1Bwd:
    case OpKind::CosineBwd: return emitLossBwd(k);
    // A constant and every op of fusion class Elemwise in Ops.def: its cases come from the table.
    case OpKind::Const:
#define MTLC_OP(Name, mnemonic, arity, cls) MTLC_ELEMWISE_CASE_##cls(Name)
#define MTLC_ELEMWISE_CASE_Elemwise(Name) case OpKind::Name:
#define MTLC_ELEMWISE_CASE_Leaf(Name)
#define MTLC_ELEMWISE_CASE_Broadcast(Name)
#define MTLC_ELEMWISE_CASE_Injective(Name)
#define MTLC_ELEMWISE_CASE_Reduction(Name)
#define MTLC_ELEMWISE_CASE_OutFusable(Name)
#define MTLC_ELEMWISE_CASE_Opaque(Name)
#include "ir/Ops.def"
#undef MTLC_ELEMWISE_CASE_Elemwise
#undef MTLC_ELEMWISE_CASE_Leaf
#undef MTLC_ELEMWISE_CASE_Broadcast
#undef MTLC_ELEMWISE_CASE_Injective
#undef MTLC_ELEMWISE_CASE_Reduction
#undef MTLC_ELEMWISE_CASE_OutFusable
#undef MTLC_ELEMWISE_CASE_Opaque
      return emitElementwise(k);
    case OpKind::Softmax: return emitSoftmax(k);
    case OpKind::SoftmaxBwd: return emitSoftmaxBwd(k);
    case OpKind::Mix: return emitMix(k);
    case OpKind::MixBwdWeights: return emitMixBwdWeights(k);
    case OpKind::MixBwdInput: return emitMixBwdInput(k);
    case OpKind::Embedding: return emitEmbedding(k);
    case OpKind::EmbeddingBwd: return emitEmbeddingBwd(k);
    case OpKind::Concat: return emitConcat(k);
    case OpKind::Slice: return emitSlice(k);
    case OpKind::Transpose: return emitTranspose(k);
    case OpKind::SliceBwd: return emitSliceBwd(k);
  }
  throw std::logic_error("codegen: unknown op kind");
}

namespace {

using KernelCache = std::map<std::string, llvm::Function *>;

// Everything besides the scheduled kernel's key that its code is generated from: what emitKernel
// hands the op emitters (Kernel::opts, every field of it, the target's included) and the
// schedule's context (ScheduledModule::contextKey: Kernel::maxBatch, which sizes GEMM blocks and
// scratch, the conv chunk count and the parallel splits). Split emission names kernels by the
// kernel's key and this one, so a cached kernel is the one a full compile would build. The
// structured bindings stop compiling when CodegenOptions or TargetInfo gains a field, so a new
// input cannot be left out (emitKernel checks Kernel's fields the same way).
std::string kernelContextKey(const CodegenOptions &opts, const passes::ScheduledModule &schedule) {
  const auto &[target, fuse, gemmKind, gemmMR, gemmNRV, gemmKC, gemmMB, gemmNB, gemmSplit, parallelAlways,
               nodeHook, bf16] = opts;
  const auto &[lanes, vectorRegisters, name, nativeVectors, slowMaskedMemory, targetBf16] = target;
  return fmt::format("target={}/{}/{}/native={}/slowmask={}/bf16={} fuse={} gemm={}/{}/{}/{}/{}/{}/split={} "
                     "par={} hook={} bf16={} {}",
                     name, lanes, vectorRegisters, nativeVectors, slowMaskedMemory, targetBf16, fuse, int(gemmKind),
                     gemmMR, gemmNRV, gemmKC, gemmMB, gemmNB, gemmSplit, parallelAlways, nodeHook, bf16,
                     schedule.contextKey());
}

// Split emission (emitModuleSplit): kernels go into modules of their own under symbols named by
// their scheduled key and the context, and the entry module only declares them.
struct SplitState {
  std::string contextKey;  // what, besides the signature, a kernel's code depends on
  const std::function<bool(const std::string &)> *have;
  llvm::Module *kernels;             // where new kernels go
  std::vector<std::string> emitted;  // their symbols

  // "mtlck.<16 hex digits>": FNV-1a of the kernel's key and the context (a process-local cache key).
  std::string symbol(const std::string &signature) const {
    uint64_t h = 1469598103934665603ull;
    for (char c : signature + "|" + contextKey) h = (h ^ uint8_t(c)) * 1099511628211ull;
    char buf[32];
    std::snprintf(buf, sizeof buf, "mtlck.%016llx", static_cast<unsigned long long>(h));
    return buf;
  }
};

// What emitting the scheduled kernel `k` of `sf` needs: its node alone, or its fusion group.
KernelSpec specOf(const passes::ScheduledFunction &sf, const passes::ScheduledKernel &k) {
  const passes::FusionGroup *group = sf.group(k);
  return group ? KernelSpec(*group, sf.fusion) : KernelSpec(*k.root);
}

// The cold-compiled cost below which a kernel of the schedule is cold (KernelWork.h).
double coldWork(const passes::ScheduledModule &s) {
  double total = 0;
  for (const passes::ScheduledFunction &sf : s.functions)
    for (const passes::ScheduledKernel &k : sf.kernels) total += kernelWork(specOf(sf, k), s.maxBatch).hot();
  return total * kColdShare;
}

class EntryEmitter {
 public:
  EntryEmitter(const passes::ScheduledModule &s, const passes::ScheduledFunction &sf, llvm::Module &lm,
               KernelCache &kernels, const CodegenOptions &opts, double coldBelow, SplitState *split = nullptr)
      : m_(*s.module), f_(*sf.function), sf_(sf), plan_(sf.memory), lm_(lm), ctx_(lm.getContext()), b_(ctx_),
        kernels_(kernels), opts_(opts), coldBelow_(coldBelow), split_(split) {}

  void emit() {
    entry_ = llvm::Function::Create(entryFunctionType(ctx_), llvm::Function::ExternalLinkage,
                                    entrySymbol(m_, f_), lm_);
    entry_->setDoesNotThrow();
    entry_->addFnAttr(kColdKernel);  // a call per kernel
    llvm::Argument *args = entry_->getArg(0);
    args->setName("args");
    // The record is only read, and nothing else writes it during the call.
    for (auto kind : {llvm::Attribute::NoAlias, llvm::Attribute::NoCapture, llvm::Attribute::ReadOnly})
      entry_->addParamAttr(0, kind);
    entry_->addParamAttr(0, llvm::Attribute::getWithDereferenceableBytes(
                                ctx_, lm_.getDataLayout().getTypeAllocSize(argsStructType(ctx_))));
    args_ = args;
    b_.SetInsertPoint(llvm::BasicBlock::Create(ctx_, "entry", entry_));

    const std::vector<std::vector<GradRange>> ready = gradsReadyAfter();
    for (size_t i = 0; i < sf_.kernels.size(); ++i) {
      callKernel(sf_.kernels[i]);
      if (!ready[i].empty()) callGradsReady(ready[i]);
    }
    for (const auto &copy : plan_.copies) {
      const ir::Type &t = copy.value->type;
      llvm::Value *floats = t.batched ? b_.CreateMul(n(), b_.getInt64(t.elements()))
                                      : b_.getInt64(t.elements());
      b_.CreateMemCpy(pointer(copy.to), llvm::MaybeAlign(4), pointer(plan_.storage[copy.value->id]),
                      llvm::MaybeAlign(4), b_.CreateMul(floats, b_.getInt64(sizeof(float))));
    }
    b_.CreateRetVoid();
  }

 private:
  llvm::Value *field(ArgsField which) {
    auto [it, fresh] = fields_.try_emplace(which, nullptr);
    if (fresh) it->second = loadArgsField(b_, args_, which);
    return it->second;
  }
  llvm::Value *n() { return field(ArgsField::N); }

  // float * to the first element of a storage location.
  llvm::Value *pointer(const Storage &s) {
    auto ptrTable = [&](ArgsField table) {  // inputs[i], labels[i], outputs[i]
      llvm::Value *slot = b_.CreateConstInBoundsGEP1_64(b_.getPtrTy(), field(table), s.index);
      return b_.CreateLoad(b_.getPtrTy(), slot);
    };
    llvm::Value *base = nullptr;
    switch (s.base) {
      case Storage::Base::None: throw std::logic_error("codegen: node without storage");
      case Storage::Base::Acts: base = field(ArgsField::Acts); break;
      case Storage::Base::Params: base = field(ArgsField::Params); break;
      case Storage::Base::Grads: base = field(ArgsField::Grads); break;
      case Storage::Base::LossWeights: base = field(ArgsField::LossWeights); break;
      case Storage::Base::Losses: base = field(ArgsField::Losses); break;
      case Storage::Base::Input: base = ptrTable(ArgsField::Inputs); break;
      case Storage::Base::Label: base = ptrTable(ArgsField::Labels); break;
      case Storage::Base::Output: base = ptrTable(ArgsField::Outputs); break;
    }
    if (s.offset == 0) return base;
    return b_.CreateConstInBoundsGEP1_64(b_.getFloatTy(), base, s.offset);
  }

  llvm::Value *nodePointer(const ir::Node &node) {
    auto [it, fresh] = nodePtrs_.try_emplace(node.id, nullptr);
    if (fresh) it->second = pointer(plan_.storage.at(node.id));
    return it->second;
  }

  // void @k<number>.<mnemonic>[.<node name>](ptr noalias %out, ptr noalias readonly %in...,
  //     [ptr noalias readonly %side... (fused members' other operands),] [ptr noalias %scratch,]
  //     i64 %n, i64 %seed, ptr %args)
  // Named after the first node that uses it: k<number>.<mnemonic>[+<member>...][.<node name>]
  std::string kernelName(const KernelSpec &spec) const {
    const ir::Node &node = *spec.root;
    std::string name = "k" + std::to_string(kernels_.size() - 1) + ".";
    if (spec.group)
      for (const ir::Node *member : spec.group->prologue) name += std::string(ir::mnemonic(member->op)) + "+";
    name += ir::mnemonic(node.op);
    if (spec.group)
      for (const auto *members : {&spec.group->chain, &spec.group->siblings})
        for (const ir::Node *member : *members) name += std::string("+") + ir::mnemonic(member->op);
    const ir::Node &named = spec.group ? *spec.group->last() : node;
    if (!named.name.empty()) name += "." + named.name;
    return name;
  }

  bool cold(const KernelSpec &spec) const { return kernelWork(spec, m_.maxBatch).cold() < coldBelow_; }

  llvm::Function *declareKernel(const KernelSpec &spec, bool hasScratch, bool isCold, llvm::Module &into,
                                const std::string &name, llvm::GlobalValue::LinkageTypes linkage) {
    const ir::Node &node = *spec.root;
    unsigned reads = node.operands.size() + spec.side.size() + spec.prologueIn.size();
    unsigned writes = spec.siblings.size();
    unsigned pointers = 1 + reads + writes + (hasScratch ? 1 : 0);
    std::vector<llvm::Type *> params(pointers, b_.getPtrTy());
    params.push_back(b_.getInt64Ty());
    params.push_back(b_.getInt64Ty());
    params.push_back(b_.getPtrTy());  // the call's mtlc_args (threads)
    auto *type = llvm::FunctionType::get(b_.getVoidTy(), params, false);
    auto *fn = llvm::Function::Create(type, linkage, name, into);
    fn->setDoesNotThrow();
    // Kept out of line: a shared kernel is optimised (vectorised) once, not once per call site,
    // which roughly halves compile time; a call per node costs nothing next to its loops.
    fn->addFnAttr(llvm::Attribute::NoInline);
    // Kernels written as explicit vector code need no vectoriser (compile time).
    if (explicitVectorKernel(node.op)) fn->addFnAttr(kLightPipeline);
    if (isCold) fn->addFnAttr(kColdKernel);
    for (unsigned i = 0; i < pointers; ++i) {
      fn->addParamAttr(i, llvm::Attribute::NoAlias);
      fn->addParamAttr(i, llvm::Attribute::NoCapture);
      bool isOperand = i > 0 && i <= node.operands.size();
      bool isSide = i > node.operands.size() && i <= reads;
      bool isSibling = i > reads && i <= reads + writes;
      // State the kernel updates in place (batchnorm's running statistics) stays writable.
      bool updated = isOperand && ir::updatesOperand(node.op, i - 1);
      if ((isOperand && !updated) || isSide) fn->addParamAttr(i, llvm::Attribute::ReadOnly);
      fn->getArg(i)->setName(i == 0 ? "out"
                             : isOperand ? "in" + std::to_string(i - 1)
                             : isSide    ? "side" + std::to_string(i - 1 - node.operands.size())
                             : isSibling ? "sibling" + std::to_string(i - 1 - reads)
                                         : "scratch");
    }
    fn->getArg(pointers)->setName("n");
    fn->getArg(pointers + 1)->setName("seed");
    fn->getArg(pointers + 2)->setName("args");
    for (auto a : {llvm::Attribute::NoAlias, llvm::Attribute::NoCapture, llvm::Attribute::ReadOnly})
      fn->addParamAttr(pointers + 2, a);
    return fn;
  }

  // The kernel, emitted on first use of its scheduled key.
  llvm::Function *kernelFor(const passes::ScheduledKernel &k, const KernelSpec &spec, bool hasScratch) {
    std::string signature = k.key;
    const bool isCold = cold(spec);
    if (isCold) signature += " cold";  // the same code compiled another way
    llvm::Function *&fn = kernels_[signature];
    if (fn) return fn;
    if (!split_) {
      fn = declareKernel(spec, hasScratch, isCold, lm_, kernelName(spec), llvm::Function::InternalLinkage);
      emitKernel(spec, hasScratch, fn);
      return fn;
    }
    // Split: the entry module calls the kernel by its symbol; its code goes into the kernels
    // module unless an earlier compile already has it.
    const std::string symbol = split_->symbol(signature);
    fn = declareKernel(spec, hasScratch, isCold, lm_, symbol, llvm::Function::ExternalLinkage);
    if (!(*split_->have)(symbol)) {
      emitKernel(spec, hasScratch,
                 declareKernel(spec, hasScratch, isCold, *split_->kernels, symbol, llvm::Function::ExternalLinkage));
      split_->emitted.push_back(symbol);
    }
    return fn;
  }

  void emitKernel(const KernelSpec &spec, bool hasScratch, llvm::Function *fn) {
    const ir::Node &node = *spec.root;
    unsigned pointers = fn->arg_size() - 3;
    llvm::IRBuilder<> kb(llvm::BasicBlock::Create(ctx_, "entry", fn));
    Kernel k{kb, node, fn->getArg(0), {}, fn->getArg(pointers), fn->getArg(pointers + 1),
             hasScratch ? fn->getArg(pointers - 1) : nullptr, &opts_, m_.maxBatch, {}, nullptr};
    k.args = fn->getArg(pointers + 2);
    // What the op emitters read: the function's arguments, the node and its fused chain (the
    // signature), opts and maxBatch (kernelContextKey). A field added to Kernel stops this from
    // compiling until the split emission's key covers it.
    [[maybe_unused]] const auto &[builder, root, out, in, n, seed, scratch, opts, maxBatch, chain, args, prologue,
                                  siblingOut] = k;
    for (size_t i = 0; i < node.operands.size(); ++i) k.in.push_back(fn->getArg(i + 1));
    if (spec.group) {
      unsigned next = 1 + node.operands.size();
      std::vector<llvm::Value *> side, prologueIn;
      for (size_t i = 0; i < spec.side.size(); ++i) side.push_back(fn->getArg(next++));
      for (size_t i = 0; i < spec.prologueIn.size(); ++i) prologueIn.push_back(fn->getArg(next++));
      for (size_t i = 0; i < spec.siblings.size(); ++i) k.siblingOut.push_back(fn->getArg(next++));
      k.chain = fusedChain(spec, side);
      if (!spec.group->prologue.empty()) {
        k.prologue = fusedPrologue(spec, prologueIn);
        k.in[spec.group->prologueOperand] = nullptr;  // never stored: the prologue computes it
      }
    }
    emitKernelBody(k);
    chainAfterKernel(k);
    kb.CreateRetVoid();
  }

  void callKernel(const passes::ScheduledKernel &k) {
    const KernelSpec spec = specOf(sf_, k);
    const ir::Node &node = *spec.root;
    const ir::Node &result = spec.group ? *spec.group->last() : node;
    int64_t scratchOffset = k.scratchOffset;
    bool hasScratch = scratchOffset >= 0;
    llvm::Function *fn = kernelFor(k, spec, hasScratch);

    std::vector<llvm::Value *> callArgs{nodePointer(result)};
    const int computed = spec.group ? spec.group->prologueOperand : -1;  // by the prologue: no storage
    for (size_t i = 0; i < node.operands.size(); ++i)
      callArgs.push_back((int)i == computed ? llvm::ConstantPointerNull::get(b_.getPtrTy())
                                            : nodePointer(*node.operands[i]));
    for (const auto &side : spec.side) callArgs.push_back(nodePointer(*side.node));
    for (const auto &in : spec.prologueIn) callArgs.push_back(nodePointer(*in.node));
    for (const ir::Node *sibling : spec.siblings) callArgs.push_back(nodePointer(*sibling));
    if (hasScratch) callArgs.push_back(pointer({Storage::Base::Acts, 0, scratchOffset}));
    callArgs.push_back(n());
    callArgs.push_back(field(ArgsField::Seed));
    callArgs.push_back(args_);
    b_.CreateCall(fn, callArgs);
    if (opts_.nodeHook) {
      callNodeHook(result);
      for (const ir::Node *sibling : spec.siblings) callNodeHook(*sibling);
    }
  }

  using GradRange = std::pair<int64_t, int64_t>;  // [begin, end) of the grads arena

  // Per kernel, the gradients final after it (mtlc_args::grads_ready): each Grad output written in
  // place, after the last kernel that is passed storage overlapping it (its writer, or a later
  // reader: nothing may touch a range once a reduction of it may have started). Sorted, adjacent
  // ranges merged.
  std::vector<std::vector<GradRange>> gradsReadyAfter() const {
    const size_t K = sf_.kernels.size();
    std::vector<std::vector<GradRange>> touched(K), ready(K);
    for (size_t i = 0; i < K; ++i) {
      const KernelSpec spec = specOf(sf_, sf_.kernels[i]);
      auto note = [&](const ir::Node &n) {
        const Storage &s = plan_.storage[n.id];
        if (s.base == Storage::Base::Grads) touched[i].push_back({s.offset, s.offset + n.type.elements()});
      };
      note(spec.group ? *spec.group->last() : *spec.root);
      for (const ir::Node *operand : spec.root->operands) note(*operand);
      for (const auto &side : spec.side) note(*side.node);
      for (const auto &in : spec.prologueIn) note(*in.node);
      for (const ir::Node *sibling : spec.siblings) note(*sibling);
    }
    for (const ir::Output &o : f_.outputs) {
      const Storage &s = plan_.storage[o.value->id];
      if (o.kind != ir::Output::Kind::Grad || s.base != Storage::Base::Grads) continue;  // else copied at the end
      const GradRange r{s.offset, s.offset + o.value->type.elements()};
      std::optional<size_t> last;
      for (size_t i = 0; i < K; ++i)
        for (const GradRange &t : touched[i])
          if (t.first < r.second && r.first < t.second) last = i;
      if (last) ready[*last].push_back(r);
    }
    for (std::vector<GradRange> &rs : ready) {
      std::sort(rs.begin(), rs.end());
      std::vector<GradRange> merged;
      for (const GradRange &r : rs)
        if (!merged.empty() && merged.back().second == r.first) merged.back().second = r.second;
        else merged.push_back(r);
      rs = std::move(merged);
    }
    return ready;
  }

  // if (args->grads_ready) args->grads_ready(args->grads_ready_ctx, begin, end), per range. The
  // context is loaded inside the branch, so it is not cached (field() values must dominate).
  void callGradsReady(const std::vector<GradRange> &ranges) {
    llvm::Value *fn = field(ArgsField::GradsReady);
    auto *call = llvm::BasicBlock::Create(ctx_, "grads_ready", entry_);
    auto *after = llvm::BasicBlock::Create(ctx_, "after_grads_ready", entry_);
    b_.CreateCondBr(b_.CreateIsNotNull(fn), call, after);
    b_.SetInsertPoint(call);
    llvm::Value *ctx = loadArgsField(b_, args_, ArgsField::GradsReadyCtx);
    auto *type = llvm::FunctionType::get(b_.getVoidTy(), {b_.getPtrTy(), b_.getInt64Ty(), b_.getInt64Ty()}, false);
    for (const GradRange &r : ranges) b_.CreateCall(type, fn, {ctx, b_.getInt64(r.first), b_.getInt64(r.second)});
    b_.CreateBr(after);
    b_.SetInsertPoint(after);
  }

  // hook(id, values, count) after the kernel that wrote `node` (CodegenOptions::nodeHook).
  void callNodeHook(const ir::Node &node) {
    auto *type = llvm::FunctionType::get(b_.getVoidTy(), {b_.getInt32Ty(), b_.getPtrTy(), b_.getInt64Ty()}, false);
    llvm::Value *hook = b_.CreateIntToPtr(b_.getInt64(opts_.nodeHook), b_.getPtrTy());
    const ir::Type &t = node.type;
    llvm::Value *count = t.batched ? b_.CreateMul(n(), b_.getInt64(t.elements())) : b_.getInt64(t.elements());
    b_.CreateCall(type, hook, {b_.getInt32(node.id), nodePointer(node), count});
  }

  const ir::Module &m_;
  const ir::Function &f_;
  const passes::ScheduledFunction &sf_;
  const passes::MemoryPlan &plan_;
  llvm::Module &lm_;
  llvm::LLVMContext &ctx_;
  llvm::IRBuilder<> b_;
  llvm::Function *entry_ = nullptr;
  llvm::Value *args_ = nullptr;
  KernelCache &kernels_;
  const CodegenOptions &opts_;
  double coldBelow_;
  SplitState *split_;
  std::map<ArgsField, llvm::Value *> fields_;
  std::map<int, llvm::Value *> nodePtrs_;
};

void verifyOrThrow(const llvm::Module &lm) {
  std::string problems;
  llvm::raw_string_ostream os(problems);
  if (llvm::verifyModule(lm, &os)) throw std::logic_error("codegen produced invalid LLVM IR:\n" + problems);
}

}  // namespace

std::string entrySymbol(const ir::Module &m, const ir::Function &f) {
  return "mtlc_" + m.name + "_" + f.name;
}

int64_t kernelScratchFloats(const ir::Node &n, const passes::FusionGroup *group, int64_t maxBatch) {
  switch (n.op) {
    case OpKind::MatMul: return matMulScratchFloats(n, maxBatch);
    case OpKind::Conv2d:
    case OpKind::Conv2dBwdData:
    case OpKind::ConvTranspose2d:
    case OpKind::Conv2dBwdFilter: return convScratchFloats(n, group, maxBatch);
    default: return 0;
  }
}

passes::KernelHooks kernelHooks() { return {kernelScratchFloats}; }

passes::ScheduledModule scheduleModule(const ir::Module &m, const CodegenOptions &opts) {
  passes::ScheduledModule s = passes::scheduleModule(m, opts.fuse, kernelHooks());
  for (const passes::ScheduledFunction &sf : s.functions) checkFusedKernels(sf.fusion);
  return s;
}

std::unique_ptr<llvm::Module> emitModule(const passes::ScheduledModule &s, llvm::LLVMContext &ctx,
                                         const llvm::DataLayout &dl, const CodegenOptions &opts) {
  auto lm = std::make_unique<llvm::Module>("mtlc_" + s.module->name, ctx);
  lm->setDataLayout(dl);
  KernelCache kernels;
  const double coldBelow = coldWork(s);
  for (const passes::ScheduledFunction &sf : s.functions) EntryEmitter(s, sf, *lm, kernels, opts, coldBelow).emit();

  verifyOrThrow(*lm);
  return lm;
}

SplitModules emitModuleSplit(const passes::ScheduledModule &s, llvm::LLVMContext &ctx, const llvm::DataLayout &dl,
                             const CodegenOptions &opts, const std::function<bool(const std::string &)> &have) {
  const ir::Module &m = *s.module;
  SplitState split;
  split.contextKey = kernelContextKey(opts, s);
  split.have = &have;
  SplitModules out;
  out.entries = std::make_unique<llvm::Module>("mtlc_" + m.name, ctx);
  out.entries->setDataLayout(dl);
  out.kernels = std::make_unique<llvm::Module>("mtlc_" + m.name + "_kernels", ctx);
  out.kernels->setDataLayout(dl);
  split.kernels = out.kernels.get();
  KernelCache kernels;
  const double coldBelow = coldWork(s);
  for (const passes::ScheduledFunction &sf : s.functions)
    EntryEmitter(s, sf, *out.entries, kernels, opts, coldBelow, &split).emit();
  verifyOrThrow(*out.entries);
  verifyOrThrow(*out.kernels);
  out.newKernels = std::move(split.emitted);
  return out;
}

}  // namespace mtlc::codegen
