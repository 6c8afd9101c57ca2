// Batch normalisation over channels (x[C,H,W], nn.BatchNorm2d) or features (x[F], nn.BatchNorm1d),
// momentum 0.1, and its gradients. Channel c's statistics run over every sample and every position
// of its plane: N = n·H·W values, summed in double. Every kernel reads [n,C,H,W] at most twice: one
// reduction pass, one elementwise pass.
//
//   training  one statistics pass: Σ(x−K), Σ(x−K)², shifted by the channel's first value K so the
//             variance does not cancel; mean, var = the batch's (biased variance); then one pass
//             y = x·scale + shift with scale = γ/√(var + eps), shift = β − mean·scale (PyTorch's
//             transform) and the fused chain (relu, the residual add) before the store; then
//             running_mean ← 0.9·running_mean + 0.1·mean, running_var ← 0.9·running_var +
//             0.1·var·N/(N−1), num_batches_tracked += 1. With N = 1 (PyTorch refuses such a batch)
//             the unbiased variance is undefined and the state is left as it is.
//   eval      the same transform with the running statistics, in float (batchNormEvalValue), so
//             that it is one per-channel affine map: alone it is this file's kernel, after a conv
//             or matmul it is a member of that kernel's epilogue (EmitFusion.cpp).
//   backward  batchnorm_bwd_stats: one reduction pass per channel (Σ(x−K), Σ(x−K)², Σdy,
//             Σdy·(x−K)) stored as [mean; rstd; Σdy; Σdy·x̂] of [4, C], whose last two rows are dβ
//             and dγ (batchnorm_bwd_param copies them out); batchnorm_bwd_data: one elementwise pass
//             dx = γ·rstd·(dy − mean(dy) − x̂·mean(dy·x̂)) from those rows.
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

// y = x·scale + shift over channel c (scale, shift: floats), then the fused chain, if any.
void affine(Kernel &k, const ChannelShape &s, Value *c, Value *scale, Value *shift) {
  forChannelValues(k, s, c, [&](Value *plane, Value *p) {
    Value *i = k.add(plane, p);
    Value *y = k.fma(k.load(k.in[0], i), scale, shift);
    k.store(k.chain ? k.chain(k, y, ElementSite{i, nullptr, c}) : y, k.out, i);
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

// The batch's mean and biased variance of channel c in one pass (doubles).
std::pair<Value *, Value *> batchStats(Kernel &k, const ChannelShape &s, Value *c, Value *x) {
  llvm::IRBuilder<> &b = k.b;
  Value *shiftK = k.toDouble(k.load(x, k.mul(c, s.S)));  // sample 0, position 0
  Carried sums = channelSums(k, s, c, 2, [&](Value *plane, Value *p, llvm::ArrayRef<Value *> a) -> Carried {
    Value *d = b.CreateFSub(k.toDouble(k.load(x, k.add(plane, p))), shiftK);
    return {k.sumAdd(a[0], d), k.dotAdd(a[1], d, d)};
  });
  Value *invN = b.CreateFDiv(k.f64(1), k.intToFP(k.mul(k.n, s.S), b.getDoubleTy()));
  Value *meanD = b.CreateFMul(sums[0], invN);  // mean − K
  Value *var = k.maxnum(b.CreateFSub(b.CreateFMul(sums[1], invN), b.CreateFMul(meanD, meanD)), k.f64(0));
  return {b.CreateFAdd(shiftK, meanD), var};
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
    auto [mean, var] = batchStats(h, s, c, x);
    auto [scale, shift] = transform(h, c, mean, rstdOf(h, var));
    affine(h, s, c, scale, shift);
    Value *hasUnbiased = hb.CreateICmpSGT(h.mul(h.n, s.S), h.c(1));
    blend(h, h.in[3], c, mean, hasUnbiased);
    blend(h, h.in[4], c, hb.CreateFDiv(hb.CreateFMul(var, Nd), hb.CreateFSub(Nd, h.f64(1))), hasUnbiased);
  });
  Value *count = k.load(batches, k.c(0));
  k.store(b.CreateSelect(update, b.CreateFAdd(count, k.f32(1)), count), batches, k.c(0));
}

std::pair<Value *, Value *> batchNormEvalTransform(Kernel &k, Value *gamma, Value *beta, Value *mean, Value *var,
                                                   double eps) {
  llvm::IRBuilder<> &b = k.b;
  auto cst = [&](double v) { return llvm::ConstantFP::get(var->getType(), v); };
  Value *scale = b.CreateFMul(gamma, b.CreateFDiv(cst(1), k.math(llvm::Intrinsic::sqrt, b.CreateFAdd(var, cst(eps)))));
  return {scale, b.CreateFSub(beta, b.CreateFMul(mean, scale))};
}

void emitBatchNormEval(Kernel &k) {
  const ChannelShape s = shapeOf(k.type());
  forChannels(k, s, [&](Kernel &h, Value *c) {
    auto [scale, shift] = batchNormEvalTransform(h, h.load(h.in[1], c), h.load(h.in[2], c), h.load(h.in[3], c),
                                                 h.load(h.in[4], c), h.node.f);
    affine(h, s, c, scale, shift);
  });
}

// stats[·, c] = (mean, rstd, Σdy, Σdy·x̂): the one reduction pass of the backward.
void emitBatchNormBwdStats(Kernel &k) {
  const ChannelShape s = shapeOf(k.inType(0));
  forChannels(k, s, [&](Kernel &h, Value *c) {
    BackwardSums sums = backwardSums(h, s, c, h.in[0], h.in[1]);
    Value *rows[4] = {sums.mean, sums.rstd, sums.sumDy, sums.sumDyXhat};
    for (int64_t r = 0; r < 4; ++r) h.store(h.toFloat(rows[r]), h.out, h.add(c, r * s.C));
  });
}

// dx = a·dy + a·rstd·m·(x − mean) − a·mean(dy), a = γ·rstd, m = −mean(dy·x̂): the one elementwise
// pass, its coefficients from batchnorm_bwd_stats.
void emitBatchNormBwdData(Kernel &k) {
  const ChannelShape s = shapeOf(k.type());
  Value *x = k.in[0], *gamma = k.in[1], *dy = k.in[2], *stats = k.in[3];
  forChannels(k, s, [&](Kernel &h, Value *c) {
    llvm::IRBuilder<> &b = h.b;
    auto row = [&](int64_t r) { return h.toDouble(h.load(stats, h.add(c, r * s.C))); };
    Value *rstd = row(1), *sumDy = row(2), *sumDyXhat = row(3);
    Value *invN = b.CreateFDiv(h.f64(1), h.intToFP(h.mul(h.n, s.S), b.getDoubleTy()));
    Value *a = b.CreateFMul(h.toDouble(h.load(gamma, c)), rstd);
    Value *coefDy = h.toFloat(a);
    Value *coefX = h.toFloat(b.CreateFNeg(b.CreateFMul(b.CreateFMul(a, rstd), b.CreateFMul(sumDyXhat, invN))));
    Value *shift = h.toFloat(b.CreateFNeg(b.CreateFMul(a, b.CreateFMul(sumDy, invN))));
    Value *mean = h.load(stats, c);
    forChannelValues(h, s, c, [&](Value *plane, Value *p) {
      Value *i = h.add(plane, p);
      Value *centered = b.CreateFSub(h.load(x, i), mean);
      h.store(h.fma(h.load(dy, i), coefDy, h.fma(centered, coefX, shift)), h.out, i);
    });
  });
}

// dγ or dβ: row ints[0] of batchnorm_bwd_stats.
void emitBatchNormBwdParam(Kernel &k) {
  const int64_t C = k.type().dims.at(0);
  forLoop(k.b, k.c(C), [&](Value *c) { k.store(k.load(k.in[0], k.add(c, k.attr(0) * C)), k.out, c); }, "c");
}

}  // namespace mtlc::codegen
