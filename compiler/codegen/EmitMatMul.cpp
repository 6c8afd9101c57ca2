// Matrix multiplication: the MatMul node over the 2-D views of IR.h, and the general GEMM loop nest
// the convolutions reuse.
//
// Two loop shapes, both with a contiguous innermost loop that LLVM vectorises:
//  - B not transposed: i-k-j. C's row is updated along a row of B. Rows of C are taken four at a
//    time, so each element of B loaded feeds four multiply-adds.
//  - B transposed ([N,K]): every C element is a dot product of two contiguous rows; four columns
//    of C at a time share each load of A's row. The sums are marked reassociable so the
//    vectoriser may split them into lanes.
#include "ir/Builder.h"  // ir::matrixView
#include "Kernel.h"
#include "LoopBuilder.h"

namespace mtlc::codegen {

namespace {

constexpr int64_t kBlock = 4;         // rows of C (i-k-j) or columns of C (dot products) per pass
constexpr int64_t kColumnTile = 512;  // columns of C per tile in the i-k-j form (2 KiB per row)

// Element (i, kk) of op(A).
llvm::Value *elementOfOpA(Kernel &k, const Gemm &g, llvm::Value *i, llvm::Value *kk) {
  return g.transA ? k.load(g.A, k.add(k.mul(kk, g.M), i)) : k.load(g.A, k.add(k.mul(i, g.K), kk));
}

// The i-k-j update of rows [i0, i0+rows) of C, columns [j0, j1).
void ikjRows(Kernel &k, const Gemm &g, llvm::Value *i0, int64_t rows, llvm::Value *j0,
             llvm::Value *j1) {
  llvm::Value *cRows = k.at(g.C, k.mul(i0, g.N));
  if (!g.accumulate)
    for (int64_t r = 0; r < rows; ++r)
      k.zero(k.at(cRows, k.add(k.mul(g.N, r), j0)), k.sub(j1, j0));
  forLoop(k.b, g.K, [&](llvm::Value *kk) {
    llvm::SmallVector<llvm::Value *, kBlock> a;
    for (int64_t r = 0; r < rows; ++r) a.push_back(elementOfOpA(k, g, k.add(i0, r), kk));
    llvm::Value *bRow = k.at(g.B, k.mul(kk, g.N));
    forLoop(k.b, j0, j1, [&](llvm::Value *j) {
      llvm::Value *bv = k.load(bRow, j);
      for (int64_t r = 0; r < rows; ++r) {
        llvm::Value *ci = k.add(k.mul(g.N, r), j);
        k.store(k.fma(a[r], bv, k.load(cRows, ci)), cRows, ci);
      }
    }, "j");
  }, "k");
}

// Dot products of row i of op(A) with `cols` consecutive rows of B starting at j0.
void dotColumns(Kernel &k, const Gemm &g, llvm::Value *i, llvm::Value *j0, int64_t cols) {
  llvm::SmallVector<llvm::Value *, kBlock> zeros(cols, k.f32(0));
  Carried sums = reduceLoop(k.b, k.c(0), g.K, zeros,
      [&](llvm::Value *kk, llvm::ArrayRef<llvm::Value *> acc) {
        llvm::Value *a = elementOfOpA(k, g, i, kk);
        Carried next;
        for (int64_t c = 0; c < cols; ++c)
          next.push_back(k.dotAdd(acc[c], a, k.load(g.B, k.add(k.mul(k.add(j0, c), g.K), kk))));
        return next;
      }, "k");
  for (int64_t c = 0; c < cols; ++c) {
    llvm::Value *ci = k.add(k.mul(i, g.N), k.add(j0, c));
    llvm::Value *v = g.accumulate ? k.b.CreateFAdd(k.load(g.C, ci), sums[c]) : sums[c];
    k.store(v, g.C, ci);
  }
}

// Splits [0, extent) into full blocks of kBlock and a remainder, calling body(start, size).
template <typename Body>
void forBlocks(Kernel &k, llvm::Value *extent, Body body, const char *name) {
  llvm::Value *blocks = k.b.CreateUDiv(extent, k.c(kBlock));
  forLoop(k.b, blocks, [&](llvm::Value *blk) { body(k.mul(blk, kBlock), kBlock); }, name);
  llvm::Value *done = k.mul(blocks, kBlock);
  forLoop(k.b, done, extent, [&](llvm::Value *rest) { body(rest, 1); }, name);
}

}  // namespace

void emitGemm(Kernel &k, const Gemm &g) {
  if (!g.transB) {
    // Columns in tiles of kColumnTile, so the block of C rows being updated stays in L1 while k
    // sweeps (the tile of B is reused from L2 by every block of rows).
    llvm::Value *tiles = k.b.CreateUDiv(k.add(g.N, kColumnTile - 1), k.c(kColumnTile));
    forLoop(k.b, tiles, [&](llvm::Value *tile) {
      llvm::Value *j0 = k.mul(tile, kColumnTile);
      llvm::Value *j1 = k.smin(g.N, k.add(j0, kColumnTile));
      forBlocks(k, g.M, [&](llvm::Value *i0, int64_t rows) { ikjRows(k, g, i0, rows, j0, j1); }, "i");
    }, "tile");
    return;
  }
  forLoop(k.b, g.M, [&](llvm::Value *i) {
    forBlocks(k, g.N, [&](llvm::Value *j0, int64_t cols) { dotColumns(k, g, i, j0, cols); }, "j");
  }, "i");
}

// The MatMul node: any of M and K may be the run-time batch size n (dense forward: M = n; weight
// gradient dW = dyᵀ·x: K = n); N never is.
void emitMatMul(Kernel &k) {
  auto extent = [&](int64_t e) { return e == -1 ? k.n : k.c(e); };
  auto [aRows, aCols] = ir::matrixView(k.inType(0));
  auto [bRows, bCols] = ir::matrixView(k.inType(1));
  Gemm g;
  g.transA = k.attr(0) != 0;
  g.transB = k.attr(1) != 0;
  g.A = k.in[0], g.B = k.in[1], g.C = k.out;
  g.M = extent(g.transA ? aCols : aRows);
  g.K = extent(g.transA ? aRows : aCols);
  g.N = extent(g.transB ? bRows : bCols);
  emitGemm(k, g);
}

}  // namespace mtlc::codegen
