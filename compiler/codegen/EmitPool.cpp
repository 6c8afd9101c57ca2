// Max and average pooling over k×k windows with a stride, no padding (PyTorch's floor mode), and
// their gradients. Windows are small, so their k×k taps are unrolled at compile time; the loops run
// over planes (sample × channel) and output positions.
#include "Kernel.h"
#include "LoopBuilder.h"

namespace mtlc::codegen {

namespace {

struct PoolShape {
  int64_t planes;  // channels per sample (times n at run time)
  int64_t H, W, OH, OW, k, stride;
};

// x is the pooled input type [C,H,W], y the pooled output [C,OH,OW].
PoolShape shapeOf(const ir::Type &x, const ir::Type &y, const Kernel &k) {
  return {x.dims[0], x.dims[1], x.dims[2], y.dims[1], y.dims[2], k.attr(0), k.attr(1)};
}

// For every plane q of the batch: planeStart(q), then window(yi, origin) for every output position,
// where yi is the position's index in the output plane and origin the plane index of its window's
// top-left input element.
template <typename PlaneStart, typename Window>
void forEachWindow(Kernel &k, const PoolShape &s, PlaneStart planeStart, Window window) {
  forLoop(k.b, k.mul(k.n, s.planes), [&](llvm::Value *q) {
    planeStart(q);
    forLoop(k.b, k.c(s.OH), [&](llvm::Value *oh) {
      forLoop(k.b, k.c(s.OW), [&](llvm::Value *ow) {
        llvm::Value *origin = k.add(k.mul(oh, s.stride * s.W), k.mul(ow, s.stride));
        window(k.add(k.mul(oh, s.OW), ow), origin);
      }, "ow");
    }, "oh");
  }, "plane");
}

// The window's element offsets relative to its origin, row-major: the order that decides which of
// equal maxima wins.
std::vector<int64_t> windowTaps(const PoolShape &s) {
  std::vector<int64_t> taps;
  for (int64_t kh = 0; kh < s.k; ++kh)
    for (int64_t kw = 0; kw < s.k; ++kw) taps.push_back(kh * s.W + kw);
  return taps;
}

// Max of one window: {value, index of its tap in windowTaps order}. PyTorch's rule: a later element
// replaces the running max only if it is greater (or NaN), so the first maximum wins and NaN
// propagates. The selects are marked unpredictable: on random data a branch would mispredict.
std::pair<llvm::Value *, llvm::Value *> windowMax(Kernel &k, const PoolShape &s,
                                                  llvm::Value *xPlane, llvm::Value *origin) {
  std::vector<int64_t> taps = windowTaps(s);
  auto unpredictable = [&](llvm::Value *select) {
    if (auto *inst = llvm::dyn_cast<llvm::Instruction>(select))
      inst->setMetadata(llvm::LLVMContext::MD_unpredictable, llvm::MDNode::get(k.b.getContext(), {}));
    return select;
  };
  llvm::Value *best = k.load(xPlane, origin), *bestTap = k.c(0);
  for (size_t t = 1; t < taps.size(); ++t) {
    llvm::Value *v = k.load(xPlane, k.add(origin, taps[t]));
    llvm::Value *replaces = k.b.CreateOr(k.b.CreateFCmpOGT(v, best), k.b.CreateFCmpUNO(v, v));
    best = unpredictable(k.b.CreateSelect(replaces, v, best));
    bestTap = unpredictable(k.b.CreateSelect(replaces, k.c((int64_t)t), bestTap));
  }
  return {best, bestTap};
}

}  // namespace

// MaxPool and AvgPool forward (avg divides by k², the window never covers padding).
void emitPool(Kernel &k) {
  PoolShape s = shapeOf(k.inType(0), k.type(), k);
  const bool isMax = k.node.op == ir::OpKind::MaxPool;
  llvm::Value *xPlane = nullptr, *yPlane = nullptr;
  forEachWindow(k, s,
      [&](llvm::Value *q) {
        xPlane = k.at(k.in[0], k.mul(q, s.H * s.W));
        yPlane = k.at(k.out, k.mul(q, s.OH * s.OW));
      },
      [&](llvm::Value *yi, llvm::Value *origin) {
        llvm::Value *result;
        if (isMax) {
          result = windowMax(k, s, xPlane, origin).first;
        } else {
          result = k.f32(0);
          for (int64_t tap : windowTaps(s))
            result = k.b.CreateFAdd(result, k.load(xPlane, k.add(origin, tap)));
          result = k.b.CreateFMul(result, k.f32(1.0 / double(s.k * s.k)));
        }
        k.store(result, yPlane, yi);
      });
}

// dx = 0, then each output's gradient is added at its window's argmax, recomputed from x.
// Windows that do not overlap (stride >= k) write their k² elements with plain selects, a loop the
// vectoriser handles; overlapping windows (stride < k) accumulate one element at a time.
void emitMaxPoolBwd(Kernel &k) {
  PoolShape s = shapeOf(k.inType(0), k.inType(1), k);
  std::vector<int64_t> taps = windowTaps(s);
  const bool overlapping = s.stride < s.k;
  llvm::Value *xPlane = nullptr, *dyPlane = nullptr, *dxPlane = nullptr;
  forEachWindow(k, s,
      [&](llvm::Value *q) {
        xPlane = k.at(k.in[0], k.mul(q, s.H * s.W));
        dyPlane = k.at(k.in[1], k.mul(q, s.OH * s.OW));
        dxPlane = k.at(k.out, k.mul(q, s.H * s.W));
        k.zero(dxPlane, k.c(s.H * s.W));
      },
      [&](llvm::Value *yi, llvm::Value *origin) {
        llvm::Value *bestTap = windowMax(k, s, xPlane, origin).second;
        llvm::Value *g = k.load(dyPlane, yi);
        if (overlapping) {
          // tap t = kh·k + kw sits at kh·W + kw from the window's origin
          llvm::Value *kh = k.b.CreateUDiv(bestTap, k.c(s.k)), *kw = k.b.CreateURem(bestTap, k.c(s.k));
          llvm::Value *at = k.add(origin, k.add(k.mul(kh, s.W), kw));
          k.store(k.b.CreateFAdd(k.load(dxPlane, at), g), dxPlane, at);
          return;
        }
        for (size_t t = 0; t < taps.size(); ++t)
          k.store(k.b.CreateSelect(k.b.CreateICmpEQ(bestTap, k.c((int64_t)t)), g, k.f32(0)),
                  dxPlane, k.add(origin, taps[t]));
      });
}

// dx = 0, then each output's gradient, divided by k², is added to every element of its window.
void emitAvgPoolBwd(Kernel &k) {
  PoolShape s = shapeOf(k.type(), k.inType(0), k);
  llvm::Value *dyPlane = nullptr, *dxPlane = nullptr;
  forEachWindow(k, s,
      [&](llvm::Value *q) {
        dyPlane = k.at(k.in[0], k.mul(q, s.OH * s.OW));
        dxPlane = k.at(k.out, k.mul(q, s.H * s.W));
        k.zero(dxPlane, k.c(s.H * s.W));
      },
      [&](llvm::Value *yi, llvm::Value *origin) {
        llvm::Value *g = k.b.CreateFMul(k.load(dyPlane, yi), k.f32(1.0 / double(s.k * s.k)));
        for (int64_t tap : windowTaps(s)) {
          llvm::Value *at = k.add(origin, tap);
          k.store(k.b.CreateFAdd(k.load(dxPlane, at), g), dxPlane, at);
        }
      });
}

}  // namespace mtlc::codegen
