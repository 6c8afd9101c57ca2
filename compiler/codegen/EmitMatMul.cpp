// The MatMul node over the 2-D views of IR.h, through the packed GEMM (EmitGemm.cpp). Any of M
// and K may be the run-time batch size n (dense forward: M = n; weight gradient dW = dyᵀ·x:
// K = n); N never is. A fused chain (bias, activation, ...) runs in the GEMM's store epilogue at
// flat index row·N + col.
#include "ir/Builder.h"  // ir::matrixView
#include "Kernel.h"
#include "GemmBlocking.h"

namespace mtlc::codegen {

// The packing panels of kGemmSlots threads, each packing the panels it reads into its own slot.
int64_t matMulScratchFloats(const ir::Node &n, int64_t maxBatch) {
  auto [aRows, aCols] = ir::matrixView(n.operands.at(0)->type);
  auto [bRows, bCols] = ir::matrixView(n.operands.at(1)->type);
  bool transA = n.ints.at(0) != 0, transB = n.ints.at(1) != 0;
  return gemmPackFloats(transA ? aCols : aRows, transA ? aRows : aCols, transB ? bRows : bCols, kGemmSlots,
                        maxBatch);
}

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
  g.slots = int(kGemmSlots);  // the plan reserves that many (matMulScratchFloats)
  if (!k.type().batched) g.prefer = Gemm::Split::Rows;
  else if (g.transB && !k.inType(1).batched) g.prefer = Gemm::Split::Cols;
  if (k.chain) {
    // A bias along the result's dim 0 runs along C's columns ([n, N] results) or rows ([M, N]).
    const ir::Type &t = k.type();
    bool alongColumns = t.batched && t.dims.size() == 1, alongRows = !t.batched && t.dims.size() == 2;
    llvm::Value *N = g.N;
    g.epilogue = [=](Kernel &k, llvm::Value *v, const TileSite &site) {
      ElementSite e{k.add(k.mul(site.row, N), site.col), site.mask};
      if (alongColumns) e.channel = site.col, e.perLane = true;
      if (alongRows) e.channel = site.row;
      return k.chain(k, v, e);
    };
  }
  emitGemm(k, g);
}

}  // namespace mtlc::codegen
