// Batch normalisation over channels (x[C,H,W], nn.BatchNorm2d) or features (x[F], nn.BatchNorm1d),
// momentum 0.1, and its gradients. Channel c's statistics run over every sample and every position
// of its plane: N = n·H·W values, summed in double.
//
//   training  mean, var = the batch's (biased variance, two passes); y = x·scale + shift with
//             scale = γ/√(var + eps), shift = β − mean·scale (PyTorch's transform); then
//             running_mean ← 0.9·running_mean + 0.1·mean, running_var ← 0.9·running_var +
//             0.1·var·N/(N−1), num_batches_tracked += 1. With N = 1 (PyTorch refuses such a batch)
//             the unbiased variance is undefined and the state is left as it is.
//   eval      the same transform with the running statistics.
//   backward  one reduction pass per channel (Σ(x−K), Σ(x−K)², Σdy, Σdy·(x−K), shifted by the
//             channel's first value K so the variance does not cancel), then one elementwise pass
//             dx = γ·rstd·(dy − mean(dy) − x̂·mean(dy·x̂)); dγ = Σ dy·x̂ from the same sums.
//
// Channels are independent, so they are split across threads; within a channel the order of the
// sums is fixed, so results do not depend on the thread count.
#include "Kernel.h"
#include "LoopBuilder.h"

namespace mtlc::codegen {

namespace {

using llvm::Value;

constexpr double kMomentum = 0.1;  // nn.BatchNorm's default; the language fixes it

struct ChannelShape {
  int64_t C, S;  // channels, positions per channel and sample (H·W, or 1 for [F])
};

ChannelShape shapeOf(const ir::Type &x) { return {x.dims.at(0), x.elements() / x.dims.at(0)}; }

// Runs perChannel(h, c) for every channel, channels split across threads when the batch is big.
void forChannels(Kernel &k, const ChannelShape &s, const std::function<void(Kernel &h, Value *c)> &perChannel) {
  Value *big = k.b.CreateICmpSGE(k.mul(k.n, s.C * s.S), k.c(int64_t(1) << 15));
  parallelFor(k, k.c(s.C), big, [&](Kernel &h, Value *c0, Value *c1) {
    forLoop(h.b, c0, c1, [&](Value *c) { perChannel(h, c); }, "c");
  });
}

// Where channel c of sample s starts.
Value *planeAt(Kernel &k, const ChannelShape &s, Value *sample, Value *c) {
  return k.mul(k.add(k.mul(sample, s.C), c), s.S);
}

// Σ over channel c's N values of term(plane offset, p), in double, samples then positions.
Carried channelSums(Kernel &k, const ChannelShape &s, Value *c, unsigned count,
                    const std::function<Carried(Value *plane, Value *p, llvm::ArrayRef<Value *> acc)> &term) {
  Carried zeros(count, k.f64(0));
  return reduceLoop(k.b, k.c(0), k.n, zeros, [&](Value *sample, llvm::ArrayRef<Value *> acc) {
    Value *plane = planeAt(k, s, sample, c);
    return reduceLoop(k.b, k.c(0), k.c(s.S), acc, [&](Value *p, llvm::ArrayRef<Value *> a) {
      return term(plane, p, a);
    }, "p");
  }, "s");
}

// Calls body(plane offset, p) for every value of channel c.
void forChannelValues(Kernel &k, const ChannelShape &s, Value *c, const std::function<void(Value *plane, Value *p)> &body) {
  forLoop(k.b, k.n, [&](Value *sample) {
    Value *plane = planeAt(k, s, sample, c);
    forLoop(k.b, k.c(s.S), [&](Value *p) { body(plane, p); }, "p");
  }, "s");
}

// y = x·scale + shift over channel c (scale, shift: floats).
void affine(Kernel &k, const ChannelShape &s, Value *c, Value *scale, Value *shift) {
  forChannelValues(k, s, c, [&](Value *plane, Value *p) {
    Value *i = k.add(plane, p);
    k.store(k.fma(k.load(k.in[0], i), scale, shift), k.out, i);
  });
}

// scale = γ·rstd, shift = β − mean·scale (double in, float out).
std::pair<Value *, Value *> transform(Kernel &k, Value *c, Value *mean, Value *rstd) {
  llvm::IRBuilder<> &b = k.b;
  Value *scale = b.CreateFMul(k.toDouble(k.load(k.in[1], c)), rstd);
  Value *shift = b.CreateFSub(k.toDouble(k.load(k.in[2], c)), b.CreateFMul(mean, scale));
  return {k.toFloat(scale), k.toFloat(shift)};
}

Value *rstdOf(Kernel &k, Value *var) {
  return k.b.CreateFDiv(k.f64(1), k.math(llvm::Intrinsic::sqrt, k.b.CreateFAdd(var, k.f64(k.node.f))));
}

// old·(1 − momentum) + momentum·value, stored back at state[c] when `update` (i1) holds.
void blend(Kernel &k, Value *state, Value *c, Value *value, Value *update) {
  llvm::IRBuilder<> &b = k.b;
  Value *old = k.load(state, c);
  Value *next = k.toFloat(b.CreateFAdd(b.CreateFMul(k.f64(kMomentum), value),
                                       b.CreateFMul(k.f64(1 - kMomentum), k.toDouble(old))));
  k.store(b.CreateSelect(update, next, old), state, c);
}

// The reduction pass of the backward kernels over channel c: the batch's mean and rstd, Σdy and
// Σdy·x̂ (doubles).
struct BackwardSums {
  Value *mean, *rstd, *sumDy, *sumDyXhat;
};

BackwardSums backwardSums(Kernel &k, const ChannelShape &s, Value *c, Value *x, Value *dy) {
  llvm::IRBuilder<> &b = k.b;
  Value *shiftK = k.toDouble(k.load(x, k.mul(c, s.S)));  // sample 0, position 0
  Carried sums = channelSums(k, s, c, 4, [&](Value *plane, Value *p, llvm::ArrayRef<Value *> a) -> Carried {
    Value *i = k.add(plane, p);
    Value *d = b.CreateFSub(k.toDouble(k.load(x, i)), shiftK);
    Value *g = k.toDouble(k.load(dy, i));
    return {k.sumAdd(a[0], d), k.dotAdd(a[1], d, d), k.sumAdd(a[2], g), k.dotAdd(a[3], g, d)};
  });
  Value *invN = b.CreateFDiv(k.f64(1), k.intToFP(k.mul(k.n, s.S), b.getDoubleTy()));
  Value *meanD = b.CreateFMul(sums[0], invN);  // mean − K
  Value *var = k.maxnum(b.CreateFSub(b.CreateFMul(sums[1], invN), b.CreateFMul(meanD, meanD)), k.f64(0));
  Value *rstd = rstdOf(k, var);
  // Σdy·(x − mean) = Σdy·(x − K) − (mean − K)·Σdy
  Value *sumDyXhat = b.CreateFMul(rstd, b.CreateFSub(sums[3], b.CreateFMul(meanD, sums[2])));
  return {b.CreateFAdd(shiftK, meanD), rstd, sums[2], sumDyXhat};
}

}  // namespace

void emitBatchNorm(Kernel &k) {
  const ChannelShape s = shapeOf(k.type());
  llvm::IRBuilder<> &b = k.b;
  Value *x = k.in[0], *batches = k.in[5];
  Value *update = b.CreateICmpSGT(k.mul(k.n, s.S), k.c(1));
  forChannels(k, s, [&](Kernel &h, Value *c) {
    llvm::IRBuilder<> &hb = h.b;
    Value *Nd = h.intToFP(h.mul(h.n, s.S), hb.getDoubleTy());
    Value *sum = channelSums(h, s, c, 1, [&](Value *plane, Value *p, llvm::ArrayRef<Value *> a) -> Carried {
      return {h.sumAdd(a[0], h.toDouble(h.load(x, h.add(plane, p))))};
    })[0];
    Value *mean = hb.CreateFDiv(sum, Nd);
    Value *sq = channelSums(h, s, c, 1, [&](Value *plane, Value *p, llvm::ArrayRef<Value *> a) -> Carried {
      Value *d = hb.CreateFSub(h.toDouble(h.load(x, h.add(plane, p))), mean);
      return {h.dotAdd(a[0], d, d)};
    })[0];
    Value *var = hb.CreateFDiv(sq, Nd);
    auto [scale, shift] = transform(h, c, mean, rstdOf(h, var));
    affine(h, s, c, scale, shift);
    Value *hasUnbiased = hb.CreateICmpSGT(h.mul(h.n, s.S), h.c(1));
    blend(h, h.in[3], c, mean, hasUnbiased);
    blend(h, h.in[4], c, hb.CreateFDiv(sq, hb.CreateFSub(Nd, h.f64(1))), hasUnbiased);
  });
  Value *count = k.load(batches, k.c(0));
  k.store(b.CreateSelect(update, b.CreateFAdd(count, k.f32(1)), count), batches, k.c(0));
}

void emitBatchNormEval(Kernel &k) {
  const ChannelShape s = shapeOf(k.type());
  forChannels(k, s, [&](Kernel &h, Value *c) {
    Value *mean = h.toDouble(h.load(h.in[3], c));
    Value *rstd = rstdOf(h, h.toDouble(h.load(h.in[4], c)));
    auto [scale, shift] = transform(h, c, mean, rstd);
    affine(h, s, c, scale, shift);
  });
}

// dx = a·dy + a·rstd·m·(x − mean) − a·mean(dy), a = γ·rstd, m = −mean(dy·x̂)
void emitBatchNormBwdData(Kernel &k) {
  const ChannelShape s = shapeOf(k.type());
  Value *x = k.in[0], *gamma = k.in[1], *dy = k.in[2];
  forChannels(k, s, [&](Kernel &h, Value *c) {
    llvm::IRBuilder<> &b = h.b;
    BackwardSums sums = backwardSums(h, s, c, x, dy);
    Value *invN = b.CreateFDiv(h.f64(1), h.intToFP(h.mul(h.n, s.S), b.getDoubleTy()));
    Value *a = b.CreateFMul(h.toDouble(h.load(gamma, c)), sums.rstd);
    Value *coefDy = h.toFloat(a);
    Value *coefX = h.toFloat(b.CreateFNeg(b.CreateFMul(b.CreateFMul(a, sums.rstd), b.CreateFMul(sums.sumDyXhat, invN))));
    Value *shift = h.toFloat(b.CreateFNeg(b.CreateFMul(a, b.CreateFMul(sums.sumDy, invN))));
    Value *mean = h.toFloat(sums.mean);
    forChannelValues(h, s, c, [&](Value *plane, Value *p) {
      Value *i = h.add(plane, p);
      Value *centered = b.CreateFSub(h.load(x, i), mean);
      h.store(h.fma(h.load(dy, i), coefDy, h.fma(centered, coefX, shift)), h.out, i);
    });
  });
}

// dγ[c] = Σ dy·x̂ (dβ is bias_grad(dy))
void emitBatchNormBwdGamma(Kernel &k) {
  const ChannelShape s = shapeOf(k.inType(0));
  forChannels(k, s, [&](Kernel &h, Value *c) {
    BackwardSums sums = backwardSums(h, s, c, h.in[0], h.in[1]);
    h.store(h.toFloat(sums.sumDyXhat), h.out, c);
  });
}

}  // namespace mtlc::codegen
