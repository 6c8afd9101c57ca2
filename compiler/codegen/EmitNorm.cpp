// Layer normalisation over all per-sample elements (PyTorch's nn.LayerNorm(normalized_shape =
// the per-sample shape)), biased variance, and its gradients. Per-sample statistics are summed in
// double (two passes: mean, then squared deviations), the elementwise work is float.
#include "Kernel.h"
#include "LoopBuilder.h"

namespace mtlc::codegen {

namespace {

struct SampleStats {
  llvm::Value *mean;  // float
  llvm::Value *rstd;  // float: 1/sqrt(var + eps)
};

// Σ_e f(e) over one sample's E elements, accumulated in double.
template <typename Term>
llvm::Value *sumOverSample(Kernel &k, int64_t E, Term term) {
  return reduceLoop(k.b, k.c(0), k.c(E), k.f64(0), [&](llvm::Value *e, llvm::Value *acc) {
    return k.sumAdd(acc, term(e));
  }, "e");
}

SampleStats sampleStats(Kernel &k, llvm::Value *xRow, int64_t E) {
  llvm::IRBuilder<> &b = k.b;
  llvm::Value *invE = k.f64(1.0 / double(E));
  llvm::Value *mean = b.CreateFMul(
      sumOverSample(k, E, [&](llvm::Value *e) { return k.toDouble(k.load(xRow, e)); }), invE);
  llvm::Value *var = b.CreateFMul(sumOverSample(k, E, [&](llvm::Value *e) {
    llvm::Value *d = b.CreateFSub(k.toDouble(k.load(xRow, e)), mean);
    return b.CreateFMul(d, d);
  }), invE);
  llvm::Value *rstd = b.CreateFDiv(
      k.f64(1), k.math(llvm::Intrinsic::sqrt, b.CreateFAdd(var, k.f64(k.node.f))));
  return {k.toFloat(mean), k.toFloat(rstd)};
}

// x̂ = (x − mean)·rstd
llvm::Value *normalized(Kernel &k, const SampleStats &st, llvm::Value *x) {
  return k.b.CreateFMul(k.b.CreateFSub(x, st.mean), st.rstd);
}

// Calls perSample(row offset) for each sample of a value of type t.
template <typename Body>
void forSamples(Kernel &k, const ir::Type &t, Body perSample) {
  forLoop(k.b, k.samples(t), [&](llvm::Value *s) { perSample(k.mul(s, t.elements())); }, "s");
}

}  // namespace

// y = x̂·γ + β
void emitLayerNorm(Kernel &k) {
  int64_t E = k.type().elements();
  llvm::Value *x = k.in[0], *gamma = k.in[1], *beta = k.in[2];
  forSamples(k, k.type(), [&](llvm::Value *row) {
    llvm::Value *xRow = k.at(x, row), *yRow = k.at(k.out, row);
    SampleStats st = sampleStats(k, xRow, E);
    forLoop(k.b, k.c(E), [&](llvm::Value *e) {
      llvm::Value *xhat = normalized(k, st, k.load(xRow, e));
      k.store(k.fma(xhat, k.load(gamma, e), k.load(beta, e)), yRow, e);
    }, "e");
  });
}

// dx = rstd·(g − mean(g) − x̂·mean(g·x̂)) with g = dy·γ
void emitLayerNormBwdData(Kernel &k) {
  llvm::IRBuilder<> &b = k.b;
  int64_t E = k.type().elements();
  llvm::Value *x = k.in[0], *gamma = k.in[1], *dy = k.in[2];
  llvm::Value *invE = k.f64(1.0 / double(E));
  forSamples(k, k.type(), [&](llvm::Value *row) {
    llvm::Value *xRow = k.at(x, row), *dyRow = k.at(dy, row), *dxRow = k.at(k.out, row);
    SampleStats st = sampleStats(k, xRow, E);
    auto g = [&](llvm::Value *e) { return b.CreateFMul(k.load(dyRow, e), k.load(gamma, e)); };
    llvm::Value *meanG = k.toFloat(b.CreateFMul(
        sumOverSample(k, E, [&](llvm::Value *e) { return k.toDouble(g(e)); }), invE));
    llvm::Value *meanGX = k.toFloat(b.CreateFMul(sumOverSample(k, E, [&](llvm::Value *e) {
      return k.toDouble(b.CreateFMul(g(e), normalized(k, st, k.load(xRow, e))));
    }), invE));
    forLoop(b, k.c(E), [&](llvm::Value *e) {
      llvm::Value *xhat = normalized(k, st, k.load(xRow, e));
      llvm::Value *centered = b.CreateFSub(b.CreateFSub(g(e), meanG), b.CreateFMul(xhat, meanGX));
      k.store(b.CreateFMul(st.rstd, centered), dxRow, e);
    }, "e");
  });
}

// dγ[e] = Σ_s dy[s,e]·x̂[s,e]  (dβ is ReduceBatch(dy))
void emitLayerNormBwdGamma(Kernel &k) {
  const ir::Type &xType = k.inType(0);
  int64_t E = xType.elements();
  llvm::Value *x = k.in[0], *dy = k.in[1];
  k.zero(k.out, k.c(E));
  forSamples(k, xType, [&](llvm::Value *row) {
    llvm::Value *xRow = k.at(x, row), *dyRow = k.at(dy, row);
    SampleStats st = sampleStats(k, xRow, E);
    forLoop(k.b, k.c(E), [&](llvm::Value *e) {
      llvm::Value *xhat = normalized(k, st, k.load(xRow, e));
      k.store(k.fma(k.load(dyRow, e), xhat, k.load(k.out, e)), k.out, e);
    }, "e");
  });
}

}  // namespace mtlc::codegen
