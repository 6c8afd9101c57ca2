// The MatMul node over the 2-D views of IR.h, through the packed GEMM (EmitGemm.cpp). Any of M
// and K may be the run-time batch size n (dense forward: M = n; weight gradient dW = dyᵀ·x:
// K = n); N never is. A fused chain (bias, activation, ...) runs in the GEMM's store epilogue at
// flat index row·N + col.
#include "ir/Builder.h"  // ir::matrixView
#include "Kernel.h"

namespace mtlc::codegen {

void emitMatMul(Kernel &k) {
  auto extent = [&](int64_t e) { return e == -1 ? k.n : k.c(e); };
  auto [aRows, aCols] = ir::matrixView(k.inType(0));
  auto [bRows, bCols] = ir::matrixView(k.inType(1));
  Gemm g;
  g.transA = k.attr(0) != 0;
  g.transB = k.attr(1) != 0;
  g.A = k.in[0], g.B = k.in[1], g.C = k.out;
  g.staticM = g.transA ? aCols : aRows;
  g.staticK = g.transA ? aRows : aCols;
  g.staticN = g.transB ? bRows : bCols;
  g.M = extent(g.staticM), g.K = extent(g.staticK), g.N = extent(g.staticN);
  g.pack = k.scratch;
  if (k.chain) {
    llvm::Value *N = g.N;
    g.epilogue = [N](Kernel &k, llvm::Value *v, const TileSite &site) {
      return k.chain(k, v, k.add(k.mul(site.row, N), site.col), site.mask);
    };
  }
  emitGemm(k, g);
}

}  // namespace mtlc::codegen
