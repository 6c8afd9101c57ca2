// Max and average pooling over k×k windows with a stride, no padding (PyTorch's floor mode), and
// their gradients. Planes (sample × channel) are independent, so they are split across threads.
//
// Windows that tile their rows (stride == k, the usual maxpool(2)) run as explicit vectors: a
// vector of `lanes` consecutive outputs reads k·lanes consecutive inputs per window row, which are
// de-interleaved into one vector per tap with shuffles (and interleaved back for the gradient),
// so no gathers or scatters. Other strides use the scalar loops, whose k×k taps are unrolled.
#include "Kernel.h"
#include "LoopBuilder.h"

namespace mtlc::codegen {

namespace {

using llvm::Value;

struct PoolShape {
  int64_t planes;  // channels per sample (times n at run time)
  int64_t H, W, OH, OW, k, stride;
  // Windows side by side and rows of windows one after another: vector code applies.
  bool tiled() const { return stride == k; }
  // ... and they cover the whole input (no leftover rows or columns to zero).
  bool exact() const { return tiled() && OH * k == H && OW * k == W; }
};

// x is the pooled input type [C,H,W], y the pooled output [C,OH,OW].
PoolShape shapeOf(const ir::Type &x, const ir::Type &y, const Kernel &k) {
  return {x.dims[0], x.dims[1], x.dims[2], y.dims[1], y.dims[2], k.attr(0), k.attr(1)};
}

// Runs perPlane(h, q) for every plane q of the batch, planes split across threads.
void forPlanes(Kernel &k, const PoolShape &s, const std::function<void(Kernel &h, Value *q)> &perPlane) {
  Value *planes = k.mul(k.n, s.planes);
  Value *big = k.b.CreateICmpSGE(k.mul(planes, s.H * s.W), k.c(int64_t(1) << 15));
  parallelFor(k, planes, big, [&](Kernel &h, Value *q0, Value *q1) {
    forLoop(h.b, q0, q1, [&](Value *q) { perPlane(h, q); }, "plane");
  });
}

// For every window of one plane: window(yi, origin), yi its index in the output plane, origin the
// plane index of its top-left input element.
template <typename Window>
void forEachWindow(Kernel &k, const PoolShape &s, Window window) {
  forLoop(k.b, k.c(s.OH), [&](Value *oh) {
    forLoop(k.b, k.c(s.OW), [&](Value *ow) {
      Value *origin = k.add(k.mul(oh, s.stride * s.W), k.mul(ow, s.stride));
      window(k.add(k.mul(oh, s.OW), ow), origin);
    }, "ow");
  }, "oh");
}

// The window's element offsets relative to its origin, row-major: the order that decides which of
// equal maxima wins.
std::vector<int64_t> windowTaps(const PoolShape &s) {
  std::vector<int64_t> taps;
  for (int64_t kh = 0; kh < s.k; ++kh)
    for (int64_t kw = 0; kw < s.k; ++kw) taps.push_back(kh * s.W + kw);
  return taps;
}

Value *unpredictable(Kernel &k, Value *select) {
  if (auto *inst = llvm::dyn_cast<llvm::Instruction>(select))
    inst->setMetadata(llvm::LLVMContext::MD_unpredictable, llvm::MDNode::get(k.b.getContext(), {}));
  return select;
}

// PyTorch's rule: a later element replaces the running max only if it is greater (or NaN), so the
// first maximum wins and NaN propagates. Works on floats and vectors alike; tap is the candidate's
// tap index (a constant of bestTap's type).
void maxStep(Kernel &k, Value *v, Value *tap, Value *&best, Value *&bestTap) {
  Value *replaces = k.b.CreateOr(k.b.CreateFCmpOGT(v, best), k.b.CreateFCmpUNO(v, v));
  best = unpredictable(k, k.b.CreateSelect(replaces, v, best));
  bestTap = unpredictable(k, k.b.CreateSelect(replaces, tap, bestTap));
}

// Max of one window (scalar path): {value, index of its tap in windowTaps order}.
std::pair<Value *, Value *> windowMax(Kernel &k, const PoolShape &s, Value *xPlane, Value *origin) {
  std::vector<int64_t> taps = windowTaps(s);
  Value *best = k.load(xPlane, origin), *bestTap = k.c(0);
  for (size_t t = 1; t < taps.size(); ++t)
    maxStep(k, k.load(xPlane, k.add(origin, taps[t])), k.c((int64_t)t), best, bestTap);
  return {best, bestTap};
}

// ---- the vector path (stride == k) ----

// <VL·k> lanes starting at `first` of a row, as k vectors, masked to the row's `valid` inputs.
llvm::SmallVector<Value *, 4> loadRowSegment(Kernel &k, int VL, Value *row, Value *first, Value *valid) {
  llvm::SmallVector<Value *, 4> parts;
  for (int64_t p = 0; p < k.node.ints.at(0); ++p) {
    Value *start = k.add(first, p * VL);
    parts.push_back(k.maskedLoad(VL, row, start, k.laneMask(VL, k.c(p * VL), valid)));
  }
  return parts;
}

// The concatenation of `parts` (k vectors of VL) as one shuffle source pair chain, then the lanes
// `pick` of it (indices into the concatenation).
Value *pickLanes(Kernel &k, llvm::ArrayRef<Value *> parts, llvm::ArrayRef<int> pick) {
  Value *all = parts[0];
  int width = llvm::cast<llvm::FixedVectorType>(parts[0]->getType())->getNumElements();
  for (size_t p = 1; p < parts.size(); ++p) {
    int add = llvm::cast<llvm::FixedVectorType>(parts[p]->getType())->getNumElements();
    // Widen `all` and parts[p] to a common width, concatenate.
    llvm::SmallVector<int, 64> concat;
    for (int i = 0; i < width + add; ++i) concat.push_back(i);
    if (width != add) {
      llvm::SmallVector<int, 64> widen;
      for (int i = 0; i < width; ++i) widen.push_back(i < add ? i : -1);
      Value *w = k.b.CreateShuffleVector(parts[p], widen);  // parts[p] padded to `width` lanes
      llvm::SmallVector<int, 64> cat;
      for (int i = 0; i < width + add; ++i) cat.push_back(i < width ? i : width + (i - width));
      all = k.b.CreateShuffleVector(all, w, cat);
    } else {
      all = k.b.CreateShuffleVector(all, parts[p], concat);
    }
    width += add;
  }
  return k.b.CreateShuffleVector(all, pick);
}

struct VectorWindows {
  int VL;
  Value *ow0;    // first output of this vector
  Value *valid;  // outputs in it that exist (<= VL)
  Value *mask;   // <VL x i1> lanes < valid
};

// Per vector of outputs of output row oh: the k·k tap vectors (row-major), loaded from xPlane.
llvm::SmallVector<Value *, 16> tapVectors(Kernel &k, const PoolShape &s, const VectorWindows &w,
                                          Value *xPlane, Value *oh) {
  llvm::SmallVector<Value *, 16> taps;
  const int K = (int)s.k;
  for (int kh = 0; kh < K; ++kh) {
    Value *row = k.at(xPlane, k.mul(k.add(k.mul(oh, K), k.c(kh)), s.W));
    auto parts = loadRowSegment(k, w.VL, row, k.mul(w.ow0, K), k.mul(w.valid, K));
    for (int kw = 0; kw < K; ++kw) {
      llvm::SmallVector<int, 16> pick;
      for (int l = 0; l < w.VL; ++l) pick.push_back(l * K + kw);
      taps.push_back(pickLanes(k, parts, pick));
    }
  }
  return taps;
}

// Calls body(w) for each vector of outputs of one output row. A row at least a vector wide ends
// with a whole vector that overlaps the one before it (outputs OW - VL ... OW - 1) rather than a
// partial one: every access is then a plain vector, and the outputs computed twice are written
// twice with the same value (both kernels store each window's results, nothing accumulates).
// Partial masked accesses cost 10+ cycles each on Zen (TargetInfo::slowMaskedMemory).
template <typename Body>
void forOutputVectors(Kernel &k, const PoolShape &s, Body body) {
  const int VL = k.lanes();
  const bool overlapLast = s.OW >= VL;
  forLoop(k.b, k.c((s.OW + VL - 1) / VL), [&](Value *v) {
    VectorWindows w{VL, k.mul(v, VL), nullptr, nullptr};
    if (overlapLast) {
      w.ow0 = k.smin(w.ow0, k.c(s.OW - VL));
      w.valid = k.c(VL);
    } else {
      w.valid = k.smin(k.c(VL), k.sub(k.c(s.OW), w.ow0));
    }
    w.mask = k.laneMask(VL, k.c(0), w.valid);
    body(w);
  }, "ov");
}

}  // namespace

// MaxPool and AvgPool forward (avg divides by k², the window never covers padding).
void emitPool(Kernel &k) {
  PoolShape s = shapeOf(k.inType(0), k.type(), k);
  const bool isMax = k.node.op == ir::OpKind::MaxPool;
  forPlanes(k, s, [&](Kernel &h, Value *q) {
    Value *xPlane = h.at(h.in[0], h.mul(q, s.H * s.W));
    Value *yPlane = h.at(h.out, h.mul(q, s.OH * s.OW));
    if (s.tiled() && s.k <= 4) {
      forLoop(h.b, h.c(s.OH), [&](Value *oh) {
        forOutputVectors(h, s, [&](const VectorWindows &w) {
          auto taps = tapVectors(h, s, w, xPlane, oh);
          Value *result = taps[0];
          if (isMax) {
            Value *tap = llvm::Constant::getNullValue(llvm::FixedVectorType::get(h.b.getInt32Ty(), w.VL));
            for (size_t t = 1; t < taps.size(); ++t)
              maxStep(h, taps[t], h.b.CreateVectorSplat(w.VL, h.b.getInt32((int)t)), result, tap);
          } else {
            for (size_t t = 1; t < taps.size(); ++t) result = h.b.CreateFAdd(result, taps[t]);
            result = h.b.CreateFMul(result, h.splat(w.VL, h.f32(1.0 / double(s.k * s.k))));
          }
          h.maskedStore(result, yPlane, h.add(h.mul(oh, s.OW), w.ow0), w.mask);
        });
      }, "oh");
      return;
    }
    forEachWindow(h, s, [&](Value *yi, Value *origin) {
      Value *result;
      if (isMax) {
        result = windowMax(h, s, xPlane, origin).first;
      } else {
        result = h.f32(0);
        for (int64_t tap : windowTaps(s)) result = h.b.CreateFAdd(result, h.load(xPlane, h.add(origin, tap)));
        result = h.b.CreateFMul(result, h.f32(1.0 / double(s.k * s.k)));
      }
      h.store(result, yPlane, yi);
    });
  });
}

// dx = 0, then each output's gradient is added at its window's argmax, recomputed from x.
// Tiled windows (stride == k) write every tap of every window as a vector: the gradient where the
// tap is the argmax, else 0 (and a fused chain applies right there); leftover rows and columns
// are zeroed first. Overlapping windows (stride < k) accumulate one element at a time; a fused
// chain then runs over the finished plane.
void emitMaxPoolBwd(Kernel &k) {
  PoolShape s = shapeOf(k.inType(0), k.inType(1), k);
  std::vector<int64_t> taps = windowTaps(s);
  const bool vector = s.tiled() && s.k <= 4;
  forPlanes(k, s, [&](Kernel &h, Value *q) {
    Value *xPlane = h.at(h.in[0], h.mul(q, s.H * s.W));
    Value *dyPlane = h.at(h.in[1], h.mul(q, s.OH * s.OW));
    Value *dxPlane = h.at(h.out, h.mul(q, s.H * s.W));
    Value *planeFlat = h.mul(q, s.H * s.W);
    if (!s.exact()) h.zero(dxPlane, h.c(s.H * s.W));
    if (vector) {
      const int K = (int)s.k;
      forLoop(h.b, h.c(s.OH), [&](Value *oh) {
        forOutputVectors(h, s, [&](const VectorWindows &w) {
          auto tapVals = tapVectors(h, s, w, xPlane, oh);
          Value *best = tapVals[0];
          Value *bestTap = llvm::Constant::getNullValue(llvm::FixedVectorType::get(h.b.getInt32Ty(), w.VL));
          for (size_t t = 1; t < tapVals.size(); ++t)
            maxStep(h, tapVals[t], h.b.CreateVectorSplat(w.VL, h.b.getInt32((int)t)), best, bestTap);
          Value *g = h.maskedLoad(w.VL, dyPlane, h.add(h.mul(oh, s.OW), w.ow0), w.mask);
          Value *zero = llvm::Constant::getNullValue(g->getType());
          for (int kh = 0; kh < K; ++kh) {
            llvm::SmallVector<Value *, 4> perTap;  // this row's k taps, one lane per window
            for (int kw = 0; kw < K; ++kw) {
              Value *isBest = h.b.CreateICmpEQ(bestTap, h.b.CreateVectorSplat(w.VL, h.b.getInt32(kh * K + kw)));
              perTap.push_back(h.b.CreateSelect(isBest, g, zero));
            }
            // Interleave back: lane j of the row segment is tap j % k of window j / k.
            Value *rowStart = h.add(h.mul(h.add(h.mul(oh, K), h.c(kh)), s.W), h.mul(w.ow0, K));
            Value *validInputs = h.mul(w.valid, K);
            for (int p = 0; p < K; ++p) {
              llvm::SmallVector<int, 16> pick;
              for (int l = 0; l < w.VL; ++l) {
                int j = p * w.VL + l;
                pick.push_back((j % K) * w.VL + j / K);
              }
              Value *out = pickLanes(h, perTap, pick);
              Value *mask = h.laneMask(w.VL, h.c(p * w.VL), validInputs);
              Value *at = h.add(rowStart, p * w.VL);
              if (h.chain) {
                ElementSite site{h.add(planeFlat, at), mask};
                out = h.chain(h, out, site);
              }
              h.maskedStore(out, dxPlane, at, mask);
            }
          }
        });
      }, "oh");
      if (h.chain && !s.exact()) {
        // Leftover rows and columns hold zeros the chain has not seen: apply it there too.
        forLoop(h.b, h.c(s.H), [&](Value *r) {
          Value *rowStart = h.mul(r, s.W);
          Value *inWindows = h.b.CreateICmpSLT(r, h.c(s.OH * s.k));
          Value *from = h.b.CreateSelect(inWindows, h.c(s.OW * s.k), h.c(0));
          forLoop(h.b, from, h.c(s.W), [&](Value *c) {
            Value *at = h.add(rowStart, c);
            h.store(h.chain(h, h.f32(0), ElementSite{h.add(planeFlat, at)}), dxPlane, at);
          }, "c");
        }, "r");
      }
      return;
    }
    const bool overlapping = s.stride < s.k;
    forEachWindow(h, s, [&](Value *yi, Value *origin) {
      Value *bestTap = windowMax(h, s, xPlane, origin).second;
      Value *g = h.load(dyPlane, yi);
      if (overlapping) {
        // tap t = kh·k + kw sits at kh·W + kw from the window's origin
        Value *kh = h.b.CreateUDiv(bestTap, h.c(s.k)), *kw = h.b.CreateURem(bestTap, h.c(s.k));
        Value *at = h.add(origin, h.add(h.mul(kh, s.W), kw));
        h.store(h.b.CreateFAdd(h.load(dxPlane, at), g), dxPlane, at);
        return;
      }
      for (size_t t = 0; t < taps.size(); ++t)
        h.store(h.b.CreateSelect(h.b.CreateICmpEQ(bestTap, h.c((int64_t)t)), g, h.f32(0)), dxPlane,
                h.add(origin, taps[t]));
    });
    if (h.chain)
      forLoop(h.b, h.c(s.H * s.W), [&](Value *e) {
        h.store(h.chain(h, h.load(dxPlane, e), ElementSite{h.add(planeFlat, e)}), dxPlane, e);
      }, "e");
  });
}

// dx = 0, then each output's gradient, divided by k², is added to every element of its window.
void emitAvgPoolBwd(Kernel &k) {
  PoolShape s = shapeOf(k.type(), k.inType(0), k);
  forPlanes(k, s, [&](Kernel &h, Value *q) {
    Value *dyPlane = h.at(h.in[0], h.mul(q, s.OH * s.OW));
    Value *dxPlane = h.at(h.out, h.mul(q, s.H * s.W));
    h.zero(dxPlane, h.c(s.H * s.W));
    forEachWindow(h, s, [&](Value *yi, Value *origin) {
      Value *g = h.b.CreateFMul(h.load(dyPlane, yi), h.f32(1.0 / double(s.k * s.k)));
      for (int64_t tap : windowTaps(s)) {
        Value *at = h.add(origin, tap);
        h.store(h.b.CreateFAdd(h.load(dxPlane, at), g), dxPlane, at);
      }
    });
    if (h.chain)
      forLoop(h.b, h.c(s.H * s.W), [&](Value *e) {
        h.store(h.chain(h, h.load(dxPlane, e), ElementSite{h.add(h.mul(q, s.H * s.W), e)}), dxPlane, e);
      }, "e");
  });
}

}  // namespace mtlc::codegen
