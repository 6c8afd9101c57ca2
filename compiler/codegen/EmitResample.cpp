// Resampling a [C,H,W] plane: global average pooling ([C,H,W] → [C], nn.AdaptiveAvgPool2d(1) +
// flatten) and upsampling by an integer factor s ([C,H,W] → [C,sH,sW], nn.Upsample(scale_factor=s)),
// nearest or bilinear with align_corners=False, and their gradients. Planes (sample × channel) are
// independent, so they are split across threads; each plane's arithmetic runs in a fixed order.
//
// Nearest reads x[⌊oh/s⌋, ⌊ow/s⌋]. Bilinear (PyTorch's upsample_bilinear2d): the source
// coordinate of output row oh is max(0, (oh + ½)/s − ½), h0 its floor, h1 = h0 + 1 unless h0 is
// the last row, weights 1 − λ and λ = src − h0; likewise for columns. The gradients: nearest sums
// each input's s×s block of dy; bilinear scatters dy back with the same four weights, in output
// order.
#include "Kernel.h"
#include "LoopBuilder.h"

namespace mtlc::codegen {

namespace {

using llvm::Value;

struct PlaneShape {
  int64_t C, H, W;  // the small side: the pooled / upsampled input
  int64_t scale;    // upsample: s
  int64_t OH() const { return H * scale; }
  int64_t OW() const { return W * scale; }
};

// Runs perPlane(h, q) for every plane q in [0, n·C), split across threads when `floats` per sample
// make the batch big enough.
void forPlanes(Kernel &k, int64_t C, int64_t floatsPerSample, const std::function<void(Kernel &h, Value *q)> &perPlane) {
  Value *big = k.b.CreateICmpSGE(k.mul(k.n, floatsPerSample), k.c(int64_t(1) << 15));
  parallelFor(k, k.mul(k.n, C), big, [&](Kernel &h, Value *q0, Value *q1) {
    forLoop(h.b, q0, q1, [&](Value *q) { perPlane(h, q); }, "plane");
  });
}

// One bilinear tap along an axis: the two source indices and their weights (floats).
struct Tap {
  Value *i0, *i1, *l0, *l1;
};

Tap bilinearTap(Kernel &k, Value *out, int64_t in, int64_t scale) {
  llvm::IRBuilder<> &b = k.b;
  Value *src = b.CreateFSub(b.CreateFMul(k.f32(1.0 / double(scale)),
                                         b.CreateFAdd(k.intToFP(out, b.getFloatTy()), k.f32(0.5))),
                            k.f32(0.5));
  src = k.maxnum(src, k.f32(0));
  Value *i0 = b.CreateFPToSI(src, b.getInt64Ty());  // src >= 0: truncation is the floor
  Value *i1 = k.add(i0, b.CreateZExt(b.CreateICmpSLT(i0, k.c(in - 1)), b.getInt64Ty()));
  Value *l1 = b.CreateFSub(src, k.intToFP(i0, b.getFloatTy()));
  return {i0, i1, b.CreateFSub(k.f32(1), l1), l1};
}

bool bilinear(const Kernel &k) { return k.attr(1) == int64_t(ir::UpsampleMode::Bilinear); }

// The small side's shape: x of a forward node (operand 0), the result of a backward one.
PlaneShape upsampleShape(const ir::Type &small, const Kernel &k) {
  return {small.dims[0], small.dims[1], small.dims[2], k.attr(0)};
}

}  // namespace

// y[q] = Σ_p x[q, p] / (H·W), summed in double.
void emitGlobalAvgPool(Kernel &k) {
  const ir::Type &x = k.inType(0);
  const int64_t C = x.dims[0], P = x.dims[1] * x.dims[2];
  forPlanes(k, C, C * P, [&](Kernel &h, Value *q) {
    Value *plane = h.at(h.in[0], h.mul(q, P));
    Value *sum = reduceLoop(h.b, h.c(0), h.c(P), h.f64(0), [&](Value *p, Value *acc) {
      return h.sumAdd(acc, h.toDouble(h.load(plane, p)));
    }, "p");
    h.store(h.toFloat(h.b.CreateFMul(sum, h.f64(1.0 / double(P)))), h.out, q);
  });
}

// dx[q, p] = dy[q] / (H·W), then the fused chain (a relu's backward before the pooling), if any.
void emitGlobalAvgPoolBwd(Kernel &k) {
  const ir::Type &x = k.type();
  const int64_t C = x.dims[0], P = x.dims[1] * x.dims[2];
  forPlanes(k, C, C * P, [&](Kernel &h, Value *q) {
    Value *g = h.b.CreateFMul(h.load(h.in[0], q), h.f32(1.0 / double(P)));
    Value *plane = h.mul(q, P);
    forLoop(h.b, h.c(P), [&](Value *p) {
      Value *i = h.add(plane, p);
      h.store(h.chain ? h.chain(h, g, ElementSite{i}) : g, h.out, i);
    }, "p");
  });
}

void emitUpsample(Kernel &k) {
  const PlaneShape s = upsampleShape(k.inType(0), k);
  const bool lerp = bilinear(k);
  forPlanes(k, s.C, s.C * s.OH() * s.OW(), [&](Kernel &h, Value *q) {
    llvm::IRBuilder<> &b = h.b;
    Value *x = h.at(h.in[0], h.mul(q, s.H * s.W)), *y = h.at(h.out, h.mul(q, s.OH() * s.OW()));
    forLoop(b, h.c(s.OH()), [&](Value *oh) {
      Value *yRow = h.at(y, h.mul(oh, s.OW()));
      if (!lerp) {
        Value *xRow = h.at(x, h.mul(b.CreateUDiv(oh, h.c(s.scale)), s.W));
        forLoop(b, h.c(s.OW()), [&](Value *ow) {
          h.store(h.load(xRow, b.CreateUDiv(ow, h.c(s.scale))), yRow, ow);
        }, "ow");
        return;
      }
      Tap th = bilinearTap(h, oh, s.H, s.scale);
      Value *row0 = h.at(x, h.mul(th.i0, s.W)), *row1 = h.at(x, h.mul(th.i1, s.W));
      forLoop(b, h.c(s.OW()), [&](Value *ow) {
        Tap tw = bilinearTap(h, ow, s.W, s.scale);
        auto across = [&](Value *row) {
          return b.CreateFAdd(b.CreateFMul(tw.l0, h.load(row, tw.i0)), b.CreateFMul(tw.l1, h.load(row, tw.i1)));
        };
        h.store(b.CreateFAdd(b.CreateFMul(th.l0, across(row0)), b.CreateFMul(th.l1, across(row1))), yRow, ow);
      }, "ow");
    }, "oh");
  });
}

void emitUpsampleBwd(Kernel &k) {
  const PlaneShape s = upsampleShape(k.type(), k);
  const bool lerp = bilinear(k);
  forPlanes(k, s.C, s.C * s.OH() * s.OW(), [&](Kernel &h, Value *q) {
    llvm::IRBuilder<> &b = h.b;
    Value *dy = h.at(h.in[0], h.mul(q, s.OH() * s.OW())), *dx = h.at(h.out, h.mul(q, s.H * s.W));
    if (!lerp) {  // dx[ih, iw] = Σ_{i,j < s} dy[ih·s + i, iw·s + j], rows then columns
      forLoop(b, h.c(s.H), [&](Value *ih) {
        forLoop(b, h.c(s.W), [&](Value *iw) {
          Value *corner = h.add(h.mul(ih, s.scale * s.OW()), h.mul(iw, s.scale));
          Value *sum = h.f32(0);
          for (int64_t i = 0; i < s.scale; ++i)
            for (int64_t j = 0; j < s.scale; ++j)
              sum = b.CreateFAdd(sum, h.load(dy, h.add(corner, i * s.OW() + j)));
          h.store(sum, dx, h.add(h.mul(ih, s.W), iw));
        }, "iw");
      }, "ih");
      return;
    }
    h.zero(dx, h.c(s.H * s.W));
    forLoop(b, h.c(s.OH()), [&](Value *oh) {
      Tap th = bilinearTap(h, oh, s.H, s.scale);
      forLoop(b, h.c(s.OW()), [&](Value *ow) {
        Tap tw = bilinearTap(h, ow, s.W, s.scale);
        Value *g = h.load(dy, h.add(h.mul(oh, s.OW()), ow));
        auto scatter = [&](Value *ih, Value *lh, Value *iw, Value *lw) {
          Value *i = h.add(h.mul(ih, s.W), iw);
          h.store(b.CreateFAdd(h.load(dx, i), b.CreateFMul(b.CreateFMul(lh, lw), g)), dx, i);
        };
        scatter(th.i0, th.l0, tw.i0, tw.l0);
        scatter(th.i0, th.l0, tw.i1, tw.l1);
        scatter(th.i1, th.l1, tw.i0, tw.l0);
        scatter(th.i1, th.l1, tw.i1, tw.l1);
      }, "ow");
    }, "oh");
  });
}

}  // namespace mtlc::codegen
