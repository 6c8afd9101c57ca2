// Elementwise ops (activations, their gradients, Add, Mul, dropout), constants, and the bias ops
// that broadcast along or reduce over the batch. Elementwise kernels are one flat loop over all
// n·elements values, computed in float.
#include "Kernel.h"
#include "LoopBuilder.h"

#include <cmath>
#include <optional>

namespace mtlc::codegen {

namespace {

using ir::OpKind;

// ---- dropout's mask: a counter-based hash, so the backward pass recomputes it exactly ----
//
// key = mix(seed ^ mix(salt)), computed once per kernel; element i is kept when the top 24 bits of
// mix(key + (i+1)·γ), read as a fraction in [0,1), are >= p. This is SplitMix64 (γ its increment),
// indexed instead of stepped. The same (seed, salt, i) gives the same decision in Dropout and
// DropoutBwd; different dropout sites (salts) and steps (seeds) get independent masks.
constexpr uint64_t kGamma = 0x9E3779B97F4A7C15ull;

llvm::Value *splitMix(Kernel &k, llvm::Value *z) {
  llvm::IRBuilder<> &b = k.b;
  z = b.CreateMul(b.CreateXor(z, b.CreateLShr(z, 30)), b.getInt64(0xBF58476D1CE4E5B9ull));
  z = b.CreateMul(b.CreateXor(z, b.CreateLShr(z, 27)), b.getInt64(0x94D049BB133111EBull));
  return b.CreateXor(z, b.CreateLShr(z, 31));
}

struct DropoutMask {
  llvm::Value *key;  // per kernel call
  double p;
  llvm::Value *scale;  // 1/(1-p), or 0 when p >= 1 (everything dropped)

  DropoutMask(Kernel &k) : p(k.node.f) {
    llvm::Value *salt = splitMix(k, k.b.getInt64(uint64_t(k.attr(0)) * kGamma));
    key = splitMix(k, k.b.CreateXor(k.seed, salt));
    scale = k.f32(p < 1 ? 1.0 / (1.0 - p) : 0.0);
  }
  llvm::Value *keep(Kernel &k, llvm::Value *i) {
    // Plain (wrapping) arithmetic: hashing relies on modular overflow.
    llvm::Value *counter = k.b.CreateMul(k.b.CreateAdd(i, k.c(1)), k.b.getInt64(kGamma));
    llvm::Value *h = splitMix(k, k.b.CreateAdd(key, counter));
    llvm::Value *u = k.b.CreateFMul(k.b.CreateUIToFP(k.b.CreateLShr(h, 40), k.b.getFloatTy()),
                                    k.f32(1.0 / 16777216.0));
    return k.b.CreateFCmpOGE(u, k.f32(p));
  }
  llvm::Value *apply(Kernel &k, llvm::Value *i, llvm::Value *v) {
    return k.b.CreateSelect(keep(k, i), k.b.CreateFMul(v, scale), k.f32(0));
  }
};

// Φ(x) = ½(1 + erf(x/√2)), the standard normal CDF that GELU is built on.
llvm::Value *normalCdf(Kernel &k, llvm::Value *x) {
  llvm::Value *e = k.erf(k.b.CreateFMul(x, k.f32(M_SQRT1_2)));
  return k.b.CreateFMul(k.f32(0.5), k.b.CreateFAdd(k.f32(1), e));
}

// Element i of the result, given element i of each operand (v[0], v[1]).
llvm::Value *elementValue(Kernel &k, DropoutMask *mask, llvm::ArrayRef<llvm::Value *> v,
                          llvm::Value *i) {
  llvm::IRBuilder<> &b = k.b;
  llvm::Value *zero = k.f32(0), *one = k.f32(1);
  const double f = k.node.f;
  switch (k.node.op) {
    case OpKind::Relu:  // x < 0 ? 0 : x, so NaN passes through as in PyTorch
      return b.CreateSelect(b.CreateFCmpOLT(v[0], zero), zero, v[0]);
    case OpKind::LeakyRelu:
      return b.CreateSelect(b.CreateFCmpOGT(v[0], zero), v[0], b.CreateFMul(v[0], k.f32(f)));
    case OpKind::Sigmoid:  // 1/(1+e^-x): saturates cleanly to 0 and 1, no cancellation
      return b.CreateFDiv(one, b.CreateFAdd(one, k.math(llvm::Intrinsic::exp, b.CreateFNeg(v[0]))));
    case OpKind::Tanh:
      return k.math(llvm::Intrinsic::tanh, v[0]);
    case OpKind::Gelu:  // exact form: x·Φ(x)
      return b.CreateFMul(v[0], normalCdf(k, v[0]));
    case OpKind::Dropout:
      return mask->apply(k, i, v[0]);
    case OpKind::Add:
      return b.CreateFAdd(v[0], v[1]);
    case OpKind::Mul:
      return b.CreateFMul(v[0], v[1]);
    // ---- backward: v[0] is the saved forward value (x or y), v[1] the incoming gradient ----
    case OpKind::ReluBwd:
      return b.CreateSelect(b.CreateFCmpOGT(v[0], zero), v[1], zero);
    case OpKind::LeakyReluBwd:
      return b.CreateSelect(b.CreateFCmpOGT(v[0], zero), v[1], b.CreateFMul(v[1], k.f32(f)));
    case OpKind::SigmoidBwd:  // dy·y·(1−y)
      return b.CreateFMul(b.CreateFMul(v[1], b.CreateFSub(one, v[0])), v[0]);
    case OpKind::TanhBwd:  // dy·(1−y²)
      return b.CreateFMul(v[1], b.CreateFSub(one, b.CreateFMul(v[0], v[0])));
    case OpKind::GeluBwd: {  // dy·(Φ(x) + x·φ(x)), φ(x) = e^(−x²/2)/√(2π)
      llvm::Value *x = v[0];
      llvm::Value *pdf = b.CreateFMul(
          k.math(llvm::Intrinsic::exp, b.CreateFMul(k.f32(-0.5), b.CreateFMul(x, x))),
          k.f32(0.5 * M_2_SQRTPI * M_SQRT1_2));
      return b.CreateFMul(v[1], b.CreateFAdd(normalCdf(k, x), b.CreateFMul(x, pdf)));
    }
    case OpKind::DropoutBwd:
      return mask->apply(k, i, v[0]);
    default:
      throw std::logic_error(std::string("emitElementwise: not elementwise: ") +
                             ir::mnemonic(k.node.op));
  }
}

}  // namespace

void emitElementwise(Kernel &k) {
  if (k.node.op == OpKind::Const) {
    k.store(k.f32(k.node.f), k.out, k.c(0));
    return;
  }
  std::optional<DropoutMask> mask;
  if (k.node.op == OpKind::Dropout || k.node.op == OpKind::DropoutBwd) mask.emplace(k);
  forLoop(k.b, k.count(k.type()), [&](llvm::Value *i) {
    llvm::SmallVector<llvm::Value *, 2> v;
    for (llvm::Value *operand : k.in) v.push_back(k.load(operand, i));
    k.store(elementValue(k, mask ? &*mask : nullptr, v, i), k.out, i);
  });
}

// y[s,c,r...] = x[s,c,r...] + b[c]: the bias runs along per-sample dim 0 (dense outputs, channels).
void emitBiasAdd(Kernel &k) {
  const ir::Type &t = k.type();
  int64_t C = t.dims[0], rest = t.elements() / C;
  forLoop(k.b, k.samples(t), [&](llvm::Value *s) {
    forLoop(k.b, k.c(C), [&](llvm::Value *c) {
      llvm::Value *bias = k.load(k.in[1], c);
      llvm::Value *row = k.mul(k.add(k.mul(s, C), c), rest);
      forLoop(k.b, k.c(rest), [&](llvm::Value *r) {
        llvm::Value *i = k.add(row, r);
        k.store(k.b.CreateFAdd(k.load(k.in[0], i), bias), k.out, i);
      }, "r");
    }, "c");
  }, "s");
}

// db[c] = Σ_{s,r} dy[s,c,r]: samples outer so the c loop (dense) or the r sum (conv) is contiguous.
void emitBiasGrad(Kernel &k) {
  const ir::Type &t = k.inType(0);
  int64_t C = t.dims[0], rest = t.elements() / C;
  k.zero(k.out, k.c(C));
  forLoop(k.b, k.samples(t), [&](llvm::Value *s) {
    forLoop(k.b, k.c(C), [&](llvm::Value *c) {
      llvm::Value *row = k.at(k.in[0], k.mul(k.add(k.mul(s, C), c), rest));
      llvm::Value *sum = reduceLoop(k.b, k.c(0), k.c(rest), k.f32(0),
                                    [&](llvm::Value *r, llvm::Value *acc) {
                                      return k.sumAdd(acc, k.load(row, r));
                                    }, "r");
      k.store(k.b.CreateFAdd(k.load(k.out, c), sum), k.out, c);
    }, "c");
  }, "s");
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
