// Data movement for tabular inputs: embedding lookups (and their scatter-add gradient), per-sample
// concatenation, slicing and slicing's gradient. Rows are copied with llvm.memcpy of a
// compile-time size, which LLVM expands inline for short rows.
//
// Embedding indices arrive as floats holding integers. The runtime validates them against the
// vocabulary before training, but the kernels still clamp every index to [0, V−1] (NaN reads row
// 0) so that a bad index can never read or write outside the table; the backward pass clamps the
// same way, so its gradient is the exact gradient of the clamped lookup. A fractional index is
// truncated toward zero.
#include "EmitMtlOps.h"
#include "LoopBuilder.h"

namespace mtlc::codegen {

namespace {

// The table row a float index selects, clamped to [0, V−1].
llvm::Value *tableRow(Kernel &k, llvm::Value *index, int64_t V) {
  llvm::IRBuilder<> &b = k.b;
  // maxnum returns the non-NaN operand, so NaN becomes 0; ±inf land on the ends. After the float
  // clamp the conversion is always defined (no poison).
  llvm::Value *v = k.maxnum(index, k.f32(0));
  v = b.CreateBinaryIntrinsic(llvm::Intrinsic::minnum, v, k.f32(double(V - 1)));
  llvm::Value *i = b.CreateFPToSI(v, b.getInt64Ty());
  // float(V−1) rounds up for V > 2^24: clamp again where it is exact.
  return k.smin(i, k.c(V - 1));
}

// dst[0, floats) = src[0, floats), floats a compile-time count.
void copyFloats(Kernel &k, llvm::Value *dst, llvm::Value *src, int64_t floats) {
  k.b.CreateMemCpy(dst, llvm::MaybeAlign(4), src, llvm::MaybeAlign(4),
                   k.c(floats * (int64_t)sizeof(float)));
}

}  // namespace

// out[s, i·D + d] = table[row(idx[s,i]), d]
void emitEmbedding(Kernel &k) {
  const ir::Type &tt = k.inType(0);
  int64_t V = tt.dims.at(0), D = tt.dims.at(1), K = k.inType(1).elements();
  llvm::Value *table = k.in[0], *idx = k.in[1];
  forLoop(k.b, k.samples(k.type()), [&](llvm::Value *s) {
    forLoop(k.b, k.c(K), [&](llvm::Value *i) {
      llvm::Value *slot = k.add(k.mul(s, K), i);
      llvm::Value *r = tableRow(k, k.load(idx, slot), V);
      copyFloats(k, k.at(k.out, k.mul(slot, D)), k.at(table, k.mul(r, D)), D);
    }, "i");
  }, "s");
}

// dtable = 0, then dtable[row(idx[s,i]), d] += dy[s, i·D + d] for every sample and slot.
void emitEmbeddingBwd(Kernel &k) {
  const ir::Type &tt = k.type();
  int64_t V = tt.dims.at(0), D = tt.dims.at(1), K = k.inType(0).elements();
  llvm::Value *idx = k.in[0], *dy = k.in[1];
  k.zero(k.out, k.c(V * D));
  forLoop(k.b, k.samples(k.inType(0)), [&](llvm::Value *s) {
    forLoop(k.b, k.c(K), [&](llvm::Value *i) {
      llvm::Value *slot = k.add(k.mul(s, K), i);
      llvm::Value *r = tableRow(k, k.load(idx, slot), V);
      llvm::Value *dRow = k.at(k.out, k.mul(r, D)), *gRow = k.at(dy, k.mul(slot, D));
      forLoop(k.b, k.c(D), [&](llvm::Value *d) {
        k.store(k.b.CreateFAdd(k.load(dRow, d), k.load(gRow, d)), dRow, d);
      }, "d");
    }, "i");
  }, "s");
}

// out[s] = x_0[s] ‖ x_1[s] ‖ ...
void emitConcat(Kernel &k) {
  int64_t W = k.type().elements();
  forLoop(k.b, k.samples(k.type()), [&](llvm::Value *s) {
    llvm::Value *outRow = k.at(k.out, k.mul(s, W));
    int64_t offset = 0;
    for (size_t p = 0; p < k.in.size(); ++p) {
      int64_t d = k.inType(p).elements();
      copyFloats(k, k.at(outRow, k.c(offset)), k.at(k.in[p], k.mul(s, d)), d);
      offset += d;
    }
  }, "s");
}

// out[s, j] = x[s, offset + j], j < width; ints = {offset, width}
void emitSlice(Kernel &k) {
  int64_t d = k.inType(0).elements(), offset = k.attr(0), width = k.attr(1);
  forLoop(k.b, k.samples(k.type()), [&](llvm::Value *s) {
    copyFloats(k, k.at(k.out, k.mul(s, width)), k.at(k.in[0], k.add(k.mul(s, d), offset)), width);
  }, "s");
}

// y[c, r] = x[r, c] for x [R, C]. Whole 16 × 16 tiles go through registers: 16 row loads, four
// stages of block swaps (Eklundh: at stage h, rows i and i + h trade their h-wide off-diagonal
// blocks; after h = 8, 4, 2, 1 the tile is transposed), 16 row stores. The edges' elements
// (rows from R − R mod 16, columns from C − C mod 16) are moved one by one.
void emitTranspose(Kernel &k) {
  const int64_t R = k.inType(0).dims.at(0), C = k.inType(0).dims.at(1), T = 16;
  const int64_t Rf = R / T * T, Cf = C / T * T;
  llvm::IRBuilder<> &b = k.b;
  auto move = [&](llvm::Value *r, llvm::Value *c) {
    k.store(k.load(k.in[0], k.add(k.mul(r, C), c)), k.out, k.add(k.mul(c, R), r));
  };
  forLoop(b, k.c(Rf / T), [&](llvm::Value *rt) {
    forLoop(b, k.c(Cf / T), [&](llvm::Value *ct) {
      llvm::Value *r0 = k.mul(rt, T), *c0 = k.mul(ct, T);
      std::vector<llvm::Value *> row(T);
      for (int64_t i = 0; i < T; ++i) row[i] = k.vload(T, k.in[0], k.add(k.mul(k.add(r0, i), C), c0));
      for (int64_t h = T / 2; h >= 1; h /= 2) {
        llvm::SmallVector<int, 16> lo, hi;  // lanes of shuffle(a, b): j < 16 from a, j ≥ 16 from b
        for (int64_t j = 0; j < T; ++j) {
          lo.push_back(int((j & h) == 0 ? j : T + j - h));
          hi.push_back(int((j & h) == 0 ? j + h : T + j));
        }
        for (int64_t i = 0; i < T; ++i) {
          if (i & h) continue;
          llvm::Value *a = row[i], *bb = row[i + h];
          row[i] = b.CreateShuffleVector(a, bb, lo);
          row[i + h] = b.CreateShuffleVector(a, bb, hi);
        }
      }
      for (int64_t i = 0; i < T; ++i) k.vstore(row[i], k.out, k.add(k.mul(k.add(c0, i), R), r0));
    }, "ct");
  }, "rt");
  forLoop(b, k.c(Rf), [&](llvm::Value *r) { forLoop(b, k.c(Cf), k.c(C), [&](llvm::Value *c) { move(r, c); }, "c"); }, "r");
  forLoop(b, k.c(Rf), k.c(R), [&](llvm::Value *r) { forLoop(b, k.c(C), [&](llvm::Value *c) { move(r, c); }, "c"); }, "r");
}

// dx[s] = 0 except dx[s, offset + j] = dy[s, j], j < width: slice's gradient; ints = {offset, width}
void emitSliceBwd(Kernel &k) {
  int64_t d = k.type().elements(), offset = k.attr(0), width = k.attr(1);
  forLoop(k.b, k.samples(k.type()), [&](llvm::Value *s) {
    llvm::Value *row = k.at(k.out, k.mul(s, d));
    if (offset > 0) k.zero(row, k.c(offset));
    copyFloats(k, k.at(row, k.c(offset)), k.at(k.in[0], k.mul(s, width)), width);
    if (offset + width < d) k.zero(k.at(row, k.c(offset + width)), k.c(d - offset - width));
  }, "s");
}

}  // namespace mtlc::codegen
