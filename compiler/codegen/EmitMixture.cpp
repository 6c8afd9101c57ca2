// Expert mixtures (MMoE, CGC/PLE, cross-stitch): the gate's softmax, the weighted sum of expert
// outputs, and their gradients.
//
// Softmax runs per sample over a [k] vector: the row's max is subtracted before exp (Math.cpp's,
// ≤ 1 ulp), the normaliser is summed in double. Mix is out = Σ_k w_k·x_k, one contiguous loop over the
// sample's elements with the E inputs unrolled (E is a compile-time operand count); w is either a
// per-sample gate (batched [E], w[s,k]) or an unbatched [R,E] matrix of which row `ints[0]` is used
// for every sample (cross-stitch units). Gradient sums over a sample's elements are float
// (reassociable, so they vectorise); the matrix form's sum over the batch is double.
#include "EmitMtlOps.h"
#include "LoopBuilder.h"

namespace mtlc::codegen {

namespace {

// How a Mix-family node reads its weights: per sample (a gate) or one fixed row of a matrix.
struct MixWeights {
  llvm::Value *w;  // float *
  bool gate;       // batched [E]: w[s*E + k]; else [R,E]: w[row*E + k]
  int64_t E, row;

  MixWeights(const ir::Type &t, llvm::Value *ptr, int64_t rowAttr)
      : w(ptr), gate(t.batched), E(t.batched ? t.dims.at(0) : t.dims.at(1)), row(rowAttr) {}

  // w[k] for sample s (s unused for the matrix form).
  llvm::Value *load(Kernel &k, llvm::Value *s, int64_t kk) const {
    llvm::Value *base = gate ? k.mul(s, E) : k.c(row * E);
    return k.load(w, k.add(base, kk));
  }
};

}  // namespace

// y[s,c] = e^(x[s,c] − m_s) / Σ_c' e^(x[s,c'] − m_s), m_s the row max. A NaN in the row makes the
// whole row NaN (as in PyTorch).
void emitSoftmax(Kernel &k) {
  llvm::IRBuilder<> &b = k.b;
  int64_t K = k.type().elements();
  forLoop(b, k.samples(k.type()), [&](llvm::Value *s) {
    llvm::Value *xRow = k.at(k.in[0], k.mul(s, K)), *yRow = k.at(k.out, k.mul(s, K));
    llvm::Value *max = reduceLoop(b, k.c(1), k.c(K), k.load(xRow, k.c(0)),
                                  [&](llvm::Value *c, llvm::Value *acc) {
                                    return k.maxnum(acc, k.load(xRow, c));
                                  }, "c");
    // The unnormalised exponentials go straight to y in a loop of their own, which vectorises
    // (the exp is Math.cpp's polynomial, not a libm call); then their sum, in double.
    forLoop(b, k.c(K), [&](llvm::Value *c) {
      k.store(k.exp(b.CreateFSub(k.load(xRow, c), max)), yRow, c);
    }, "c");
    llvm::Value *sum = reduceLoop(b, k.c(0), k.c(K), k.f64(0),
                                  [&](llvm::Value *c, llvm::Value *acc) {
                                    return k.sumAdd(acc, k.toDouble(k.load(yRow, c)));
                                  }, "c");
    llvm::Value *inv = k.toFloat(b.CreateFDiv(k.f64(1), sum));
    forLoop(b, k.c(K), [&](llvm::Value *c) {
      k.store(b.CreateFMul(k.load(yRow, c), inv), yRow, c);
    }, "c");
  }, "s");
}

// dx[s,c] = y[s,c]·(dy[s,c] − Σ_c' y[s,c']·dy[s,c'])
void emitSoftmaxBwd(Kernel &k) {
  llvm::IRBuilder<> &b = k.b;
  int64_t K = k.type().elements();
  forLoop(b, k.samples(k.type()), [&](llvm::Value *s) {
    llvm::Value *row = k.mul(s, K);
    llvm::Value *yRow = k.at(k.in[0], row), *dyRow = k.at(k.in[1], row), *dxRow = k.at(k.out, row);
    llvm::Value *dot = reduceLoop(b, k.c(0), k.c(K), k.f64(0),
                                  [&](llvm::Value *c, llvm::Value *acc) {
                                    llvm::Value *p = b.CreateFMul(k.load(yRow, c), k.load(dyRow, c));
                                    return k.sumAdd(acc, k.toDouble(p));
                                  }, "c");
    llvm::Value *dotF = k.toFloat(dot);
    forLoop(b, k.c(K), [&](llvm::Value *c) {
      llvm::Value *centered = b.CreateFSub(k.load(dyRow, c), dotF);
      k.store(b.CreateFMul(k.load(yRow, c), centered), dxRow, c);
    }, "c");
  }, "s");
}

// out[s,j] = Σ_k w_k·x_k[s,j]
void emitMix(Kernel &k) {
  llvm::IRBuilder<> &b = k.b;
  MixWeights mw(k.inType(0), k.in[0], k.attr(0));
  int64_t D = k.type().elements();
  llvm::SmallVector<llvm::Value *, 8> fixed;  // the matrix form's weights, loaded once
  if (!mw.gate)
    for (int64_t e = 0; e < mw.E; ++e) fixed.push_back(mw.load(k, nullptr, e));
  forLoop(b, k.samples(k.type()), [&](llvm::Value *s) {
    llvm::SmallVector<llvm::Value *, 8> w = fixed;
    if (mw.gate)
      for (int64_t e = 0; e < mw.E; ++e) w.push_back(mw.load(k, s, e));
    llvm::Value *row = k.mul(s, D);
    forLoop(b, k.c(D), [&](llvm::Value *j) {
      llvm::Value *i = k.add(row, j);
      llvm::Value *acc = b.CreateFMul(w[0], k.load(k.in[1], i));
      for (int64_t e = 1; e < mw.E; ++e) acc = k.fma(w[e], k.load(k.in[1 + e], i), acc);
      k.store(acc, k.out, i);
    }, "j");
  }, "s");
}

// Gate: dw[s,k] = Σ_j dy[s,j]·x_k[s,j]. Matrix [R,E]: dw[row,k] = Σ_s Σ_j dy[s,j]·x_k[s,j] and
// every other row 0 (the whole result is written).
void emitMixBwdWeights(Kernel &k) {
  llvm::IRBuilder<> &b = k.b;
  const ir::Type &wt = k.type();
  MixWeights mw(wt, k.out, k.attr(0));
  const ir::Type &yt = k.inType(0);
  int64_t D = yt.elements(), E = mw.E;
  // The E per-sample dot products in one pass over the sample (dy loaded once per element).
  auto sampleDots = [&](llvm::Value *s) {
    llvm::Value *row = k.mul(s, D);
    Carried zeros(E, k.f32(0));
    return reduceLoop(b, k.c(0), k.c(D), zeros,
                      [&](llvm::Value *j, llvm::ArrayRef<llvm::Value *> acc) {
                        llvm::Value *i = k.add(row, j);
                        llvm::Value *dy = k.load(k.in[0], i);
                        Carried next;
                        for (int64_t e = 0; e < E; ++e)
                          next.push_back(k.dotAdd(acc[e], dy, k.load(k.in[1 + e], i)));
                        return next;
                      }, "j");
  };
  if (mw.gate) {
    forLoop(b, k.samples(yt), [&](llvm::Value *s) {
      Carried dots = sampleDots(s);
      for (int64_t e = 0; e < E; ++e) k.store(dots[e], k.out, k.add(k.mul(s, E), e));
    }, "s");
    return;
  }
  k.zero(k.out, k.c(wt.elements()));
  Carried zeros(E, k.f64(0));
  Carried sums = reduceLoop(b, k.c(0), k.samples(yt), zeros,
                            [&](llvm::Value *s, llvm::ArrayRef<llvm::Value *> acc) {
                              Carried dots = sampleDots(s);
                              Carried next;
                              for (int64_t e = 0; e < E; ++e)
                                next.push_back(b.CreateFAdd(acc[e], k.toDouble(dots[e])));
                              return next;
                            }, "s");
  for (int64_t e = 0; e < E; ++e) k.store(k.toFloat(sums[e]), k.out, k.c(mw.row * E + e));
}

// dx_k[s,j] = w_k·dy[s,j] (w_k per sample for a gate); ints = {k, row}
void emitMixBwdInput(Kernel &k) {
  llvm::IRBuilder<> &b = k.b;
  MixWeights mw(k.inType(0), k.in[0], k.attr(1));
  int64_t which = k.attr(0), D = k.type().elements();
  llvm::Value *fixed = mw.gate ? nullptr : mw.load(k, nullptr, which);
  forLoop(b, k.samples(k.type()), [&](llvm::Value *s) {
    llvm::Value *w = mw.gate ? mw.load(k, s, which) : fixed;
    llvm::Value *row = k.mul(s, D);
    forLoop(b, k.c(D), [&](llvm::Value *j) {
      llvm::Value *i = k.add(row, j), *v = b.CreateFMul(w, k.load(k.in[1], i));
      k.store(k.chain ? k.chain(k, v, ElementSite{i}) : v, k.out, i);
    }, "j");
  }, "s");
}

}  // namespace mtlc::codegen
