// Losses (batch means, PyTorch's default 'mean' reduction) and their gradients. The loss kernels
// touch n·width values, so they work in double: stable forms (log-sum-exp, BCE with logits),
// double sums. The exponentials and logarithms are the float polynomials of Math.cpp (≤ 1 ulp),
// in forms that keep their relative accuracy (log1p, σ(−z) for 1 − σ(z)), so the loops vectorise
// instead of calling libm per element; only cross-entropy's one log per sample stays double.
// The backward kernels scale by the incoming scalar gradient dL.
//
// Partial labels: a NaN label is absent. The mean runs over the present labels only, and an absent
// label's gradient is exactly 0 (selected, not multiplied, so a non-finite prediction there cannot
// leak NaN). Cross-entropy and BCE mask per sample (one label value per sample); MSE and L1 mask
// per element — the mean is over the present elements of the n·k label values, which is PyTorch's
// mean over `label[mask]`, and with every label present the plain mean over n·k. A batch with no
// present label gives loss 0 and a zero gradient.
//
// Dense (per-pixel) losses on a [C, H, W] head, with P = H·W positions per sample: cross-entropy
// takes a label [H·W] of class indices, a softmax over the C channels of each pixel (stride P),
// and its mean runs over the batch's labelled pixels (nn.CrossEntropyLoss(ignore_index=−1) on
// [N, C, H, W]: Σ over labelled pixels / their count; −1 becomes NaN when the data is bound).
// Cosine (on [C] as one pixel, or [C, H, W]): 1 − cos(p, t) over the channels of each pixel, with
// cos = p·t / (max(‖p‖, ε)·max(‖t‖, ε)), ε = 1e-8 (F.cosine_similarity's), averaged over the
// pixels whose label vector is non-zero (Σ t² > 0, so a NaN in it leaves the pixel out too).
#include "Kernel.h"
#include "LoopBuilder.h"

namespace mtlc::codegen {

namespace {

using ir::OpKind;

llvm::Value *dlog(Kernel &k, llvm::Value *x) { return k.math(llvm::Intrinsic::log, x); }

// Cross-entropy per sample: the row's max (float) and Σ_c exp(z_c − max) (double). The
// exponentials of the shifted logits (<= 0, results in (0, 1]) are the float polynomial (≤ 1 ulp,
// Math.cpp), so the row vectorises; the sum and everything after it stay double. With `expRow`
// the exponentials are also stored there (C floats).
struct SoftmaxRow {
  llvm::Value *max, *sumExp;
};

// The row's values are `stride` floats apart (a pixel's channels: stride H·W).
SoftmaxRow softmaxRow(Kernel &k, llvm::Value *zRow, int64_t C, llvm::Value *expRow = nullptr, int64_t stride = 1) {
  llvm::Value *max = reduceLoop(k.b, k.c(1), k.c(C), k.load(zRow, k.c(0)),
                                [&](llvm::Value *c, llvm::Value *acc) {
                                  return k.maxnum(acc, k.load(zRow, k.mul(c, stride)));
                                }, "c");
  llvm::Value *sumExp = reduceLoop(k.b, k.c(0), k.c(C), k.f64(0),
                                   [&](llvm::Value *c, llvm::Value *acc) {
                                     llvm::Value *e = k.exp(k.b.CreateFSub(k.load(zRow, k.mul(c, stride)), max));
                                     if (expRow) k.store(e, expRow, k.mul(c, stride));
                                     return k.sumAdd(acc, k.toDouble(e));
                                   }, "c");
  return {max, sumExp};
}

// A row that fits one vector (C <= lanes) as one masked vector: its max by a lane reduction
// (maxnum's, as softmaxRow's loop: NaN is skipped), e = exp(z − max) in every lane (0 past C,
// whose lanes hold −∞), Σ e in double. Per row a few dozen vector instructions, against three
// loops of C iterations with their remainders: a [256, 10] cross_entropy_bwd takes about half
// the time it took as three loops.
struct SoftmaxVector {
  llvm::Value *max, *sumExp, *e, *mask;
};

bool rowFitsVector(Kernel &k, int64_t C) { return C > 1 && C <= k.lanes() && k.target().nativeVectors; }

SoftmaxVector softmaxVector(Kernel &k, llvm::Value *zRow, int64_t C) {
  llvm::IRBuilder<> &b = k.b;
  const int VL = k.lanes();
  llvm::Value *mask = k.laneMask(VL, k.c(0), k.c(C));
  llvm::Value *minusInf = k.splat(VL, llvm::ConstantFP::getInfinity(b.getFloatTy(), true));
  llvm::Value *z = b.CreateSelect(mask, k.maskedLoad(VL, zRow, k.c(0), mask), minusInf);
  llvm::Value *max = b.CreateFPMaxReduce(z);
  llvm::Value *e = k.exp(b.CreateFSub(z, k.splat(VL, max)));
  auto *sum = llvm::cast<llvm::Instruction>(
      b.CreateFAddReduce(k.f64(-0.0), b.CreateFPExt(e, llvm::FixedVectorType::get(b.getDoubleTy(), VL))));
  sum->setHasAllowReassoc(true);
  return {max, sum, e, mask};
}

// Whether a label value is present: anything but NaN.
llvm::Value *present(Kernel &k, llvm::Value *y) { return k.b.CreateFCmpORD(y, y); }

// 1.0 for a present label value, 0.0 for an absent one (double, for counting).
llvm::Value *presentCount(Kernel &k, llvm::Value *y) {
  return k.b.CreateUIToFP(present(k, y), k.b.getDoubleTy());
}

// The class index a label value holds (stored as a float), clamped to [0, C−1] as the embedding
// gather clamps its indices (EmitGather.cpp): the runtime refuses labels outside [0, C) before a
// step, but a caller that skips the check must still never make the kernel read outside the row.
// The gradient then is the exact gradient of the clamped label's loss. An absent (NaN) label
// reads class 0, whose term the caller masks out; after the float clamp the conversion is always
// defined (no poison from NaN or ±inf).
llvm::Value *classIndex(Kernel &k, llvm::Value *y, int64_t C) {
  llvm::IRBuilder<> &b = k.b;
  llvm::Value *v = k.maxnum(y, k.f32(0));  // NaN -> 0
  v = b.CreateBinaryIntrinsic(llvm::Intrinsic::minnum, v, k.f32(double(C - 1)));
  // float(C−1) rounds up for C > 2^24: clamp again where it is exact.
  return k.smin(b.CreateFPToSI(v, b.getInt64Ty()), k.c(C - 1));
}

// x / count, or 0 when no label is present (count == 0), in double.
llvm::Value *perPresent(Kernel &k, llvm::Value *x, llvm::Value *count) {
  llvm::IRBuilder<> &b = k.b;
  return b.CreateSelect(b.CreateFCmpOGT(count, k.f64(0)), b.CreateFDiv(x, count), k.f64(0));
}

// The number of present values among label[0, values), in double.
llvm::Value *countPresent(Kernel &k, llvm::Value *label, llvm::Value *values) {
  return reduceLoop(k.b, k.c(0), values, k.f64(0), [&](llvm::Value *i, llvm::Value *acc) {
    return k.sumAdd(acc, presentCount(k, k.load(label, i)));
  }, "i");
}

// log(1 + e) for e in [0, 1], float: log(u) with u = 1 + e rounded, corrected by the rounding
// error (u − 1) − e (exact), so that e below u's precision still gives e, not 0.
llvm::Value *log1pSmall(Kernel &k, llvm::Value *e) {
  llvm::IRBuilder<> &b = k.b;
  llvm::Value *u = b.CreateFAdd(k.f32(1), e);
  llvm::Value *err = b.CreateFSub(b.CreateFSub(u, k.f32(1)), e);
  return b.CreateFSub(k.log(u), b.CreateFDiv(err, u));
}

// The per-element term of an elementwise loss, in double: pred p (or logit z), label y.
llvm::Value *lossTerm(Kernel &k, llvm::Value *p, llvm::Value *y) {
  llvm::IRBuilder<> &b = k.b;
  switch (k.node.op) {
    case OpKind::BCE: {  // max(z,0) − z·y + log(1 + e^−|z|): no overflow for any z
      llvm::Value *relu = k.maxnum(p, k.f64(0));
      llvm::Value *negAbs = b.CreateFNeg(k.math(llvm::Intrinsic::fabs, k.toFloat(p)));  // p was a float
      llvm::Value *softplus = k.toDouble(log1pSmall(k, k.exp(negAbs)));
      return b.CreateFAdd(b.CreateFSub(relu, b.CreateFMul(p, y)), softplus);
    }
    case OpKind::MSE: {
      llvm::Value *d = b.CreateFSub(p, y);
      return b.CreateFMul(d, d);
    }
    case OpKind::L1: return k.math(llvm::Intrinsic::fabs, b.CreateFSub(p, y));
    default: throw std::logic_error("lossTerm: not an elementwise loss");
  }
}

// d(term)/dp for an elementwise loss, in double.
llvm::Value *lossTermGrad(Kernel &k, llvm::Value *p, llvm::Value *y) {
  llvm::IRBuilder<> &b = k.b;
  llvm::Value *d = b.CreateFSub(p, y);
  switch (k.node.op) {
    case OpKind::BCEBwd: {  // σ(z) − y = (1 − y)·σ(z) − y·σ(−z): no cancellation at y = 0 or 1
      llvm::Value *z = k.toFloat(p);  // p was a float
      llvm::Value *up = k.toDouble(k.sigmoid(z)), *down = k.toDouble(k.sigmoid(b.CreateFNeg(z)));
      return b.CreateFSub(b.CreateFMul(b.CreateFSub(k.f64(1), y), up), b.CreateFMul(y, down));
    }
    case OpKind::MSEBwd: return b.CreateFMul(k.f64(2), d);
    case OpKind::L1Bwd: {  // sign(p − y), 0 at 0 like torch.sign
      llvm::Value *pos = b.CreateUIToFP(b.CreateFCmpOGT(d, k.f64(0)), b.getDoubleTy());
      llvm::Value *neg = b.CreateUIToFP(b.CreateFCmpOLT(d, k.f64(0)), b.getDoubleTy());
      return b.CreateFSub(pos, neg);
    }
    default: throw std::logic_error("lossTermGrad: not an elementwise loss gradient");
  }
}

// dz_c = scale·(softmax(z)_c − [c = y]) for a present label y, else 0, for the C logits of one
// sample or pixel, `stride` floats apart. The exponentials go to dRow on the way (the values
// softmaxRow sums), so each is computed once; the second pass turns them into the gradient in place.
void softmaxGradRow(Kernel &h, llvm::Value *zRow, llvm::Value *dRow, llvm::Value *y, int64_t C, int64_t stride,
                    llvm::Value *scale) {
  llvm::IRBuilder<> &b = h.b;
  SoftmaxRow r = softmaxRow(h, zRow, C, dRow, stride);
  llvm::Value *target = classIndex(h, y, C), *has = present(h, y);
  llvm::Value *invSum = b.CreateFDiv(h.f64(1), r.sumExp);
  forLoop(b, h.c(C), [&](llvm::Value *c) {
    llvm::Value *i = h.mul(c, stride);
    llvm::Value *softmax = b.CreateFMul(h.toDouble(h.load(dRow, i)), invSum);
    llvm::Value *onehot = b.CreateUIToFP(b.CreateICmpEQ(c, target), b.getDoubleTy());
    llvm::Value *g = h.toFloat(b.CreateFMul(b.CreateFSub(softmax, onehot), scale));
    h.store(b.CreateSelect(has, g, h.f32(0)), dRow, i);
  }, "c");
}

// Positions per sample of a per-pixel loss's prediction type: H·W of [C, H, W], else 1.
int64_t positions(const ir::Type &t) { return t.dims.size() == 3 ? t.dims[1] * t.dims[2] : 1; }

// One pixel of a per-pixel loss: sample s, position p; its C values are P floats apart from
// s·C·P + p.
struct Pixel {
  llvm::Value *offset, *index;  // of its first value; of the pixel (its label, for cross-entropy)
};

// body(pixel, acc) over every pixel of the call, carrying acc (sample-major, then position).
Carried pixelReduce(Kernel &k, int64_t C, int64_t P, llvm::ArrayRef<llvm::Value *> init,
                    llvm::function_ref<Carried(const Pixel &, llvm::ArrayRef<llvm::Value *>)> body) {
  return reduceLoop(k.b, k.c(0), k.n, init, [&](llvm::Value *s, llvm::ArrayRef<llvm::Value *> acc) {
    return reduceLoop(k.b, k.c(0), k.c(P), acc, [&](llvm::Value *p, llvm::ArrayRef<llvm::Value *> acc2) {
      return body(Pixel{k.add(k.mul(s, C * P), p), k.add(k.mul(s, P), p)}, acc2);
    }, "p");
  }, "s");
}

// Cosine: ε of F.cosine_similarity.
constexpr double kCosineEps = 1e-8;

// A pixel's Σ p·t, ‖p‖ and ‖t‖ (double) over its C channels, P floats apart.
struct CosineSums {
  llvm::Value *dot, *normP, *normT, *labelled;
};

CosineSums cosineSums(Kernel &k, llvm::Value *pred, llvm::Value *label, llvm::Value *offset, int64_t C,
                      int64_t P) {
  llvm::IRBuilder<> &b = k.b;
  llvm::Value *zero = k.f64(0);
  Carried s = reduceLoop(b, k.c(0), k.c(C), {zero, zero, zero}, [&](llvm::Value *c, llvm::ArrayRef<llvm::Value *> acc) {
    llvm::Value *i = k.add(offset, k.mul(c, P));
    llvm::Value *p = k.toDouble(k.load(pred, i)), *t = k.toDouble(k.load(label, i));
    return Carried{b.CreateFAdd(acc[0], b.CreateFMul(p, t)), b.CreateFAdd(acc[1], b.CreateFMul(p, p)),
                   b.CreateFAdd(acc[2], b.CreateFMul(t, t))};
  }, "c");
  return {s[0], k.math(llvm::Intrinsic::sqrt, s[1]), k.math(llvm::Intrinsic::sqrt, s[2]),
          b.CreateFCmpOGT(s[2], zero)};  // a NaN in the label vector: not labelled
}

// max(‖x‖, ε)
llvm::Value *clampNorm(Kernel &k, llvm::Value *norm) { return k.maxnum(norm, k.f64(kCosineEps)); }

// Per-pixel cross-entropy: Σ over labelled pixels of logsumexp − z_label, and their count.
Carried denseCrossEntropy(Kernel &k, int64_t C, int64_t P) {
  llvm::IRBuilder<> &b = k.b;
  llvm::Value *zero = k.f64(0);
  return pixelReduce(k, C, P, {zero, zero}, [&](const Pixel &px, llvm::ArrayRef<llvm::Value *> acc) {
    llvm::Value *y = k.load(k.in[1], px.index);
    llvm::Value *zRow = k.at(k.in[0], px.offset);
    SoftmaxRow r = softmaxRow(k, zRow, C, nullptr, P);
    llvm::Value *logSumExp = b.CreateFAdd(k.toDouble(r.max), dlog(k, r.sumExp));
    llvm::Value *target = k.toDouble(k.load(zRow, k.mul(classIndex(k, y, C), P)));
    llvm::Value *term = b.CreateSelect(present(k, y), b.CreateFSub(logSumExp, target), zero);
    return Carried{b.CreateFAdd(acc[0], term), b.CreateFAdd(acc[1], presentCount(k, y))};
  });
}

// Cosine: Σ over labelled pixels of 1 − cos, and their count.
Carried cosineLoss(Kernel &k, int64_t C, int64_t P) {
  llvm::IRBuilder<> &b = k.b;
  llvm::Value *zero = k.f64(0);
  return pixelReduce(k, C, P, {zero, zero}, [&](const Pixel &px, llvm::ArrayRef<llvm::Value *> acc) {
    CosineSums s = cosineSums(k, k.in[0], k.in[1], px.offset, C, P);
    llvm::Value *cos = b.CreateFDiv(s.dot, b.CreateFMul(clampNorm(k, s.normP), clampNorm(k, s.normT)));
    llvm::Value *term = b.CreateSelect(s.labelled, b.CreateFSub(k.f64(1), cos), zero);
    return Carried{b.CreateFAdd(acc[0], term),
                   b.CreateFAdd(acc[1], b.CreateUIToFP(s.labelled, b.getDoubleTy()))};
  });
}

// d(1 − cos)/dp for every labelled pixel, scaled by dL / (labelled pixels); 0 elsewhere.
void emitCosineBwd(Kernel &k, llvm::Value *dL) {
  llvm::IRBuilder<> &b = k.b;
  const int64_t C = k.inType(0).dims[0], P = positions(k.inType(0));
  llvm::Value *zero = k.f64(0);
  Carried labelled = pixelReduce(k, C, P, {zero}, [&](const Pixel &px, llvm::ArrayRef<llvm::Value *> acc) {
    CosineSums s = cosineSums(k, k.in[0], k.in[1], px.offset, C, P);  // (only ‖t‖ is live)
    return Carried{b.CreateFAdd(acc[0], b.CreateUIToFP(s.labelled, b.getDoubleTy()))};
  });
  llvm::Value *scale = perPresent(k, dL, labelled[0]);
  forLoops(b, {k.n, k.c(P)}, [&](llvm::ArrayRef<llvm::Value *> sp) {
    const Pixel px{k.add(k.mul(sp[0], C * P), sp[1]), nullptr};
    // cos = d/(a·c), a = max(‖p‖, ε), c = max(‖t‖, ε); ∂cos/∂p = t/(a·c) − d·p/(a²·c·‖p‖) where
    // ‖p‖ > ε (the clamp's gradient is 0 below it)
    CosineSums s = cosineSums(k, k.in[0], k.in[1], px.offset, C, P);
    llvm::Value *a = clampNorm(k, s.normP), *ac = b.CreateFMul(a, clampNorm(k, s.normT));
    llvm::Value *radial = b.CreateSelect(b.CreateFCmpOGT(s.normP, k.f64(kCosineEps)),
                                         b.CreateFDiv(s.dot, b.CreateFMul(b.CreateFMul(a, ac), s.normP)), zero);
    forLoop(b, k.c(C), [&](llvm::Value *c) {
      llvm::Value *i = k.add(px.offset, k.mul(c, P));
      llvm::Value *p = k.toDouble(k.load(k.in[0], i)), *t = k.toDouble(k.load(k.in[1], i));
      llvm::Value *dcos = b.CreateFSub(b.CreateFDiv(t, ac), b.CreateFMul(radial, p));
      llvm::Value *g = k.toFloat(b.CreateFMul(b.CreateFNeg(dcos), scale));
      k.store(b.CreateSelect(s.labelled, g, k.f32(0)), k.out, i);
    }, "c");
  });
}

// dz for per-pixel cross-entropy: dL·(softmax − onehot) / (labelled pixels) at labelled pixels.
void emitDenseCrossEntropyBwd(Kernel &k, llvm::Value *dL, int64_t C, int64_t P) {
  llvm::Value *pixels = k.mul(k.n, P);
  llvm::Value *scale = perPresent(k, dL, countPresent(k, k.in[1], pixels));
  parallelRange(k, pixels, std::max<int64_t>(1, 256 / C), (1 << 9) / C + 1,
                [&](Kernel &h, llvm::Value *q0, llvm::Value *q1) {
    llvm::IRBuilder<> &b = h.b;
    forLoop(b, q0, q1, [&](llvm::Value *q) {
      llvm::Value *s = b.CreateUDiv(q, h.c(P)), *p = b.CreateURem(q, h.c(P));
      llvm::Value *offset = h.add(h.mul(s, C * P), p);
      llvm::Value *zRow = h.at(h.in[0], offset), *dRow = h.at(h.out, offset);
      softmaxGradRow(h, zRow, dRow, h.load(h.in[1], q), C, P, scale);
    }, "q");
  });
}

}  // namespace

void emitLoss(Kernel &k) {
  llvm::IRBuilder<> &b = k.b;
  const ir::Type &pt = k.inType(0);
  llvm::Value *pred = k.in[0], *label = k.in[1];
  Carried sums;  // {Σ terms over present labels, number of present labels}
  llvm::Value *zero = k.f64(0);
  const int64_t P = positions(pt);
  if (k.node.op == OpKind::Cosine) {
    sums = cosineLoss(k, pt.dims[0], P);
  } else if (k.node.op == OpKind::CrossEntropy && P > 1) {
    sums = denseCrossEntropy(k, pt.dims[0], P);
  } else if (k.node.op == OpKind::CrossEntropy) {
    // L = mean_s [log Σ_c e^{z_sc} − z_{s,y_s}] over present y_s, row max subtracted before exp.
    int64_t C = pt.elements();
    sums = reduceLoop(b, k.c(0), k.n, {zero, zero},
                      [&](llvm::Value *s, llvm::ArrayRef<llvm::Value *> acc) {
      llvm::Value *y = k.load(label, s);
      llvm::Value *zRow = k.at(pred, k.mul(s, C));
      SoftmaxRow r = softmaxRow(k, zRow, C);  // (softmaxVector measured slower here)
      llvm::Value *logSumExp = b.CreateFAdd(k.toDouble(r.max), dlog(k, r.sumExp));
      llvm::Value *target = k.toDouble(k.load(zRow, classIndex(k, y, C)));
      llvm::Value *term = b.CreateSelect(present(k, y), b.CreateFSub(logSumExp, target), zero);
      return Carried{b.CreateFAdd(acc[0], term), b.CreateFAdd(acc[1], presentCount(k, y))};
    }, "s");
  } else {
    sums = reduceLoop(b, k.c(0), k.count(pt), {zero, zero},
                      [&](llvm::Value *i, llvm::ArrayRef<llvm::Value *> acc) {
      llvm::Value *y = k.load(label, i);
      llvm::Value *term = lossTerm(k, k.toDouble(k.load(pred, i)), k.toDouble(y));
      term = b.CreateSelect(present(k, y), term, zero);
      return Carried{k.sumAdd(acc[0], term), k.sumAdd(acc[1], presentCount(k, y))};
    }, "i");
  }
  k.store(k.toFloat(perPresent(k, sums[0], sums[1])), k.out, k.c(0));
}

void emitLossBwd(Kernel &k) {
  llvm::IRBuilder<> &b = k.b;
  const ir::Type &pt = k.inType(0);
  llvm::Value *pred = k.in[0], *label = k.in[1];
  llvm::Value *dL = k.toDouble(k.load(k.in[2], k.c(0)));
  if (k.node.op == OpKind::CosineBwd) return emitCosineBwd(k, dL);
  if (k.node.op == OpKind::CrossEntropyBwd && positions(pt) > 1)
    return emitDenseCrossEntropyBwd(k, dL, pt.dims[0], positions(pt));
  if (k.node.op == OpKind::CrossEntropyBwd) {
    // dz_sc = dL·(softmax(z_s)_c − [c = y_s]) / present for a present y_s, else 0
    int64_t C = pt.elements();
    llvm::Value *scale = perPresent(k, dL, countPresent(k, label, k.n));
    // Rows are independent: split across threads from 512 elements on (two exps each, ~6 µs).
    parallelRange(k, k.n, std::max<int64_t>(1, 256 / C), (1 << 9) / C + 1,
                  [&](Kernel &h, llvm::Value *s0, llvm::Value *s1) {
      llvm::IRBuilder<> &b = h.b;
      forLoop(b, s0, s1, [&](llvm::Value *s) {
        llvm::Value *zRow = h.at(h.in[0], h.mul(s, C)), *dRow = h.at(h.out, h.mul(s, C));
        llvm::Value *y = h.load(h.in[1], s);
        llvm::Value *has = present(h, y);
        if (rowFitsVector(h, C)) {
          const int VL = h.lanes();
          SoftmaxVector v = softmaxVector(h, zRow, C);
          auto *dvec = llvm::FixedVectorType::get(b.getDoubleTy(), VL);
          llvm::Value *invSum = b.CreateFDiv(h.f64(1), v.sumExp);
          llvm::Value *softmax = b.CreateFMul(b.CreateFPExt(v.e, dvec), b.CreateVectorSplat(VL, invSum));
          llvm::SmallVector<llvm::Constant *, 16> laneIds;
          for (int l = 0; l < VL; ++l) laneIds.push_back(b.getInt64(l));
          llvm::Value *onehot = b.CreateUIToFP(
              b.CreateICmpEQ(llvm::ConstantVector::get(laneIds), b.CreateVectorSplat(VL, classIndex(h, y, C))), dvec);
          llvm::Value *g = b.CreateFMul(b.CreateFSub(softmax, onehot), b.CreateVectorSplat(VL, scale));
          g = b.CreateFPTrunc(g, h.vec(VL));
          h.maskedStore(b.CreateSelect(has, g, llvm::Constant::getNullValue(h.vec(VL))), dRow, h.c(0), v.mask);
          return;
        }
        softmaxGradRow(h, zRow, dRow, y, C, 1, scale);
      }, "s");
    });
    return;
  }
  // Elementwise losses: dp_i = dL · term'(p_i, y_i) / present for a present y_i, else 0
  llvm::Value *count = k.count(pt);
  llvm::Value *scale = perPresent(k, dL, countPresent(k, label, count));
  forLoop(b, count, [&](llvm::Value *i) {
    llvm::Value *y = k.load(label, i);
    llvm::Value *g = lossTermGrad(k, k.toDouble(k.load(pred, i)), k.toDouble(y));
    g = k.toFloat(b.CreateFMul(g, scale));
    k.store(b.CreateSelect(present(k, y), g, k.f32(0)), k.out, i);
  });
}

}  // namespace mtlc::codegen
