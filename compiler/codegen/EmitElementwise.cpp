// Elementwise ops (activations, their gradients, Add, Mul, dropout), constants, and the bias ops
// that broadcast along or reduce over the batch. Elementwise kernels are one flat loop over all
// n·elements values, computed in float.
#include "Kernel.h"
#include "LoopBuilder.h"

#include <cmath>

namespace mtlc::codegen {

namespace {

using ir::OpKind;

// ---- dropout's mask: a counter-based hash, so the backward pass recomputes it exactly ----
//
// key = mix(seed ^ mix(salt)), computed once per kernel; element i is kept when the top 24 bits of
// mix(key + (i+1)·γ), read as a fraction in [0,1), are >= p. This is SplitMix64 (γ its increment),
// indexed instead of stepped. The same (seed, salt, i) gives the same decision in Dropout and
// DropoutBwd; different dropout sites (salts) and steps (seeds) get independent masks. All of it
// works lane-wise on a vector of indices too.
constexpr uint64_t kGamma = 0x9E3779B97F4A7C15ull;

llvm::Value *icst(llvm::Value *like, uint64_t v) { return llvm::ConstantInt::get(like->getType(), v); }
llvm::Value *fcst(llvm::Value *like, double v) { return llvm::ConstantFP::get(like->getType(), v); }

llvm::Value *splitMix(llvm::IRBuilder<> &b, llvm::Value *z) {
  z = b.CreateMul(b.CreateXor(z, b.CreateLShr(z, icst(z, 30))), icst(z, 0xBF58476D1CE4E5B9ull));
  z = b.CreateMul(b.CreateXor(z, b.CreateLShr(z, icst(z, 27))), icst(z, 0x94D049BB133111EBull));
  return b.CreateXor(z, b.CreateLShr(z, icst(z, 31)));
}

// v with dropout (or its gradient) applied at element `flat` (i64 or a vector of i64, matching v).
llvm::Value *dropout(Kernel &k, const ir::Node &node, llvm::Value *v, llvm::Value *flat) {
  llvm::IRBuilder<> &b = k.b;
  const double p = node.f;
  llvm::Value *salt = splitMix(b, b.getInt64(uint64_t(node.ints.at(0)) * kGamma));
  llvm::Value *key = splitMix(b, b.CreateXor(k.seed, salt));
  if (flat->getType()->isVectorTy())
    key = b.CreateVectorSplat(llvm::cast<llvm::FixedVectorType>(flat->getType())->getNumElements(), key);
  // Plain (wrapping) arithmetic: hashing relies on modular overflow.
  llvm::Value *counter = b.CreateMul(b.CreateAdd(flat, icst(flat, 1)), icst(flat, kGamma));
  llvm::Value *h = splitMix(b, b.CreateAdd(key, counter));
  llvm::Value *top = b.CreateLShr(h, icst(h, 40));
  llvm::Value *u = b.CreateFMul(b.CreateUIToFP(top, v->getType()), fcst(v, 1.0 / 16777216.0));
  llvm::Value *keep = b.CreateFCmpOGE(u, fcst(v, p));
  llvm::Value *scale = fcst(v, p < 1 ? 1.0 / (1.0 - p) : 0.0);
  return b.CreateSelect(keep, b.CreateFMul(v, scale), fcst(v, 0.0));
}

// Φ(x) = ½(1 + erf(x/√2)), the standard normal CDF that GELU is built on.
llvm::Value *normalCdf(Kernel &k, llvm::Value *x) {
  llvm::Value *e = k.erf(k.b.CreateFMul(x, fcst(x, M_SQRT1_2)));
  return k.b.CreateFMul(fcst(x, 0.5), k.b.CreateFAdd(fcst(x, 1), e));
}

}  // namespace

llvm::Value *elementwiseValue(Kernel &k, const ir::Node &node, llvm::ArrayRef<llvm::Value *> v,
                              llvm::Value *flat) {
  llvm::IRBuilder<> &b = k.b;
  llvm::Value *zero = fcst(v[0], 0), *one = fcst(v[0], 1);
  const double f = node.f;
  switch (node.op) {
    case OpKind::Relu:  // x < 0 ? 0 : x, so NaN passes through as in PyTorch
      return b.CreateSelect(b.CreateFCmpOLT(v[0], zero), zero, v[0]);
    case OpKind::LeakyRelu:
      return b.CreateSelect(b.CreateFCmpOGT(v[0], zero), v[0], b.CreateFMul(v[0], fcst(v[0], f)));
    case OpKind::Sigmoid:  // 1/(1+e^-x): saturates cleanly to 0 and 1, no cancellation
      return k.sigmoid(v[0]);
    case OpKind::Tanh:
      return k.tanh(v[0]);
    case OpKind::Gelu:  // exact form: x·Φ(x)
      return b.CreateFMul(v[0], normalCdf(k, v[0]));
    case OpKind::SmoothStep: {  // u = x/γ: 0 (u <= −½), 1 (u >= ½), else −2u³ + 3u/2 + ½
      llvm::Value *u = b.CreateFMul(v[0], fcst(v[0], 1.0 / f));
      llvm::Value *cubic = b.CreateFAdd(
          b.CreateFMul(u, b.CreateFSub(fcst(u, 1.5), b.CreateFMul(fcst(u, 2), b.CreateFMul(u, u)))), fcst(u, 0.5));
      return b.CreateSelect(b.CreateFCmpOLE(u, fcst(u, -0.5)), zero,
                            b.CreateSelect(b.CreateFCmpOGE(u, fcst(u, 0.5)), one, cubic));
    }
    case OpKind::Dropout:
    case OpKind::DropoutBwd:
      return dropout(k, node, v[0], flat);
    case OpKind::Add:
    case OpKind::BiasAdd:  // v[1]: the bias at this element's channel
      return b.CreateFAdd(v[0], v[1]);
    case OpKind::Mul:
      return b.CreateFMul(v[0], v[1]);
    case OpKind::BatchNormEval: {  // v[1..4]: γ, β, running mean and variance at the element's channel
      auto [scale, shift] = batchNormEvalTransform(k, v[1], v[2], v[3], v[4], f);
      return k.fma(v[0], scale, shift);
    }
    // ---- backward: v[0] is the saved forward value (x or y), v[1] the incoming gradient ----
    case OpKind::ReluBwd:
      return b.CreateSelect(b.CreateFCmpOGT(v[0], zero), v[1], zero);
    case OpKind::LeakyReluBwd:
      return b.CreateSelect(b.CreateFCmpOGT(v[0], zero), v[1], b.CreateFMul(v[1], fcst(v[1], f)));
    case OpKind::SigmoidBwd:  // dy·y·(1−y)
      return b.CreateFMul(b.CreateFMul(v[1], b.CreateFSub(one, v[0])), v[0]);
    case OpKind::TanhBwd:  // dy·(1−y²)
      return b.CreateFMul(v[1], b.CreateFSub(one, b.CreateFMul(v[0], v[0])));
    case OpKind::GeluBwd: {  // dy·(Φ(x) + x·φ(x)), φ(x) = e^(−x²/2)/√(2π)
      llvm::Value *x = v[0];
      llvm::Value *pdf = b.CreateFMul(k.exp(b.CreateFMul(fcst(x, -0.5), b.CreateFMul(x, x))),
                                      fcst(x, 0.5 * M_2_SQRTPI * M_SQRT1_2));
      return b.CreateFMul(v[1], b.CreateFAdd(normalCdf(k, x), b.CreateFMul(x, pdf)));
    }
    case OpKind::SmoothStepBwd: {  // dy·(3/2 − 6u²)/γ inside |u| < ½, 0 outside (S is C¹ there)
      llvm::Value *u = b.CreateFMul(v[0], fcst(v[0], 1.0 / f));
      llvm::Value *slope = b.CreateFMul(b.CreateFSub(fcst(u, 1.5), b.CreateFMul(fcst(u, 6), b.CreateFMul(u, u))),
                                        fcst(u, 1.0 / f));
      llvm::Value *inside = b.CreateAnd(b.CreateFCmpOGT(u, fcst(u, -0.5)), b.CreateFCmpOLT(u, fcst(u, 0.5)));
      return b.CreateSelect(inside, b.CreateFMul(v[1], slope), zero);
    }
    default:
      throw std::logic_error(std::string("elementwiseValue: not elementwise: ") + ir::mnemonic(node.op));
  }
}

void emitElementwise(Kernel &k) {
  if (k.node.op == OpKind::Const) {
    k.store(k.f32(k.node.f), k.out, k.c(0));
    return;
  }
  // Blocks of 4096 elements (16 KiB per operand) across threads from 32K elements on.
  parallelRange(k, k.count(k.type()), 4096, 1 << 15, [&](Kernel &h, llvm::Value *i0, llvm::Value *i1) {
    forLoop(h.b, i0, i1, [&](llvm::Value *i) {
      llvm::SmallVector<llvm::Value *, 2> v;
      for (llvm::Value *operand : h.in) v.push_back(h.load(operand, i));
      llvm::Value *y = elementwiseValue(h, h.node, v, i);
      h.store(h.chain ? h.chain(h, y, ElementSite{i}) : y, h.out, i);
    });
  });
}

// y[s,c,r...] = x[s,c,r...] + b[c]: the bias runs along per-sample dim 0 (dense outputs, channels).
void emitBiasAdd(Kernel &k) {
  const ir::Type &t = k.type();
  int64_t C = t.dims[0], rest = t.elements() / C;
  parallelRange(k, k.samples(t), std::max<int64_t>(1, 4096 / t.elements()), (1 << 15) / t.elements() + 1,
                [&](Kernel &h, llvm::Value *s0, llvm::Value *s1) {
    forLoop(h.b, s0, s1, [&](llvm::Value *s) {
      forLoop(h.b, h.c(C), [&](llvm::Value *c) {
        llvm::Value *bias = h.load(h.in[1], c);
        llvm::Value *row = h.mul(h.add(h.mul(s, C), c), rest);
        forLoop(h.b, h.c(rest), [&](llvm::Value *r) {
          llvm::Value *i = h.add(row, r);
          llvm::Value *y = h.b.CreateFAdd(h.load(h.in[0], i), bias);
          h.store(h.chain ? h.chain(h, y, ElementSite{i}) : y, h.out, i);
        }, "r");
      }, "c");
    }, "s");
  });
}

// db[c] = Σ_{s,r} dy[s,c,r]: channels split across threads (each sums its channels over the whole
// batch in sample order, so the split does not change the sums); samples outer within a block so
// the c loop (dense) or the r sum (conv) is contiguous.
void emitBiasGrad(Kernel &k) {
  const ir::Type &t = k.inType(0);
  int64_t C = t.dims[0], rest = t.elements() / C;
  llvm::Value *work = k.mul(k.samples(t), t.elements());
  llvm::Value *blocks = k.c((C + 15) / 16);
  parallelFor(k, blocks, k.b.CreateICmpSGE(work, k.c(1 << 15)), [&](Kernel &h, llvm::Value *b0, llvm::Value *b1) {
    llvm::Value *c0 = h.mul(b0, 16), *c1 = h.smin(h.mul(b1, 16), h.c(C));
    h.zero(h.at(h.out, c0), h.sub(c1, c0));
    forLoop(h.b, h.samples(t), [&](llvm::Value *s) {
      forLoop(h.b, c0, c1, [&](llvm::Value *c) {
        llvm::Value *row = h.at(h.in[0], h.mul(h.add(h.mul(s, C), c), rest));
        llvm::Value *sum = reduceLoop(h.b, h.c(0), h.c(rest), h.f32(0),
                                      [&](llvm::Value *r, llvm::Value *acc) {
                                        return h.sumAdd(acc, h.load(row, r));
                                      }, "r");
        h.store(h.b.CreateFAdd(h.load(h.out, c), sum), h.out, c);
      }, "c");
    }, "s");
  });
}

// out[e] = Σ_s dy[s,e]
void emitReduceBatch(Kernel &k) {
  const ir::Type &t = k.inType(0);
  int64_t E = t.elements();
  k.zero(k.out, k.c(E));
  forLoop(k.b, k.samples(t), [&](llvm::Value *s) {
    llvm::Value *row = k.at(k.in[0], k.mul(s, E));
    forLoop(k.b, k.c(E), [&](llvm::Value *e) {
      k.store(k.b.CreateFAdd(k.load(k.out, e), k.load(row, e)), k.out, e);
    }, "e");
  }, "s");
}

}  // namespace mtlc::codegen
