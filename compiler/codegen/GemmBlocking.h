// Working memory of the packed GEMM (EmitGemm.cpp) and of the convolutions (EmitConv.cpp): the
// scratch hooks (matMulScratchFloats, convScratchFloats) report it to the memory plan, and the
// emitters check that what they generate fits. Target independent: the bounds hold for every
// register tile codegen may choose.
//
// The GEMM packs a block of op(A) (up to kGemmMaxMB rows × kGemmMaxKC) and a block of op(B)
// (kGemmMaxKC × up to kGemmMaxNB columns) into panels padded to a multiple of the register tile
// (at most kGemmMaxTile rows or columns, so padding adds less than that); codegen aligns the
// scratch pointer and each block to 64 bytes (the 16-float and 32-float slack below).
#pragma once

#include <algorithm>
#include <cstdint>

namespace mtlc::codegen {

constexpr int64_t kGemmMaxKC = 384;   // depth of a packed block
constexpr int64_t kGemmMaxMB = 512;   // rows of op(A) per packed block
constexpr int64_t kGemmMaxNB = 768;   // columns of op(B) per packed block
constexpr int64_t kGemmMaxTile = 64;  // largest register tile extent (rows or columns)

// A MatMul node splits across up to kGemmSlots threads, each packing its own copy of the panels
// it reads into a slot of its own: a panel written by one core and read by another costs a
// cross-core transfer on every read and every rewrite, which on two cores took a third of the
// time a second thread saved. A GEMM inside a convolution's chunk runs on one slot.
constexpr int64_t kGemmSlots = 8;

// Floats of one slot's panels for C[M,N] = op(A)[M,K]·op(B)[K,N]; an extent of -1 is the
// run-time batch size (at most maxBatch), bounded by the block size.
inline int64_t gemmSlotFloats(int64_t M, int64_t K, int64_t N, int64_t maxBatch = INT64_MAX) {
  auto up = [](int64_t v, int64_t to) { return (v + to - 1) / to * to; };
  auto bound = [&](int64_t e, int64_t block) { return std::min(e < 0 ? maxBatch : e, block); };
  int64_t kc = bound(K, kGemmMaxKC), mb = bound(M, kGemmMaxMB), nb = bound(N, kGemmMaxNB);
  return up(kc * (mb + kGemmMaxTile), 16) + up(kc * (nb + kGemmMaxTile), 16);
}

// Floats of packing scratch for `slots` slots (and the alignment slack).
inline int64_t gemmPackFloats(int64_t M, int64_t K, int64_t N, int64_t slots = 1, int64_t maxBatch = INT64_MAX) {
  return slots * gemmSlotFloats(M, K, N, maxBatch) + 32;
}

// Convolutions run their samples in kConvChunks fixed chunks (split across threads), each with
// its own scratch: the column matrix, the GEMM's panels and, for the filter gradient, the chunk's
// partial sum (added up in chunk order afterwards, so results do not depend on the thread count).
constexpr int64_t kConvChunks = 8;

inline int64_t convChunkFloats(int64_t colFloats, int64_t M, int64_t K, int64_t N, int64_t partialFloats) {
  auto up = [](int64_t v) { return (v + 15) / 16 * 16; };
  return up(colFloats) + gemmPackFloats(M, K, N) + up(partialFloats);
}

}  // namespace mtlc::codegen
