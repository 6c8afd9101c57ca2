// Fused kernels: the chain of a fusion group applied per element (or per vector of consecutive
// elements) in the root's kernel. Every member reads its other operands at the same element:
// saved activations and addends at the same flat index, a per-channel operand (a bias,
// batchnorm_eval's γ, β and running statistics) at the element's channel, a scalar at index 0. See passes/Fusion.h for which groups form.
#include "EmitFusion.h"

#include "LoopBuilder.h"
#include "passes/Schedule.h"

#include <stdexcept>

namespace mtlc::codegen {

namespace {

using ir::OpKind;
using llvm::Value;

// Every elementwise op of Ops.def (its per-element rule is elementwiseValue's) and every per-channel
// (Broadcast) op: bias_add, batchnorm_eval.
bool supportedMember(OpKind op) {
  auto c = ir::fusionClass(op);
  return c == ir::FusionClass::Elemwise || c == ir::FusionClass::Broadcast;
}

// Every op with a kernel can root a group: kernels that do not apply the chain get it afterwards
// (chainAfterKernel).
bool supportedRoot(OpKind op) { return passes::hasKernel(op); }

// <lanes x i64> flat + (0, 1, ..., lanes−1)
Value *laneIndices(Kernel &k, Value *flat, int lanes) {
  llvm::SmallVector<llvm::Constant *, 16> iota;
  for (int l = 0; l < lanes; ++l) iota.push_back(k.b.getInt64(l));
  return k.b.CreateAdd(k.b.CreateVectorSplat(lanes, flat), llvm::ConstantVector::get(iota));
}

// The value operand `j` of `member` contributes at the site (v: the chain's current value, whose
// type, float or vector, the result takes).
Value *sideValue(Kernel &k, const ir::Node &member, int j, Value *ptr, Value *v, const ElementSite &site) {
  llvm::IRBuilder<> &b = k.b;
  auto *vt = llvm::dyn_cast<llvm::FixedVectorType>(v->getType());
  const int lanes = vt ? (int)vt->getNumElements() : 1;
  auto vecLoad = [&](Value *index) {
    return site.mask ? k.maskedLoad(lanes, ptr, index, site.mask) : k.vload(lanes, ptr, index);
  };
  const ir::Type &t = member.operands.at(j)->type;
  // A Broadcast member's other operands are [C] vectors read at the element's channel.
  if (ir::fusionClass(member.op) == ir::FusionClass::Broadcast && j >= 1) {
    const int64_t C = member.type.dims.at(0), rest = member.type.elements() / C;
    if (!vt) return k.load(ptr, site.channel ? site.channel : b.CreateURem(b.CreateUDiv(site.flat, k.c(rest)), k.c(C)));
    if (site.channel) return site.perLane ? vecLoad(site.channel) : k.splat(lanes, k.load(ptr, site.channel));
    // No hint: each lane's channel, gathered.
    Value *idx = laneIndices(k, site.flat, lanes);
    Value *ch = b.CreateURem(b.CreateUDiv(idx, k.b.CreateVectorSplat(lanes, k.c(rest))),
                             k.b.CreateVectorSplat(lanes, k.c(C)));
    Value *mask = site.mask ? site.mask : llvm::ConstantInt::getTrue(llvm::VectorType::get(b.getInt1Ty(), vt->getElementCount()));
    return b.CreateMaskedGather(vt, b.CreateGEP(b.getFloatTy(), ptr, ch), llvm::Align(4), mask,
                                llvm::Constant::getNullValue(vt));
  }
  if (!t.batched && t.elements() == 1) {  // a scalar (a loss weight, a constant)
    Value *s = k.load(ptr, k.c(0));
    return vt ? k.splat(lanes, s) : s;
  }
  if (t != member.type)
    throw std::logic_error(std::string("fused ") + ir::mnemonic(member.op) + ": operand of another shape");
  return vt ? vecLoad(site.flat) : k.load(ptr, site.flat);
}

}  // namespace

bool rootAppliesChain(OpKind op) {
  switch (op) {
    case OpKind::MatMul:
    case OpKind::Conv2d:
    case OpKind::Conv2dBwdData:
    case OpKind::ConvTranspose2d:
    case OpKind::Conv2dBwdFilter:
    case OpKind::MaxPoolBwd:
    case OpKind::AvgPoolBwd:
    case OpKind::BatchNorm:
    case OpKind::GlobalAvgPoolBwd:
    case OpKind::MixBwdInput: return true;
    default: return supportedMember(op);
  }
}

void chainAfterKernel(Kernel &k) {
  if (!k.chain || rootAppliesChain(k.node.op)) return;
  const ir::Type &t = k.type();
  if (t.batched && !t.dims.empty() && t.elements() > 1) {
    // Sample, channel, rest: a per-channel member (a bias) reads its channel as the loop's index
    // (no division per element), and the inner loop is contiguous, so it vectorises.
    const int64_t C = t.dims[0], rest = t.elements() / C;
    parallelRange(k, k.samples(t), std::max<int64_t>(1, 4096 / t.elements()), (1 << 15) / t.elements() + 1,
                  [&](Kernel &h, Value *s0, Value *s1) {
      forLoop(h.b, s0, s1, [&](Value *s) {
        forLoop(h.b, h.c(C), [&](Value *c) {
          Value *row = h.mul(h.add(h.mul(s, C), c), rest);
          forLoop(h.b, h.c(rest), [&](Value *r) {
            Value *i = h.add(row, r);
            h.store(h.chain(h, h.load(h.out, i), ElementSite{i, nullptr, c}), h.out, i);
          }, "r");
        }, "c");
      }, "s");
    });
    return;
  }
  Value *count = k.count(t);
  parallelFor(k, k.b.CreateUDiv(k.add(count, 4095), k.c(4096)), k.b.CreateICmpSGE(count, k.c(1 << 15)),
              [&](Kernel &h, Value *b0, Value *b1) {
                Value *end = h.smin(h.mul(b1, 4096), count);
                forLoop(h.b, h.mul(b0, 4096), end, [&](Value *i) {
                  h.store(h.chain(h, h.load(h.out, i), ElementSite{i}), h.out, i);
                }, "e");
              });
}

KernelSpec::KernelSpec(const passes::FusionGroup &g, const passes::FusionPlan &plan) : root(g.root), group(&g) {
  for (size_t i = 0; i < g.chain.size(); ++i) {
    const ir::Node &member = *g.chain[i];
    int data = passes::dataOperand(member, plan);
    if (data < 0) throw std::logic_error("fusion: chain member without a data operand");
    dataOperand.push_back(data);
    for (int j = 0; j < (int)member.operands.size(); ++j)
      if (j != data) side.push_back({member.operands[j], i, j});
  }
  for (size_t i = 0; i < g.prologue.size(); ++i) {
    const ir::Node &member = *g.prologue[i];
    int data = i == 0 ? -1 : passes::dataOperand(member, plan);
    if (i > 0 && data < 0) throw std::logic_error("fusion: prologue member without a data operand");
    if (i > 0) prologueData.push_back(data);
    for (int j = 0; j < (int)member.operands.size(); ++j)
      if (j != data) prologueIn.push_back({member.operands[j], i, j});
  }
  siblings = g.siblings;
}

namespace {

// The chain `members` (data: each one's chain operand; side: their other operands, read through
// sidePointers) applied to a root value at one site.
decltype(Kernel::chain) chainOf(std::vector<const ir::Node *> members, std::vector<int> data,
                                std::vector<KernelSpec::Side> side, std::vector<Value *> sidePointers) {
  return [members, data, side, sidePointers](Kernel &k, Value *v, const ElementSite &site) {
    auto *vt = llvm::dyn_cast<llvm::FixedVectorType>(v->getType());
    Value *laneFlat = nullptr;  // per-lane indices, made when a member hashes them (dropout)
    size_t next = 0;            // position in `side`
    for (size_t i = 0; i < members.size(); ++i) {
      const ir::Node &member = *members[i];
      llvm::SmallVector<Value *, 3> vals(member.operands.size(), nullptr);
      vals[data[i]] = v;
      for (; next < side.size() && side[next].member == i; ++next)
        vals[side[next].operand] = sideValue(k, member, side[next].operand, sidePointers[next], v, site);
      Value *flat = site.flat;
      if (vt && (member.op == OpKind::Dropout || member.op == OpKind::DropoutBwd)) {
        if (!laneFlat) laneFlat = laneIndices(k, site.flat, (int)vt->getNumElements());
        flat = laneFlat;
      }
      v = elementwiseValue(k, member, vals, flat);
    }
    return v;
  };
}

}  // namespace

decltype(Kernel::chain) fusedChain(const KernelSpec &spec, std::vector<Value *> sidePointers) {
  return chainOf(spec.group->chain, spec.dataOperand, spec.side, std::move(sidePointers));
}

decltype(Kernel::prologue) fusedPrologue(const KernelSpec &spec, std::vector<Value *> inputs) {
  const std::vector<const ir::Node *> members = spec.group->prologue;
  const std::vector<int> data = spec.prologueData;
  const std::vector<KernelSpec::Side> in = spec.prologueIn;
  return [members, data, in, inputs](Kernel &k, Value *sample, Value *into) {
    // Sample `sample` of a batched operand; an unbatched one (a bias, a table) whole.
    auto atSample = [&](const KernelSpec::Side &s, Value *ptr) {
      return s.node->type.batched ? k.at(ptr, k.mul(sample, s.node->type.elements())) : ptr;
    };
    Kernel p{k.b, *members[0], into, {}, k.c(1), k.seed, nullptr, k.opts, 1, {}, nullptr, {}, {}};
    p.in.resize(members[0]->operands.size(), nullptr);
    std::vector<KernelSpec::Side> side;
    std::vector<Value *> sidePointers;
    for (size_t i = 0; i < in.size(); ++i) {
      if (in[i].member == 0) {
        p.in[in[i].operand] = atSample(in[i], inputs[i]);
        continue;
      }
      side.push_back({in[i].node, in[i].member - 1, in[i].operand});
      sidePointers.push_back(atSample(in[i], inputs[i]));
    }
    if (members.size() > 1)
      p.chain = chainOf({members.begin() + 1, members.end()}, data, side, sidePointers);
    emitKernelBody(p);
    chainAfterKernel(p);
  };
}

void checkFusedKernels(const passes::FusionPlan &plan) {
  for (const passes::FusionGroup &g : plan.groups) {
    bool ok = supportedRoot(g.root->op);
    for (const ir::Node *member : g.chain) ok = ok && supportedMember(member->op);
    if (!g.prologue.empty()) {
      // The per-sample loop that runs a prologue is the filter gradient's (EmitConv.cpp).
      ok = ok && g.root->op == OpKind::Conv2dBwdFilter && g.prologueOperand == 1 && supportedRoot(g.prologue[0]->op);
      for (size_t i = 1; i < g.prologue.size(); ++i) ok = ok && supportedMember(g.prologue[i]->op);
      for (const ir::Node *sibling : g.siblings) ok = ok && sibling->op == OpKind::BiasGrad;
    }
    if (!ok) throw std::logic_error(std::string("fusion: unsupported group rooted at ") + ir::mnemonic(g.root->op));
  }
}

}  // namespace mtlc::codegen
