// A direct conv2d for filters with few taps (C·KH·KW <= kDirectConvMaxTaps), stride 1: a first
// layer over one or three image channels. Lowered to im2col + GEMM (EmitConv.cpp) such a layer's
// forward is a product with K = C·KH·KW, as small as 9: the GEMM's packing and its per-tile loads
// and stores of C then outweigh the 9 multiply-adds per element. Here instead, for each output
// row and vector of VL consecutive outputs of it, the taps' input vectors are loaded once
// (unaligned: tap (c, kh, kw) of outputs ow0.. is x[c, oh + kh, ow0 + kw ...]) and every output
// channel is their weighted sum, stored once through the fused chain (bias, relu). Its gradients
// stay GEMMs: their K is the plane (OH·OW), long enough for the packed kernel.
//
// Padding is a zeroed copy of the sample (small: few channels). A row at least VL wide ends with
// a vector overlapping the one before it (plain accesses, no masks: see EmitPool.cpp); its
// outputs are stored twice with the same value. Rows narrower than VL use half or quarter vectors.
#include "Kernel.h"
#include "LoopBuilder.h"
#include "GemmBlocking.h"

#include <algorithm>
#include <functional>

namespace mtlc::codegen {

namespace {

using llvm::Value;

struct DirectConv {
  int64_t C, H, W, O, OH, OW, KH, KW, pad;
  int64_t taps() const { return C * KH * KW; }
  int64_t P() const { return OH * OW; }
  int64_t HP() const { return H + 2 * pad; }  // the padded sample's extent
  int64_t WP() const { return W + 2 * pad; }
  int64_t padFloats() const { return pad == 0 ? 0 : (C * HP() * WP() + 15) / 16 * 16; }
};

// x [C,H,W], w [O,C,KH,KW], y [O,OH,OW]; ints: stride, pad.
DirectConv shapeOf(const ir::Type &x, const ir::Type &w, const ir::Type &y, const std::vector<int64_t> &ints) {
  return {x.dims[0], x.dims[1], x.dims[2], y.dims[0], y.dims[1], y.dims[2], w.dims[2], w.dims[3], ints.at(1)};
}

// Vector width along an output row: the target's, halved while the row is narrower (never
// below 4 lanes, and OW >= 4 here: every row vector is whole).
int rowLanes(const Kernel &k, const DirectConv &s) {
  int VL = k.lanes();
  while (VL > 4 && VL > s.OW) VL /= 2;
  return VL;
}

DirectConv shapeOfNode(const ir::Node &n) {
  return shapeOf(n.operands[0]->type, n.operands[1]->type, n.type, n.ints);
}

// Samples in kConvChunks fixed chunks across threads, as the GEMM path runs them (EmitConv.cpp):
// chunk c holds samples [c·n/C, (c+1)·n/C); its scratch area is `floats` long.
void forChunks(Kernel &k, int64_t floats, int64_t sampleWork,
               const std::function<void(Kernel &h, Value *first, Value *last)> &body) {
  const int64_t C = std::min<int64_t>(kConvChunks, std::max<int64_t>(k.maxBatch, 1));
  Value *big = k.b.CreateICmpSGE(k.mul(k.n, sampleWork), k.c(int64_t(1) << 17));
  parallelFor(k, k.c(C), big, [&](Kernel &h, Value *c0, Value *c1) {
    forLoop(h.b, c0, c1, [&](Value *c) {
      Kernel inner = h;
      inner.scratch = h.scratch ? h.at(h.scratch, h.mul(c, floats)) : nullptr;
      Value *first = h.b.CreateUDiv(h.mul(c, h.n), h.c(C));
      Value *last = h.b.CreateUDiv(h.mul(h.add(c, 1), h.n), h.c(C));
      body(inner, first, last);
    }, "chunk");
  });
}

// Sample `n`'s input as the kernel reads it: [C, HP, WP], the sample itself when unpadded, else
// its copy into the zeroed border of `padded` (zeroed once per chunk by the caller).
Value *paddedSample(Kernel &k, const DirectConv &s, Value *x, Value *sample, Value *padded) {
  Value *xs = k.at(x, k.mul(sample, s.C * s.H * s.W));
  if (s.pad == 0) return xs;
  forLoop(k.b, k.c(s.C * s.H), [&](Value *row) {  // row = c·H + ih
    Value *c = k.b.CreateUDiv(row, k.c(s.H)), *ih = k.b.CreateURem(row, k.c(s.H));
    Value *dst = k.at(padded, k.add(k.mul(k.add(k.mul(c, s.HP()), ih), s.WP()), s.pad * s.WP() + s.pad));
    Value *src = k.at(xs, k.mul(row, s.W));
    forLoop(k.b, k.c(s.W), [&](Value *iw) { k.store(k.load(src, iw), dst, iw); }, "iw");
  }, "row");
  return padded;
}

// For every output row and vector along it: body(oh, ow0), ow0 the vector's first output.
template <typename Body>
void forRowVectors(Kernel &k, const DirectConv &s, int VL, Body body) {
  forLoop(k.b, k.c(s.OH), [&](Value *oh) {
    forLoop(k.b, k.c((s.OW + VL - 1) / VL), [&](Value *v) {
      body(oh, k.smin(k.mul(v, VL), k.c(s.OW - VL)));
    }, "ov");
  }, "oh");
}

// The input vectors of every tap (row-major over c, kh, kw) for outputs ow0.. of row oh.
llvm::SmallVector<Value *, 32> tapInputs(Kernel &k, const DirectConv &s, int VL, Value *xp, Value *oh, Value *ow0) {
  llvm::SmallVector<Value *, 32> in;
  for (int64_t c = 0; c < s.C; ++c)
    for (int64_t kh = 0; kh < s.KH; ++kh) {
      Value *row = k.add(k.mul(k.add(oh, c * s.HP() + kh), s.WP()), ow0);
      for (int64_t kw = 0; kw < s.KW; ++kw)
        in.push_back(k.vload(VL, xp, k.add(row, kw)));
    }
  return in;
}

}  // namespace

bool convDirectShape(const ir::Node &n) {
  if (n.op != ir::OpKind::Conv2d) return false;
  DirectConv s = shapeOfNode(n);
  return n.ints.at(0) == 1 && s.taps() <= kDirectConvMaxTaps && s.OW >= 4;
}

bool convDirect(const Kernel &k) {
  // bf16 products are the contract for every convolution (docs/language.md, precision).
  return convDirectShape(k.node) && !(k.opts && k.opts->bf16 && k.target().bf16);
}

int64_t convDirectScratchFloats(const ir::Node &n) { return kConvChunks * shapeOfNode(n).padFloats(); }

void emitConv2dDirect(Kernel &k) {
  DirectConv s = shapeOf(k.inType(0), k.inType(1), k.type(), k.node.ints);
  const int VL = rowLanes(k, s);
  const int64_t T = s.taps();
  forChunks(k, s.padFloats(), s.O * T * s.P(), [&](Kernel &h, Value *first, Value *last) {
    if (s.pad) h.zero(h.scratch, h.c(s.padFloats()));
    forLoop(h.b, first, last, [&](Value *sample) {
      Value *xp = paddedSample(h, s, h.in[0], sample, h.scratch);
      Value *ys = h.at(h.out, h.mul(sample, s.O * s.P()));
      forRowVectors(h, s, VL, [&](Value *oh, Value *ow0) {
        auto in = tapInputs(h, s, VL, xp, oh, ow0);
        Value *at0 = h.add(h.mul(oh, s.OW), ow0);
        forLoop(h.b, h.c(s.O), [&](Value *o) {
          Value *wo = h.at(h.in[1], h.mul(o, T));
          // One chain in tap order, as the GEMM's K loop adds them: the same rounding either way
          // (channels are independent, so their chains overlap in the core).
          Value *y = h.splat(VL, h.f32(0));
          for (int64_t t = 0; t < T; ++t) y = h.fma(h.splat(VL, h.load(wo, h.c(t))), in[t], y);
          Value *at = h.add(h.mul(o, s.P()), at0);
          if (h.chain) {
            ElementSite site{h.add(h.mul(sample, s.O * s.P()), at)};
            site.channel = o;
            y = h.chain(h, y, site);
          }
          h.vstore(y, ys, at);
        }, "o");
      });
    }, "s");
  });
}

}  // namespace mtlc::codegen
