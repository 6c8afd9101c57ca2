// Losses (batch means, PyTorch's default 'mean' reduction) and their gradients. The loss kernels
// touch n·width values, so they work in double throughout: stable forms (log-sum-exp, BCE with
// logits), double sums. The backward kernels scale by the incoming scalar gradient dL.
#include "Kernel.h"
#include "LoopBuilder.h"

namespace mtlc::codegen {

namespace {

using ir::OpKind;

llvm::Value *dexp(Kernel &k, llvm::Value *x) { return k.math(llvm::Intrinsic::exp, x); }
llvm::Value *dlog(Kernel &k, llvm::Value *x) { return k.math(llvm::Intrinsic::log, x); }

// Cross-entropy per sample: the row's max (float) and Σ_c exp(z_c − max) (double).
struct SoftmaxRow {
  llvm::Value *max, *sumExp;
};

SoftmaxRow softmaxRow(Kernel &k, llvm::Value *zRow, int64_t C) {
  llvm::Value *max = reduceLoop(k.b, k.c(1), k.c(C), k.load(zRow, k.c(0)),
                                [&](llvm::Value *c, llvm::Value *acc) {
                                  return k.maxnum(acc, k.load(zRow, c));
                                }, "c");
  llvm::Value *sumExp = reduceLoop(k.b, k.c(0), k.c(C), k.f64(0),
                                   [&](llvm::Value *c, llvm::Value *acc) {
                                     llvm::Value *shifted = k.b.CreateFSub(k.load(zRow, c), max);
                                     return k.sumAdd(acc, dexp(k, k.toDouble(shifted)));
                                   }, "c");
  return {max, sumExp};
}

// The class index a label row holds (stored as a float).
llvm::Value *classIndex(Kernel &k, llvm::Value *label, llvm::Value *s) {
  return k.b.CreateFPToSI(k.load(label, s), k.b.getInt64Ty());
}

// The per-element term of an elementwise loss, in double: pred p (or logit z), label y.
llvm::Value *lossTerm(Kernel &k, llvm::Value *p, llvm::Value *y) {
  llvm::IRBuilder<> &b = k.b;
  switch (k.node.op) {
    case OpKind::BCE: {  // max(z,0) − z·y + log(1 + e^−|z|): no overflow for any z
      llvm::Value *relu = k.maxnum(p, k.f64(0));
      llvm::Value *softplus =
          dlog(k, b.CreateFAdd(k.f64(1), dexp(k, b.CreateFNeg(k.math(llvm::Intrinsic::fabs, p)))));
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
    case OpKind::BCEBwd: {  // σ(z) − y
      llvm::Value *sigmoid =
          b.CreateFDiv(k.f64(1), b.CreateFAdd(k.f64(1), dexp(k, b.CreateFNeg(p))));
      return b.CreateFSub(sigmoid, y);
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

}  // namespace

void emitLoss(Kernel &k) {
  llvm::IRBuilder<> &b = k.b;
  const ir::Type &pt = k.inType(0);
  llvm::Value *pred = k.in[0], *label = k.in[1];
  llvm::Value *total;
  llvm::Value *count;  // what the mean divides by
  if (k.node.op == OpKind::CrossEntropy) {
    // L = mean_s [log Σ_c e^{z_sc} − z_{s,y_s}], with the row max subtracted before exp.
    int64_t C = pt.elements();
    total = reduceLoop(b, k.c(0), k.n, k.f64(0), [&](llvm::Value *s, llvm::Value *acc) {
      llvm::Value *zRow = k.at(pred, k.mul(s, C));
      SoftmaxRow r = softmaxRow(k, zRow, C);
      llvm::Value *logSumExp = b.CreateFAdd(k.toDouble(r.max), dlog(k, r.sumExp));
      llvm::Value *target = k.toDouble(k.load(zRow, classIndex(k, label, s)));
      return b.CreateFAdd(acc, b.CreateFSub(logSumExp, target));
    }, "s");
    count = k.n;
  } else {
    count = k.count(pt);
    total = reduceLoop(b, k.c(0), count, k.f64(0), [&](llvm::Value *i, llvm::Value *acc) {
      return k.sumAdd(acc, lossTerm(k, k.toDouble(k.load(pred, i)), k.toDouble(k.load(label, i))));
    }, "i");
  }
  k.store(k.toFloat(b.CreateFDiv(total, k.intToFP(count, b.getDoubleTy()))), k.out, k.c(0));
}

void emitLossBwd(Kernel &k) {
  llvm::IRBuilder<> &b = k.b;
  const ir::Type &pt = k.inType(0);
  llvm::Value *pred = k.in[0], *label = k.in[1];
  llvm::Value *dL = k.toDouble(k.load(k.in[2], k.c(0)));
  if (k.node.op == OpKind::CrossEntropyBwd) {
    // dz_sc = dL·(softmax(z_s)_c − [c = y_s]) / n
    int64_t C = pt.elements();
    llvm::Value *scale = b.CreateFDiv(dL, k.intToFP(k.n, b.getDoubleTy()));
    forLoop(b, k.n, [&](llvm::Value *s) {
      llvm::Value *zRow = k.at(pred, k.mul(s, C)), *dRow = k.at(k.out, k.mul(s, C));
      SoftmaxRow r = softmaxRow(k, zRow, C);
      llvm::Value *target = classIndex(k, label, s);
      llvm::Value *invSum = b.CreateFDiv(k.f64(1), r.sumExp);
      forLoop(b, k.c(C), [&](llvm::Value *c) {
        llvm::Value *shifted = k.toDouble(b.CreateFSub(k.load(zRow, c), r.max));
        llvm::Value *softmax = b.CreateFMul(dexp(k, shifted), invSum);
        llvm::Value *onehot = b.CreateUIToFP(b.CreateICmpEQ(c, target), b.getDoubleTy());
        k.store(k.toFloat(b.CreateFMul(b.CreateFSub(softmax, onehot), scale)), dRow, c);
      }, "c");
    }, "s");
    return;
  }
  // Elementwise losses: dp_i = dL · term'(p_i, y_i) / (n·width)
  llvm::Value *count = k.count(pt);
  llvm::Value *scale = b.CreateFDiv(dL, k.intToFP(count, b.getDoubleTy()));
  forLoop(b, count, [&](llvm::Value *i) {
    llvm::Value *g = lossTermGrad(k, k.toDouble(k.load(pred, i)), k.toDouble(k.load(label, i)));
    k.store(k.toFloat(b.CreateFMul(g, scale)), k.out, i);
  });
}

}  // namespace mtlc::codegen
