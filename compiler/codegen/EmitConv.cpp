// 2-D convolution, NCHW, stride and zero padding (PyTorch's conv2d without bias: BiasAdd is its
// own node), and its two gradients, lowered to matrix multiplies one sample at a time:
//
//   col = im2col(x_s)                       [C·KH·KW, OH·OW]   (row r = (c, kh, kw))
//   forward        y_s  = W · col           W viewed as [O, C·KH·KW]
//   filter grad    dW  += dy_s · colᵀ       summed over the batch
//   data grad      dcol = Wᵀ · dy_s,  dx_s = col2im(dcol)   (overlapping taps add up)
//
// so the multiply-adds run in the packed GEMM (EmitGemm.cpp). The node's scratch
// (convScratchFloats) holds the column matrix (none for a 1×1, stride 1, unpadded convolution,
// which uses the sample itself), then the GEMM's packing panels. A forward with few taps at
// stride 1 (a first layer: K = C·KH·KW as small as 9) runs EmitConvDirect.cpp's kernel instead.
//
// A stride-1 data gradient with a square kernel and padding <= KH − 1 (every 3×3 "same" layer)
// is itself a forward convolution instead: dx = conv(dy, W') with the taps flipped and the
// channels swapped, W'[c, o, kh, kw] = W[o, c, KH−1−kh, KW−1−kw], padding KH−1−pad. Its GEMM is
// [C, O·KH·KW]·[O·KH·KW, H·W], the forward's shape, where Wᵀ·dy is a product only O deep whose
// [C·KH·KW, OH·OW] result col2im then scatters back (a read-modify-write per tap).
#include "Kernel.h"
#include "LoopBuilder.h"
#include "GemmBlocking.h"

#include <algorithm>
#include <optional>
#include <stdexcept>

namespace mtlc::codegen {

namespace {

struct ConvShape {
  int64_t C, H, W;    // input channels and extent
  int64_t O, OH, OW;  // output channels and extent
  int64_t KH, KW, stride, pad;
  int64_t taps() const { return C * KH * KW; }  // rows of the column matrix
  int64_t P() const { return OH * OW; }         // its columns
  bool pointwise() const { return KH == 1 && KW == 1 && stride == 1 && pad == 0; }
};

ConvShape shapeOf(const ir::Type &x, const ir::Type &w, const ir::Type &y, const Kernel &k) {
  return {x.dims[0], x.dims[1], x.dims[2], y.dims[0], y.dims[1], y.dims[2],
          w.dims[2], w.dims[3], k.attr(0), k.attr(1)};
}

// The output positions o in [0, out) whose tap at kernel offset `tap` reads inside the input,
// 0 <= o·stride − pad + tap < in, as a run-time range [lo, hi) with lo <= hi.
std::pair<llvm::Value *, llvm::Value *> validOutputs(Kernel &k, llvm::Value *tap, int64_t in,
                                                     int64_t out, int64_t stride, int64_t pad) {
  llvm::IRBuilder<> &b = k.b;
  // lo = ceil((pad − tap) / stride), at least 0 (truncating division is fine: clamped when negative)
  llvm::Value *lo = k.smax(k.c(0), b.CreateSDiv(k.sub(k.c(pad + stride - 1), tap), k.c(stride)));
  lo = k.smin(lo, k.c(out));
  // hi = floor((in − 1 + pad − tap) / stride) + 1, at most out; empty when the numerator is < 0
  llvm::Value *num = k.sub(k.c(in - 1 + pad), tap);
  llvm::Value *hi = k.smin(k.c(out), k.add(b.CreateSDiv(num, k.c(stride)), 1));
  hi = b.CreateSelect(b.CreateICmpSLT(num, k.c(0)), k.c(0), hi);
  return {lo, k.smax(lo, hi)};
}

// Calls body(r, c, kh, kw, lo, hi) for every row r = (c, kh, kw) of the column matrix, with the
// valid output-column range [lo, hi) of the tap's kw.
template <typename Body>
void forTapRows(Kernel &k, const ConvShape &s, Body body) {
  forLoop(k.b, k.c(s.C), [&](llvm::Value *c) {
    forLoop(k.b, k.c(s.KH), [&](llvm::Value *kh) {
      forLoop(k.b, k.c(s.KW), [&](llvm::Value *kw) {
        auto [lo, hi] = validOutputs(k, kw, s.W, s.OW, s.stride, s.pad);
        llvm::Value *r = k.add(k.mul(k.add(k.mul(c, s.KH), kh), s.KW), kw);
        body(r, c, kh, kw, lo, hi);
      }, "kw");
    }, "kh");
  }, "c");
}

// Input row ih read by output row oh at tap kh, and whether it lies inside the image.
std::pair<llvm::Value *, llvm::Value *> inputRow(Kernel &k, const ConvShape &s, llvm::Value *oh,
                                                 llvm::Value *kh) {
  llvm::Value *ih = k.add(k.mul(oh, s.stride), k.add(kh, k.c(-s.pad)));
  return {ih, k.b.CreateICmpULT(ih, k.c(s.H))};  // unsigned: negative rows are outside too
}

// The taps of one output row at one kernel column read input columns iw = ow·stride − pad + kw,
// consecutive for stride 1, every other one for stride 2 (evenLanes): body(ow0, inRange, inRow)
// per vector of outputs ow0 + lane, inRange the lanes in [lo, hi) (the taps inside the image),
// inRow those < OW.
template <typename Body>
void forRowVectors(Kernel &k, const ConvShape &s, llvm::Value *lo, llvm::Value *hi, Body body) {
  const int VL = k.lanes();
  forLoop(k.b, k.c((s.OW + VL - 1) / VL), [&](llvm::Value *v) {
    llvm::Value *ow0 = k.mul(v, VL);
    llvm::Value *inRange = k.b.CreateAnd(k.laneMask(VL, ow0, hi), k.b.CreateNot(k.laneMask(VL, ow0, lo)));
    body(ow0, inRange, k.laneMask(VL, ow0, k.c(s.OW)));
  }, "ov");
}

// Lane l = x[from + 2·l] where `mask` has lane l on, else 0 (a stride-2 row of taps): the two
// vectors of consecutive inputs, each loaded where it holds a wanted (even) lane, then their even
// lanes.
llvm::Value *evenLanes(Kernel &k, llvm::Value *x, llvm::Value *from, llvm::Value *mask) {
  const int VL = k.lanes();
  llvm::Value *noLanes = llvm::Constant::getNullValue(mask->getType());
  llvm::SmallVector<llvm::Value *, 2> halves;
  for (int h = 0; h < 2; ++h) {
    llvm::SmallVector<int, 16> spread(VL);  // input lane j of this half wants output lane (h·VL + j) / 2
    for (int j = 0; j < VL; ++j) spread[j] = j % 2 == 0 ? (h * VL + j) / 2 : VL;  // VL: off
    halves.push_back(k.maskedLoad(VL, x, k.add(from, h * VL), k.b.CreateShuffleVector(mask, noLanes, spread)));
  }
  llvm::SmallVector<int, 16> even(VL);
  for (int l = 0; l < VL; ++l) even[l] = 2 * l;
  return k.b.CreateShuffleVector(halves[0], halves[1], even);
}

// col[r, oh·OW + ow] = x[c, oh·st − pad + kh, ow·st − pad + kw], or 0 in the padding.
void im2col(Kernel &k, const ConvShape &s, llvm::Value *x, llvm::Value *col) {
  forTapRows(k, s, [&](llvm::Value *r, llvm::Value *c, llvm::Value *kh, llvm::Value *kw,
                       llvm::Value *lo, llvm::Value *hi) {
    llvm::Value *xPlane = k.at(x, k.mul(c, s.H * s.W));
    llvm::Value *iwShift = k.add(kw, k.c(-s.pad));
    forLoop(k.b, k.c(s.OH), [&](llvm::Value *oh) {
      auto [ih, rowInside] = inputRow(k, s, oh, kh);
      llvm::Value *seg = k.at(col, k.add(k.mul(r, s.P()), k.mul(oh, s.OW)));
      // A row outside the image is all padding: an empty copy range, zeros everywhere.
      llvm::Value *copyHi = k.b.CreateSelect(rowInside, hi, lo);
      if (s.stride <= 2) {  // whole vectors: masked-off lanes load as 0, the padding
        llvm::Value *rowAt = k.add(k.mul(ih, s.W), iwShift);
        forRowVectors(k, s, lo, copyHi, [&](llvm::Value *ow0, llvm::Value *inRange, llvm::Value *inRow) {
          llvm::Value *from = k.add(rowAt, k.mul(ow0, s.stride));
          llvm::Value *v = s.stride == 1 ? k.maskedLoad(k.lanes(), xPlane, from, inRange)
                                         : evenLanes(k, xPlane, from, inRange);
          k.maskedStore(v, seg, ow0, inRow);
        });
        return;
      }
      forLoop(k.b, lo, [&](llvm::Value *ow) { k.store(k.f32(0), seg, ow); }, "pad");
      forLoop(k.b, lo, copyHi, [&](llvm::Value *ow) {
        llvm::Value *iw = k.add(k.mul(ow, s.stride), iwShift);
        k.store(k.load(xPlane, k.add(k.mul(ih, s.W), iw)), seg, ow);
      }, "ow");
      forLoop(k.b, copyHi, k.c(s.OW), [&](llvm::Value *ow) { k.store(k.f32(0), seg, ow); }, "pad");
    }, "oh");
  });
}

// dx_s = 0, then dx[c, ih, iw] += dcol[r, oh·OW + ow] for every tap that reads inside the image.
void col2im(Kernel &k, const ConvShape &s, llvm::Value *dcol, llvm::Value *dx) {
  k.zero(dx, k.c(s.C * s.H * s.W));
  forTapRows(k, s, [&](llvm::Value *r, llvm::Value *c, llvm::Value *kh, llvm::Value *kw,
                       llvm::Value *lo, llvm::Value *hi) {
    llvm::Value *dxPlane = k.at(dx, k.mul(c, s.H * s.W));
    llvm::Value *iwShift = k.add(kw, k.c(-s.pad));
    forLoop(k.b, k.c(s.OH), [&](llvm::Value *oh) {
      auto [ih, rowInside] = inputRow(k, s, oh, kh);
      llvm::Value *seg = k.at(dcol, k.add(k.mul(r, s.P()), k.mul(oh, s.OW)));
      llvm::Value *addHi = k.b.CreateSelect(rowInside, hi, lo);
      forLoop(k.b, lo, addHi, [&](llvm::Value *ow) {
        llvm::Value *xi = k.add(k.mul(ih, s.W), k.add(k.mul(ow, s.stride), iwShift));
        k.store(k.b.CreateFAdd(k.load(dxPlane, xi), k.load(seg, ow)), dxPlane, xi);
      }, "ow");
    }, "oh");
  });
}

// Sample s's column matrix: built in scratch, or the sample itself for a pointwise convolution.
llvm::Value *columns(Kernel &k, const ConvShape &s, llvm::Value *xSample) {
  if (s.pointwise()) return xSample;
  im2col(k, s, xSample, k.scratch);
  return k.scratch;
}

// The GEMM's packing panels: after the column matrix (16-float aligned, as scratchFloats counts).
llvm::Value *packing(Kernel &k, const ConvShape &s) {
  int64_t col = s.pointwise() ? 0 : (s.taps() * s.P() + 15) / 16 * 16;
  return k.at(k.scratch, k.c(col));
}

// A GEMM over constant extents with its packing scratch.
Gemm constGemm(Kernel &k, const ConvShape &s, llvm::Value *A, llvm::Value *B, llvm::Value *C,
               int64_t M, int64_t K, int64_t N) {
  Gemm g;
  g.A = A, g.B = B, g.C = C;
  g.M = k.c(M), g.K = k.c(K), g.N = k.c(N);
  g.staticM = M, g.staticK = K, g.staticN = N;
  g.pack = packing(k, s);
  g.convolution = true;
  return g;
}

// Samples in kConvChunks fixed chunks, split across threads: chunk c gets samples
// [c·n/C, (c+1)·n/C) and scratch area c (column matrix, GEMM panels, [partial sum]) of
// `chunkFloats`. perSample(h, sample) runs with h.scratch at the chunk's area, serially inside.
void forSampleChunks(Kernel &k, int64_t chunkFloats, int64_t sampleWork,
                     const std::function<void(Kernel &h, llvm::Value *chunk)> &chunkStart,
                     const std::function<void(Kernel &h, llvm::Value *sample)> &perSample) {
  const int64_t C = std::min<int64_t>(kConvChunks, std::max<int64_t>(k.maxBatch, 1));
  llvm::Value *big = k.b.CreateICmpSGE(k.mul(k.n, sampleWork), k.c(int64_t(1) << 17));
  parallelFor(k, k.c(C), big, [&](Kernel &h, llvm::Value *c0, llvm::Value *c1) {
    forLoop(h.b, c0, c1, [&](llvm::Value *c) {
      Kernel inner = h;
      inner.args = nullptr;  // the chunk's GEMMs stay on this thread
      inner.scratch = h.at(h.scratch, h.mul(c, chunkFloats));
      if (chunkStart) chunkStart(inner, c);
      llvm::Value *first = h.b.CreateUDiv(h.mul(c, h.n), h.c(C));
      llvm::Value *last = h.b.CreateUDiv(h.mul(h.add(c, 1), h.n), h.c(C));
      forLoop(h.b, first, last, [&](llvm::Value *sample) { perSample(inner, sample); }, "s");
    }, "chunk");
  });
}

int64_t colFloats(const ConvShape &s) { return s.pointwise() ? 0 : s.taps() * s.P(); }

// The forward convolution from dy to dx that a stride-1 data gradient is (see the top), if it is one.
std::optional<ConvShape> dataGradAsConv(const ConvShape &s) {
  if (s.stride != 1 || s.KH != s.KW || s.pad > s.KH - 1 || s.pointwise()) return std::nullopt;
  return ConvShape{s.O, s.OH, s.OW, s.C, s.H, s.W, s.KH, s.KW, 1, s.KH - 1 - s.pad};
}

// A chunk of the data gradient: the column matrix and panels of its GEMM, then (as a forward
// convolution) the flipped filters.
int64_t dataGradChunkFloats(const ConvShape &s) {
  if (auto f = dataGradAsConv(s)) return convChunkFloats(colFloats(*f), f->O, f->taps(), f->P(), s.O * s.taps());
  return convChunkFloats(colFloats(s), s.taps(), s.O, s.P(), 0);
}

}  // namespace

namespace {

int64_t rounded16(int64_t floats) { return (floats + 15) / 16 * 16; }

// A filter gradient's per-sample prologue and siblings (passes/Fusion.h): each chunk's area ends
// with the sample's dy the prologue computes, [O, OH·OW]; after the chunks, the siblings' per-sample
// channel sums [maxBatch, O].
int64_t prologueChunkFloats(const ConvShape &s, bool prologue) { return prologue ? rounded16(s.O * s.P()) : 0; }
int64_t channelSumFloats(const ConvShape &s, bool siblings, int64_t maxBatch) {
  return siblings ? rounded16(std::max<int64_t>(maxBatch, 1) * s.O) : 0;
}

}  // namespace

// kConvChunks chunks, each with one sample's column matrix [C·KH·KW, OH·OW] (none for a
// pointwise convolution, whose input already is that matrix), the GEMM's panels and, for the
// filter gradient, the chunk's partial sum (and a fused prologue's sample). Not batch dependent
// but for a fused filter gradient's per-sample channel sums: a chunk holds one sample at a time.
int64_t convScratchFloats(const ir::Node &n, const passes::FusionGroup *group, int64_t maxBatch) {
  const std::vector<int64_t> *x = nullptr, *w = nullptr, *y = nullptr;
  switch (n.op) {
    case ir::OpKind::Conv2d: x = &n.operands[0]->type.dims, w = &n.operands[1]->type.dims, y = &n.type.dims; break;
    case ir::OpKind::Conv2dBwdData:
    case ir::OpKind::ConvTranspose2d: x = &n.type.dims, w = &n.operands[1]->type.dims, y = &n.operands[0]->type.dims; break;
    case ir::OpKind::Conv2dBwdFilter: x = &n.operands[0]->type.dims, w = &n.type.dims, y = &n.operands[1]->type.dims; break;
    default: throw std::logic_error("convScratchFloats: not a convolution");
  }
  ConvShape s{(*x)[0], (*x)[1], (*x)[2], (*y)[0], (*y)[1], (*y)[2], (*w)[2], (*w)[3], n.ints.at(0), n.ints.at(1)};
  // The direct form's, or the GEMM's when bf16 products take this path after all (convDirect).
  int64_t direct = convDirectShape(n) ? convDirectScratchFloats(n) : 0;
  switch (n.op) {
    case ir::OpKind::Conv2d: return std::max(direct, kConvChunks * convChunkFloats(colFloats(s), s.O, s.taps(), s.P(), 0));
    case ir::OpKind::Conv2dBwdFilter: {
      const bool prologue = group && !group->prologue.empty();
      const int64_t chunk = convChunkFloats(colFloats(s), s.O, s.P(), s.taps(), s.O * s.taps());
      return kConvChunks * (chunk + prologueChunkFloats(s, prologue)) +
             channelSumFloats(s, group && !group->siblings.empty(), maxBatch);
    }
    default: return kConvChunks * dataGradChunkFloats(s);
  }
}

// A fused chain in the GEMM's epilogue when the GEMM writes sample n's [channels, positions]
// result directly: element (row, col) is flat index n·rows·P + row·P + col, channel `row`.
void chainEpilogue(Kernel &k, Gemm &g, llvm::Value *n, int64_t rows, int64_t P) {
  if (!k.chain) return;
  llvm::Value *sampleBase = k.mul(n, rows * P);
  g.epilogue = [=](Kernel &k, llvm::Value *v, const TileSite &site) {
    ElementSite e{k.add(sampleBase, k.add(k.mul(site.row, P), site.col)), site.mask};
    e.channel = site.row;
    return k.chain(k, v, e);
  };
}

// A fused chain over finished values in place: out[flat0 + e] for e < count.
void chainInPlace(Kernel &k, llvm::Value *out, llvm::Value *flat0, int64_t count) {
  if (!k.chain) return;
  forLoop(k.b, k.c(count), [&](llvm::Value *e) {
    llvm::Value *v = k.load(out, e);
    k.store(k.chain(k, v, ElementSite{k.add(flat0, e)}), out, e);
  }, "e");
}

namespace {

// Sample n of a forward convolution of shape s: y_s = W · im2col(x_s), the fused chain in the
// GEMM's store (the forward itself, and a stride-1 data gradient as one).
void convolveSample(Kernel &h, const ConvShape &s, llvm::Value *w, llvm::Value *x, llvm::Value *y, llvm::Value *n) {
  llvm::Value *xs = h.at(x, h.mul(n, s.C * s.H * s.W));
  llvm::Value *ys = h.at(y, h.mul(n, s.O * s.P()));
  Gemm g = constGemm(h, s, w, columns(h, s, xs), ys, s.O, s.taps(), s.P());
  chainEpilogue(h, g, n, s.O, s.P());
  emitGemm(h, g);
}

}  // namespace

void emitConv2d(Kernel &k) {
  if (convDirect(k)) return emitConv2dDirect(k);
  ConvShape s = shapeOf(k.inType(0), k.inType(1), k.type(), k);
  int64_t chunk = convChunkFloats(colFloats(s), s.O, s.taps(), s.P(), 0);
  forSampleChunks(k, chunk, s.O * s.taps() * s.P(), nullptr,
                  [&](Kernel &h, llvm::Value *n) { convolveSample(h, s, h.in[1], h.in[0], h.out, n); });
}

// sums[o] = Σ_p dy_s[o, p], each channel's plane summed as bias_grad sums it (EmitElementwise.cpp).
void channelSums(Kernel &h, const ConvShape &s, llvm::Value *dys, llvm::Value *sums) {
  forLoop(h.b, h.c(s.O), [&](llvm::Value *o) {
    llvm::Value *row = h.at(dys, h.mul(o, s.P()));
    llvm::Value *sum = reduceLoop(h.b, h.c(0), h.c(s.P()), h.f32(0), [&](llvm::Value *r, llvm::Value *acc) {
      return h.sumAdd(acc, h.load(row, r));
    }, "r");
    h.store(sum, sums, o);
  }, "o");
}

// dW = Σ_chunks (Σ_{samples of the chunk} dy_s · col_sᵀ): each chunk sums into its partial, the
// partials are added in chunk order. Under precision bf16, a filter of fewer taps than a vector
// has lanes (a first layer's 3×3 filters over one channel: 9 taps) keeps fp32 products: each
// sample's product is then too small for packing both its operands as bf16 to pay, where fp32
// reads them in place (bench/RESULTS.md). With bf16 products and fewer taps than output channels
// the partial is dWᵀ = col_s · dy_sᵀ: the bf16 GEMM's vectors run along C's columns.
//
// With a fused prologue (passes/Fusion.h) each sample's dy is computed into the chunk's area
// first, and its channel sums, the siblings' (bias_grad's) terms, are kept per sample: the
// siblings add them in sample order as bias_grad alone does, so their bits do not change.
void emitConv2dBwdFilter(Kernel &k) {
  ConvShape s = shapeOf(k.inType(0), k.type(), k.inType(1), k);
  const int64_t OT = s.O * s.taps();
  const int64_t C = std::min<int64_t>(kConvChunks, std::max<int64_t>(k.maxBatch, 1));
  const bool bf16 = k.opts && k.opts->bf16 && k.target().bf16 && s.taps() >= k.target().lanes;
  const bool transposed = bf16 && s.taps() < s.O;
  // The GEMM's panels take the same floats either way round (gemmSlotFloats adds M's and N's).
  const int64_t panels = convChunkFloats(colFloats(s), s.O, s.P(), s.taps(), OT);
  const int64_t chunk = panels + prologueChunkFloats(s, bool(k.prologue));
  const int64_t partialAt = panels - rounded16(OT), dyAt = panels, sumsAt = kConvChunks * chunk;
  forSampleChunks(k, chunk, s.O * s.taps() * s.P(),
      [&](Kernel &h, llvm::Value *) { h.zero(h.at(h.scratch, h.c(partialAt)), h.c(OT)); },
      [&](Kernel &h, llvm::Value *n) {
        llvm::Value *xs = h.at(h.in[0], h.mul(n, s.C * s.H * s.W));
        llvm::Value *dys = k.prologue ? h.at(h.scratch, h.c(dyAt)) : h.at(h.in[1], h.mul(n, s.O * s.P()));
        if (k.prologue) k.prologue(h, n, dys);
        if (!k.siblingOut.empty()) channelSums(h, s, dys, h.at(k.scratch, h.add(h.c(sumsAt), h.mul(n, s.O))));
        llvm::Value *partial = h.at(h.scratch, h.c(partialAt));
        Gemm g = transposed ? constGemm(h, s, columns(h, s, xs), dys, partial, s.taps(), s.P(), s.O)
                            : constGemm(h, s, dys, columns(h, s, xs), partial, s.O, s.P(), s.taps());
        g.transB = true;
        g.accumulate = true;
        g.fp32 = !bf16;
        emitGemm(h, g);
      });
  // In chunk order, one loop (not one per chunk: each would be vectorised on its own).
  k.zero(k.out, k.c(OT));
  forLoop(k.b, k.c(C), [&](llvm::Value *c) {
    llvm::Value *partial = k.at(k.scratch, k.add(k.mul(c, chunk), partialAt));
    if (transposed) {
      forLoop(k.b, k.c(s.O), [&](llvm::Value *o) {
        forLoop(k.b, k.c(s.taps()), [&](llvm::Value *t) {
          llvm::Value *e = k.add(k.mul(o, s.taps()), t);
          k.store(k.b.CreateFAdd(k.load(k.out, e), k.load(partial, k.add(k.mul(t, s.O), o))), k.out, e);
        }, "t");
      }, "o");
      return;
    }
    forLoop(k.b, k.c(OT), [&](llvm::Value *e) {
      k.store(k.b.CreateFAdd(k.load(k.out, e), k.load(partial, e)), k.out, e);
    }, "e");
  }, "chunk");
  chainInPlace(k, k.out, k.c(0), OT);  // the sum over the batch is final only now
  for (llvm::Value *out : k.siblingOut) {
    k.zero(out, k.c(s.O));
    forLoop(k.b, k.n, [&](llvm::Value *n) {
      llvm::Value *sums = k.at(k.scratch, k.add(k.c(sumsAt), k.mul(n, s.O)));
      forLoop(k.b, k.c(s.O), [&](llvm::Value *o) {
        k.store(k.b.CreateFAdd(k.load(out, o), k.load(sums, o)), out, o);
      }, "o");
    }, "s");
  }
}

// W'[c, o, kh, kw] = W[o, c, KH−1−kh, KW−1−kw] (the forward convolution's filters of a data
// gradient, see the top) at `flipped`.
void flipFilters(Kernel &k, const ConvShape &s, llvm::Value *w, llvm::Value *flipped) {
  const int64_t KK = s.KH * s.KW;
  forLoop(k.b, k.c(s.O), [&](llvm::Value *o) {
    forLoop(k.b, k.c(s.C), [&](llvm::Value *c) {
      llvm::Value *from = k.mul(k.add(k.mul(o, s.C), c), KK);
      llvm::Value *to = k.mul(k.add(k.mul(c, s.O), o), KK);
      forLoop(k.b, k.c(KK), [&](llvm::Value *t) {
        k.store(k.load(w, k.add(from, k.sub(k.c(KK - 1), t))), flipped, k.add(to, t));
      }, "t");
    }, "c");
  }, "o");
}

void emitConv2dBwdData(Kernel &k) {
  ConvShape s = shapeOf(k.type(), k.inType(1), k.inType(0), k);
  const int64_t chunk = dataGradChunkFloats(s);
  if (auto f = dataGradAsConv(s)) {
    // Each chunk flips the filters into its own area: one area per chunk is how the plan's
    // scratch is laid out, and the copy is a small fraction of the chunk's products.
    const int64_t flippedAt = chunk - (s.O * s.taps() + 15) / 16 * 16;
    forSampleChunks(k, chunk, s.O * s.taps() * s.P(),
        [&](Kernel &h, llvm::Value *) { flipFilters(h, s, h.in[1], h.at(h.scratch, h.c(flippedAt))); },
        [&](Kernel &h, llvm::Value *n) {
          convolveSample(h, *f, h.at(h.scratch, h.c(flippedAt)), h.in[0], h.out, n);
        });
    return;
  }
  forSampleChunks(k, chunk, s.O * s.taps() * s.P(), nullptr, [&](Kernel &h, llvm::Value *n) {
    llvm::Value *dys = h.at(h.in[0], h.mul(n, s.O * s.P()));
    llvm::Value *dxs = h.at(h.out, h.mul(n, s.C * s.H * s.W));
    Gemm g = constGemm(h, s, h.in[1], dys, s.pointwise() ? dxs : h.scratch, s.taps(), s.O, s.P());
    g.transA = true;
    if (s.pointwise()) chainEpilogue(h, g, n, s.C, s.P());
    emitGemm(h, g);
    if (!s.pointwise()) {
      col2im(h, s, h.scratch, dxs);
      chainInPlace(h, dxs, h.mul(n, s.C * s.H * s.W), s.C * s.H * s.W);  // taps have all landed
    }
  });
}

}  // namespace mtlc::codegen
