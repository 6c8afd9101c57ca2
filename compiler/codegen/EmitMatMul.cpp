// MatMul over the 2-D views of IR.h: out[M,N] = op(A)[M,K] · op(B)[K,N], where op transposes when
// the node's transA / transB flag is set. Any of M and K may be the run-time batch size n
// (dense forward: M = n; weight gradient dW = dyᵀ·x: K = n); N never is.
#include "ir/Builder.h"  // ir::matrixView
#include "Kernel.h"
#include "LoopBuilder.h"

namespace mtlc::codegen {

void emitMatMul(Kernel &k) {
  llvm::IRBuilder<> &b = k.b;
  const bool transA = k.attr(0) != 0, transB = k.attr(1) != 0;
  auto extent = [&](int64_t e) { return e == -1 ? k.n : k.c(e); };
  auto [aRows, aCols] = ir::matrixView(k.inType(0));
  auto [bRows, bCols] = ir::matrixView(k.inType(1));
  llvm::Value *M = extent(transA ? aCols : aRows);
  llvm::Value *K = extent(transA ? aRows : aCols);
  llvm::Value *N = extent(transB ? bRows : bCols);
  llvm::Value *A = k.in[0], *B = k.in[1], *C = k.out;

  // Element (i, kk) of op(A): A is stored [M,K], or [K,M] when transposed.
  auto opA = [&](llvm::Value *i, llvm::Value *kk) {
    return transA ? k.load(A, k.add(k.mul(kk, M), i)) : k.load(A, k.add(k.mul(i, K), kk));
  };

  if (!transB) {
    // i-k-j order: the innermost loop runs along a row of B and a row of C, both contiguous, so
    // it vectorises; the C row stays in cache while k sweeps. C is overwritten, never accumulated
    // across calls.
    forLoop(b, M, [&](llvm::Value *i) {
      llvm::Value *cRow = k.at(C, k.mul(i, N));
      k.zero(cRow, N);
      forLoop(b, K, [&](llvm::Value *kk) {
        llvm::Value *a = opA(i, kk);
        llvm::Value *bRow = k.at(B, k.mul(kk, N));
        forLoop(b, N, [&](llvm::Value *j) {
          k.store(k.fma(a, k.load(bRow, j), k.load(cRow, j)), cRow, j);
        }, "j");
      }, "k");
    }, "i");
    return;
  }

  // B is stored [N,K]: each result is a dot product along contiguous rows of A (unless transposed)
  // and B, a reduction the vectoriser splits into lanes.
  forLoop(b, M, [&](llvm::Value *i) {
    forLoop(b, N, [&](llvm::Value *j) {
      llvm::Value *bRow = k.at(B, k.mul(j, K));
      llvm::Value *dot = reduceLoop(b, k.c(0), K, k.f32(0), [&](llvm::Value *kk, llvm::Value *acc) {
        return k.dotAdd(acc, opA(i, kk), k.load(bRow, kk));
      }, "k");
      k.store(dot, C, k.add(k.mul(i, N), j));
    }, "j");
  }, "i");
}

}  // namespace mtlc::codegen
