// MatMul in every transposition, with the batch as the row extent (dense forward, dx) and as the
// contracted extent (weight gradients), against a double-precision reference.
// Tolerance: 1e-5 relative + 1e-5 absolute (float accumulation of ≤ 64 products of values in [-1,1)).
#include "Harness.h"

using namespace mtlc;
using namespace mtlc::test;

namespace {

// C = op(A)·op(B) over row-major matrices with the given stored extents.
std::vector<double> referenceMatMul(const std::vector<double> &A, int64_t aRows, int64_t aCols,
                                    bool transA, const std::vector<double> &B, int64_t bRows,
                                    int64_t bCols, bool transB) {
  int64_t M = transA ? aCols : aRows, K = transA ? aRows : aCols, N = transB ? bRows : bCols;
  std::vector<double> C(M * N, 0.0);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double sum = 0;
      for (int64_t k = 0; k < K; ++k)
        sum += (transA ? A[k * aCols + i] : A[i * aCols + k]) *
               (transB ? B[j * bCols + k] : B[k * bCols + j]);
      C[i * N + j] = sum;
    }
  return C;
}

void checkMatMul(Type aType, Type bType, bool transA, bool transB, int64_t n) {
  Harness h(8);
  auto leaf = [&](const Type &t) { return t.batched ? h.input(t.dims) : h.param(t.dims); };
  Node *a = leaf(aType), *bNode = leaf(bType);
  Node *c = h.b.matmul(a, bNode, transA, transB);
  h.fillUniform(a);
  h.fillUniform(bNode);
  h.run(n);

  auto rowsOf = [&](const Type &t) { return ir::matrixView(t).first == -1 ? n : ir::matrixView(t).first; };
  auto A = values(h, a), B = values(h, bNode);
  A.resize(rowsOf(aType) * ir::matrixView(aType).second);
  B.resize(rowsOf(bType) * ir::matrixView(bType).second);
  auto want = referenceMatMul(A, rowsOf(aType), ir::matrixView(aType).second, transA, B,
                              rowsOf(bType), ir::matrixView(bType).second, transB);
  INFO("A " << aType.str() << (transA ? "ᵀ" : "") << " · B " << bType.str() << (transB ? "ᵀ" : "")
            << ", n = " << n);
  requireClose(h.read(c), want, 1e-5, 1e-5, "matmul");
}

}  // namespace

TEST_CASE("matmul: dense forward x·Wᵀ (batch is M)", "[codegen][matmul]") {
  checkMatMul(batched({13}), unbatched({7, 13}), false, true, 5);
  checkMatMul(batched({2, 3, 4}), unbatched({10, 24}), false, true, 8);  // flattened sample
}

TEST_CASE("matmul: x·W and dx = dy·W (batch is M, B not transposed)", "[codegen][matmul]") {
  checkMatMul(batched({13}), unbatched({13, 7}), false, false, 3);
  checkMatMul(batched({7}), unbatched({7, 13}), false, false, 6);
}

TEST_CASE("matmul: wide results span several column tiles", "[codegen][matmul]") {
  checkMatMul(batched({9}), unbatched({9, 1100}), false, false, 7);   // 1100 = 2·512 + 76
  checkMatMul(batched({5}), batched({1030}), true, false, 6);         // dW, K = n
  checkMatMul(batched({600}), unbatched({6, 600}), false, true, 5);   // long dot products
}

TEST_CASE("matmul: dW = dyᵀ·x contracts over the batch", "[codegen][matmul]") {
  checkMatMul(batched({7}), batched({13}), true, false, 5);
  checkMatMul(batched({3}), batched({37}), true, false, 1);
}

TEST_CASE("matmul: unbatched operands, all transpositions", "[codegen][matmul]") {
  checkMatMul(unbatched({4, 5}), unbatched({5, 6}), false, false, 1);
  checkMatMul(unbatched({5, 4}), unbatched({5, 6}), true, false, 1);
  checkMatMul(unbatched({4, 5}), unbatched({6, 5}), false, true, 1);
  checkMatMul(unbatched({5, 4}), unbatched({6, 5}), true, true, 1);
}
