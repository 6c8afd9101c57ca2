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
// (Samples are independent: split across threads when there are enough elements.)
void forSamples(Kernel &k, const ir::Type &t, const std::function<void(Kernel &h, llvm::Value *row)> &perSample) {
  parallelRange(k, k.samples(t), std::max<int64_t>(1, 4096 / t.elements()), (1 << 15) / t.elements() + 1,
                [&](Kernel &h, llvm::Value *s0, llvm::Value *s1) {
    forLoop(h.b, s0, s1, [&](llvm::Value *s) { perSample(h, h.mul(s, t.elements())); }, "s");
  });
}

}  // namespace

// y = x̂·γ + β
void emitLayerNorm(Kernel &k) {
  int64_t E = k.type().elements();
  forSamples(k, k.type(), [&](Kernel &h, llvm::Value *row) {
    llvm::Value *x = h.in[0], *gamma = h.in[1], *beta = h.in[2];
    llvm::Value *xRow = h.at(x, row), *yRow = h.at(h.out, row);
    SampleStats st = sampleStats(h, xRow, E);
    forLoop(h.b, h.c(E), [&](llvm::Value *e) {
      llvm::Value *xhat = normalized(h, st, h.load(xRow, e));
      h.store(h.fma(xhat, h.load(gamma, e), h.load(beta, e)), yRow, e);
    }, "e");
  });
}

// dx = rstd·(g − mean(g) − x̂·mean(g·x̂)) with g = dy·γ
void emitLayerNormBwdData(Kernel &k) {
  int64_t E = k.type().elements();
  forSamples(k, k.type(), [&](Kernel &h, llvm::Value *row) {
    llvm::IRBuilder<> &b = h.b;
    llvm::Value *x = h.in[0], *gamma = h.in[1], *dy = h.in[2];
    llvm::Value *invE = h.f64(1.0 / double(E));
    llvm::Value *xRow = h.at(x, row), *dyRow = h.at(dy, row), *dxRow = h.at(h.out, row);
    SampleStats st = sampleStats(h, xRow, E);
    auto g = [&](llvm::Value *e) { return b.CreateFMul(h.load(dyRow, e), h.load(gamma, e)); };
    llvm::Value *meanG = h.toFloat(b.CreateFMul(
        sumOverSample(h, E, [&](llvm::Value *e) { return h.toDouble(g(e)); }), invE));
    llvm::Value *meanGX = h.toFloat(b.CreateFMul(sumOverSample(h, E, [&](llvm::Value *e) {
      return h.toDouble(b.CreateFMul(g(e), normalized(h, st, h.load(xRow, e))));
    }), invE));
    forLoop(b, h.c(E), [&](llvm::Value *e) {
      llvm::Value *xhat = normalized(h, st, h.load(xRow, e));
      llvm::Value *centered = b.CreateFSub(b.CreateFSub(g(e), meanG), b.CreateFMul(xhat, meanGX));
      h.store(b.CreateFMul(st.rstd, centered), dxRow, e);
    }, "e");
  });
}

// dγ[e] = Σ_s dy[s,e]·x̂[s,e]  (dβ is ReduceBatch(dy)); a sum over the batch, so serial.
void emitLayerNormBwdGamma(Kernel &k) {
  const ir::Type &xType = k.inType(0);
  int64_t E = xType.elements();
  llvm::Value *x = k.in[0], *dy = k.in[1];
  k.zero(k.out, k.c(E));
  forLoop(k.b, k.samples(xType), [&](llvm::Value *s) {
    llvm::Value *row = k.mul(s, E);
    llvm::Value *xRow = k.at(x, row), *dyRow = k.at(dy, row);
    SampleStats st = sampleStats(k, xRow, E);
    forLoop(k.b, k.c(E), [&](llvm::Value *e) {
      llvm::Value *xhat = normalized(k, st, k.load(xRow, e));
      k.store(k.fma(k.load(dyRow, e), xhat, k.load(k.out, e)), k.out, e);
    }, "e");
  }, "s");
}

}  // namespace mtlc::codegen
