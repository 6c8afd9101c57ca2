// 2-D convolution, NCHW, with stride and zero padding, and its two gradients. No bias (BiasAdd is
// a separate node). The kernel taps (kh, kw) are unrolled at compile time: for each tap the range of
// output rows and columns that read real (unpadded) input is a constant, so the inner loops are
// plain strided sweeps over one plane without padding checks; with stride 1 they vectorise.
#include "ConvGeometry.h"
#include "Kernel.h"
#include "LoopBuilder.h"

namespace mtlc::codegen {

namespace {

// Extents of one convolution, read from the node's operand and result types.
struct ConvShape {
  int64_t C, H, W;      // input channels and spatial extent
  int64_t O, OH, OW;    // output channels and spatial extent
  int64_t KH, KW;       // kernel
  int64_t stride, pad;
};

ConvShape shapeOf(const std::vector<int64_t> &x, const std::vector<int64_t> &w,
                  const std::vector<int64_t> &y, const Kernel &k) {
  return {x[0], x[1], x[2], y[0], y[1], y[2], w[2], w[3], k.attr(0), k.attr(1)};
}

// Calls body(oh, ow, ih, iw) over every output position whose tap (kh, kw) reads inside the input.
template <typename Body>
void forTapPositions(Kernel &k, const ConvShape &s, int64_t kh, int64_t kw, Body body) {
  OutRange rows = validOutputs(kh, s.H, s.OH, s.stride, s.pad);
  OutRange cols = validOutputs(kw, s.W, s.OW, s.stride, s.pad);
  if (rows.empty() || cols.empty()) return;
  forLoop(k.b, k.c(rows.lo), k.c(rows.hi), [&](llvm::Value *oh) {
    llvm::Value *ih = k.add(k.mul(oh, s.stride), kh - s.pad);
    forLoop(k.b, k.c(cols.lo), k.c(cols.hi), [&](llvm::Value *ow) {
      llvm::Value *iw = k.add(k.mul(ow, s.stride), kw - s.pad);
      body(oh, ow, ih, iw);
    }, "ow");
  }, "oh");
}

}  // namespace

// y[s,o,oh,ow] = Σ_{c,kh,kw} x[s,c,oh·st−p+kh, ow·st−p+kw] · w[o,c,kh,kw]
void emitConv2d(Kernel &k) {
  ConvShape s = shapeOf(k.inType(0).dims, k.inType(1).dims, k.type().dims, k);
  llvm::Value *x = k.in[0], *w = k.in[1], *y = k.out;
  forLoop(k.b, k.n, [&](llvm::Value *n) {
    forLoop(k.b, k.c(s.O), [&](llvm::Value *o) {
      llvm::Value *yPlane = k.at(y, k.mul(k.add(k.mul(n, s.O), o), s.OH * s.OW));
      k.zero(yPlane, k.c(s.OH * s.OW));
      forLoop(k.b, k.c(s.C), [&](llvm::Value *c) {
        llvm::Value *xPlane = k.at(x, k.mul(k.add(k.mul(n, s.C), c), s.H * s.W));
        for (int64_t kh = 0; kh < s.KH; ++kh)
          for (int64_t kw = 0; kw < s.KW; ++kw) {
            llvm::Value *tap = k.load(w, k.linear({o, c, k.c(kh), k.c(kw)}, {s.O, s.C, s.KH, s.KW}));
            forTapPositions(k, s, kh, kw, [&](auto *oh, auto *ow, auto *ih, auto *iw) {
              llvm::Value *yi = k.add(k.mul(oh, s.OW), ow);
              llvm::Value *xv = k.load(xPlane, k.add(k.mul(ih, s.W), iw));
              k.store(k.fma(tap, xv, k.load(yPlane, yi)), yPlane, yi);
            });
          }
      }, "c");
    }, "o");
  }, "s");
}

// dx[s,c,ih,iw] = Σ_{o,kh,kw} dy[s,o,oh,ow] · w[o,c,kh,kw] over the (oh, ow) that read (ih, iw):
// the forward loop with the roles of x and y swapped (a scatter into the dx plane of channel c).
void emitConv2dBwdData(Kernel &k) {
  ConvShape s = shapeOf(k.type().dims, k.inType(1).dims, k.inType(0).dims, k);
  llvm::Value *dy = k.in[0], *w = k.in[1], *dx = k.out;
  forLoop(k.b, k.n, [&](llvm::Value *n) {
    forLoop(k.b, k.c(s.C), [&](llvm::Value *c) {
      llvm::Value *dxPlane = k.at(dx, k.mul(k.add(k.mul(n, s.C), c), s.H * s.W));
      k.zero(dxPlane, k.c(s.H * s.W));
      forLoop(k.b, k.c(s.O), [&](llvm::Value *o) {
        llvm::Value *dyPlane = k.at(dy, k.mul(k.add(k.mul(n, s.O), o), s.OH * s.OW));
        for (int64_t kh = 0; kh < s.KH; ++kh)
          for (int64_t kw = 0; kw < s.KW; ++kw) {
            llvm::Value *tap = k.load(w, k.linear({o, c, k.c(kh), k.c(kw)}, {s.O, s.C, s.KH, s.KW}));
            forTapPositions(k, s, kh, kw, [&](auto *oh, auto *ow, auto *ih, auto *iw) {
              llvm::Value *xi = k.add(k.mul(ih, s.W), iw);
              llvm::Value *g = k.load(dyPlane, k.add(k.mul(oh, s.OW), ow));
              k.store(k.fma(tap, g, k.load(dxPlane, xi)), dxPlane, xi);
            });
          }
      }, "o");
    }, "c");
  }, "s");
}

// dw[o,c,kh,kw] = Σ_{s,oh,ow} dy[s,o,oh,ow] · x[s,c,oh·st−p+kh, ow·st−p+kw]: one reduction per
// weight, over the batch and the tap's valid output positions, written once (no zeroing needed).
void emitConv2dBwdFilter(Kernel &k) {
  ConvShape s = shapeOf(k.inType(0).dims, k.type().dims, k.inType(1).dims, k);
  llvm::Value *x = k.in[0], *dy = k.in[1], *dw = k.out;
  forLoop(k.b, k.c(s.O), [&](llvm::Value *o) {
    forLoop(k.b, k.c(s.C), [&](llvm::Value *c) {
      for (int64_t kh = 0; kh < s.KH; ++kh)
        for (int64_t kw = 0; kw < s.KW; ++kw) {
          OutRange rows = validOutputs(kh, s.H, s.OH, s.stride, s.pad);
          OutRange cols = validOutputs(kw, s.W, s.OW, s.stride, s.pad);
          llvm::Value *sum = k.f32(0);
          if (!rows.empty() && !cols.empty())
            sum = reduceLoop(k.b, k.c(0), k.n, sum, [&](llvm::Value *n, llvm::Value *acc) {
              llvm::Value *xPlane = k.at(x, k.mul(k.add(k.mul(n, s.C), c), s.H * s.W));
              llvm::Value *dyPlane = k.at(dy, k.mul(k.add(k.mul(n, s.O), o), s.OH * s.OW));
              return reduceLoop(k.b, k.c(rows.lo), k.c(rows.hi), acc, [&](llvm::Value *oh, llvm::Value *acc) {
                llvm::Value *ih = k.add(k.mul(oh, s.stride), kh - s.pad);
                return reduceLoop(k.b, k.c(cols.lo), k.c(cols.hi), acc, [&](llvm::Value *ow, llvm::Value *acc) {
                  llvm::Value *iw = k.add(k.mul(ow, s.stride), kw - s.pad);
                  return k.dotAdd(acc, k.load(dyPlane, k.add(k.mul(oh, s.OW), ow)),
                                  k.load(xPlane, k.add(k.mul(ih, s.W), iw)));
                }, "ow");
              }, "oh");
            }, "s");
          k.store(sum, dw, k.linear({o, c, k.c(kh), k.c(kw)}, {s.O, s.C, s.KH, s.KW}));
        }
    }, "c");
  }, "o");
}

}  // namespace mtlc::codegen
