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

// y[c, r] = x[r, c] for x [R, C], in 16 × 16 tiles so that both sides stay in cache lines.
void emitTranspose(Kernel &k) {
  const int64_t R = k.inType(0).dims.at(0), C = k.inType(0).dims.at(1), T = 16;
  forLoop(k.b, k.c((R + T - 1) / T), [&](llvm::Value *rt) {
    forLoop(k.b, k.c((C + T - 1) / T), [&](llvm::Value *ct) {
      llvm::Value *r0 = k.mul(rt, T), *c0 = k.mul(ct, T);
      llvm::Value *r1 = k.smin(k.add(r0, T), k.c(R)), *c1 = k.smin(k.add(c0, T), k.c(C));
      forLoop(k.b, r0, r1, [&](llvm::Value *r) {
        forLoop(k.b, c0, c1, [&](llvm::Value *c) {
          k.store(k.load(k.in[0], k.add(k.mul(r, C), c)), k.out, k.add(k.mul(c, R), r));
        }, "c");
      }, "r");
    }, "ct");
  }, "rt");
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
