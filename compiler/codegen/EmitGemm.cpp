// The packed GEMM: C[M,N] (+)= op(A)[M,K] · op(B)[K,N], generated as LLVM IR with explicit vector
// types sized to the target (TargetInfo), in the structure of BLIS / GotoBLAS:
//
//   for ic in blocks of MB rows of C                           (usually one block: all of M)
//     for pc in KC-deep slices of K                            (K split evenly)
//       pack A[ic.., pc..]  into MR-row panels,  k-major       (the broadcast operand; only
//                                                               when stored transposed)
//       for jc in blocks of NB columns of C
//         pack B[pc.., jc..] into NR-column panels, k-major    (the vector operand; L2-resident)
//         for each MR-row panel of A                           (L1-resident while ...)
//           for each NR-column panel of B                      (... B's panels stream past it)
//             micro-kernel: MR × NRV vector accumulators in registers over the kc slice
//             store: add C's previous value (later slices, or accumulate), apply the epilogue
//             (last slice only), masked store
//
// NR = NRV·lanes. The register tile (MR, NRV) is chosen per call site from the target's register
// count and the static extents (a small cost model: padded tiles × cycles per k step); a 16-lane
// target with 32 registers typically gets 14×2 (28 accumulators) or 6×4.
//
// Every transA / transB combination runs the same micro-kernel without a transposed copy of an
// operand: the micro-kernel reads A through a row and a k stride (A stored [M, K] in place, A
// stored [K, M] packed), and B's panels are packed from either layout; those whose source is
// contiguous along k (B transposed) are built from lanes × lanes blocks transposed in registers
// with shuffles. Edges are masked loads (panels are zero-padded to the full tile) and masked
// stores (only real elements of C are written, so rows past the batch size n stay untouched).
//
// Every C element is the sum over k in the same order, whatever the blocking outside the k loop,
// so splitting C across threads (bands of rows or columns, emit() below) cannot change results.
#include "CodegenABI.h"
#include "Kernel.h"
#include "LoopBuilder.h"
#include "GemmBlocking.h"

#include <llvm/IR/InlineAsm.h>
#include <llvm/IR/IntrinsicsX86.h>
#include <llvm/IR/Module.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

namespace mtlc::codegen {

namespace {

using llvm::Value;

struct Tiling {
  // Packed: the BLIS structure above. Axpy: the same register tile fed straight from A and B
  // (no packing; op(B) must be stored [K, N]). Dot: for C = A·Bᵀ with A [M, K] and B [N, K], both
  // contiguous along k: MR×NC accumulators of lane-wise partial dot products, summed across lanes
  // at the end. The direct forms win when packing would not be amortised: a small M (a batch of
  // one), a small N, or a short K.
  GemmKind kind = GemmKind::Packed;
  int VL = 16;   // lanes per vector
  int MR = 1;    // rows of the register tile
  int NRV = 1;   // vectors per row of the register tile (Dot: 1, the row of NC sums)
  int NC = 0;    // Dot: columns of C per tile (<= VL)
  int64_t KC = kGemmMaxKC, MB = kGemmMaxMB, NB = kGemmMaxNB;
  bool bf16 = false;  // packed, with bf16 operands (CodegenOptions::bf16): always the packed form
  int NR() const { return VL * NRV; }
};

int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// "packed 6x2": the form, then the register tile (rows × vectors; Dot: rows × columns).
std::string describe(const Tiling &t) {
  const char *form = t.kind == GemmKind::Packed ? "packed" : t.kind == GemmKind::Axpy ? "axpy" : "dot";
  return std::string(form) + " " + std::to_string(t.MR) + "x" + std::to_string(t.kind == GemmKind::Dot ? t.NC : t.NRV);
}

struct Choice {
  double cycles = INFINITY;
  int mr = 0, n = 0;  // rows; vectors per row (broadcast forms) or columns (Dot)
};

// The broadcast-form register tile (MR rows × NRV vectors) with the fewest estimated cycles for
// an M×N×K product in slices of at most `kc`. Cycles per k step of a tile: MR·NRV FMAs on two
// ports, MR broadcasts + NRV loads on two load ports, and at least one FMA latency (each
// accumulator is a serial chain; 5 cycles on Haswell and Zen, 4 on Skylake: with 4, AVX2's
// 8-accumulator 2×4 tile would tie with 6×2, which runs faster); all of it times `kCost` when the operands come from memory rather than packed panels.
// Per tile and slice: the tile's trip through the stack buffer to the store code, a fixed 20,
// `tileCost` more (the packed form's micro-kernel call), and per 64-byte line of C it writes 4
// when the tile is one row, 10 when it has several: when K is short the stores are the product, a
// tile one AVX2 vector wide writes half lines, and a tile of MR rows keeps MR interleaved write
// streams open where a one-row tile, walking along its row, writes C as one sequential stream
// (the batch-1 weight gradient, K = 1, ran twice as fast with 1×4 tiles as with 14×2 or 6×4).
// Unless forced, the menu is, for NRV = 1, 2, 4, the most rows the registers hold
// (MR·NRV accumulators + NRV B vectors + a broadcast), and one row of 4 vectors: few distinct
// micro-kernels per module.
Choice broadcastTile(const TargetInfo &target, const CodegenOptions *o, int64_t M, int64_t N,
                     int64_t K, int64_t kc, double kCost, double tileCost) {
  const bool forced = o && (o->gemmMR || o->gemmNRV);
  // bf16 products also consider the rows that split M evenly into as many panels as the most
  // rows do (a 32-row product: two panels of 16 rather than 28 and 4 real rows of 28).
  const bool evenRows = o && o->bf16 && target.bf16;
  // A bf16 tile's broadcasts are not free beside its vdpbf16ps: a tile one vector wide (a
  // broadcast per vdpbf16ps) runs clearly below 13×2 or 6×4 (one per two or four) on Zen 4
  // (bench/RESULTS.md), so each row's broadcast adds a third of a vdpbf16ps to the k step.
  const double broadcastCost = evenRows ? 1.0 / 3.0 : 0.0;
  Choice best;
  for (int nrv = 1; nrv <= 4; ++nrv)
    for (int mr = 1; mr <= 32; ++mr) {
      const int most = std::min(28, (target.vectorRegisters - 1 - nrv) / nrv);
      const bool even = evenRows && mr == int(ceilDiv(M, ceilDiv(M, most)));
      if (forced ? (o->gemmMR && o->gemmMR != mr) || (o->gemmNRV && o->gemmNRV != nrv)
                 : nrv == 3 || (mr != most && !even && !(mr == 1 && nrv == 4)))
        continue;
      if (mr * nrv + nrv + 1 > target.vectorRegisters) continue;
      if (mr > kGemmMaxTile || nrv * target.lanes > kGemmMaxTile) continue;
      double perK = std::max({mr * nrv * 0.5 + mr * broadcastCost, (mr + nrv) * 0.5, 5.0}) * kCost;
      double tiles = double(ceilDiv(M, mr)) * double(ceilDiv(N, int64_t(nrv) * target.lanes));
      double lines = double(mr) * double(ceilDiv(int64_t(nrv) * target.lanes, 16));
      double perTile = 2.0 * mr * nrv + 20.0 + tileCost + (mr == 1 ? 4.0 : 10.0) * lines;
      double cycles = tiles * (perK * double(K) + double(ceilDiv(K, kc)) * perTile);
      if (cycles < best.cycles) best = {cycles, mr, nrv};
    }
  return best;
}

// The Dot tile (MR rows × NC columns, NC <= lanes): per k vector, MR + NC loads and MR·NC FMAs;
// at the end MR·NC lane sums (about log2(lanes) shuffle + add pairs each).
Choice dotTile(const TargetInfo &target, const CodegenOptions *o, int64_t M, int64_t N, int64_t K) {
  Choice best;
  for (int mr : {1, 2, 3, 4, 6, 8}) {
    if (o && o->gemmMR && o->gemmMR != mr) continue;
    int nc = std::min(target.lanes, (target.vectorRegisters - 1 - mr) / mr);
    if (nc < 1) continue;
    double perK = std::max({mr * nc * 0.5, (mr + nc) * 0.5, 4.0});
    double sums = mr * nc * 2.0 * std::log2(double(target.lanes));
    double cycles = double(ceilDiv(M, mr)) * double(ceilDiv(N, nc)) *
                    (perK * double(ceilDiv(K, target.lanes)) + sums + 20.0);
    if (cycles < best.cycles) best = {cycles, mr, nc};
  }
  return best;
}

// Packed, Axpy or Dot, whichever the estimates (compute plus packing) make cheapest, with its tile.
// Static extents: -1 is the batch size n, at most maxBatch.
Tiling chooseTiling(const TargetInfo &target, const CodegenOptions *o, int64_t maxBatch, int64_t staticM,
                    int64_t staticK, int64_t staticN, bool transA, bool transB) {
  struct { bool transA, transB; } g{transA, transB};
  Tiling t;
  t.VL = target.lanes;
  auto extent = [&](int64_t e) { return e < 0 ? std::max<int64_t>(maxBatch, 1) : e; };
  const int64_t M = extent(staticM), N = extent(staticN), K = extent(staticK);
  if (o && o->gemmKC) t.KC = std::min(o->gemmKC, kGemmMaxKC);
  if (o && o->gemmMB) t.MB = std::min(o->gemmMB, kGemmMaxMB);
  if (o && o->gemmNB) t.NB = std::min(o->gemmNB, kGemmMaxNB);

  // Packing: a copy (source contiguous along the panel) or a register transpose per element.
  Choice packed = broadcastTile(target, o, M, N, K, t.KC, 1.0, 10.0);
  double packA = g.transA ? double(M) * double(K) * 0.15 : 0;  // else read in place
  double packB = double(K) * double(N) * (g.transB ? 0.4 : 0.15) * double(ceilDiv(M, t.MB));
  packed.cycles += packA + packB;
  // Straight from memory: B is re-read by every row tile, strided, from L1 only when it is small;
  // measured on the models' shapes (test_codegen "[gemmforms]"), the direct forms then run at
  // about 2/3 of the packed kernel's rate.
  double direct = double(K) * double(N) * 4 <= 48 * 1024 ? 1.1 : 1.5;
  Choice axpy, dot;
  if (!g.transB) axpy = broadcastTile(target, o, M, N, K, K, direct, 0.0);
  if (g.transB && !g.transA) {
    dot = dotTile(target, o, M, N, K);
    dot.cycles *= direct;
  }

  GemmKind kind = o && o->gemmKind != GemmKind::Auto ? o->gemmKind : GemmKind::Auto;
  // bf16 operands are converted where they are packed: the direct forms have no packing step.
  t.bf16 = o && o->bf16 && target.bf16 && target.lanes == 16;
  if (t.bf16) kind = GemmKind::Packed;
  if (kind == GemmKind::Axpy && g.transB) kind = GemmKind::Auto;  // not applicable
  if (kind == GemmKind::Dot && !(g.transB && !g.transA)) kind = GemmKind::Auto;
  if (kind == GemmKind::Auto) {
    kind = GemmKind::Packed;
    double best = packed.cycles;
    // Small products (a few µs whichever way) go direct when they can: the packed form would
    // bring its own micro-kernel and packing routines into the module for little gain, and
    // compile time is part of the bill.
    if (double(M) * double(N) * double(K) < double(1 << 17) && (axpy.cycles < INFINITY || dot.cycles < INFINITY))
      best = INFINITY;
    if (axpy.cycles < best) kind = GemmKind::Axpy, best = axpy.cycles;
    if (dot.cycles < best) kind = GemmKind::Dot, best = dot.cycles;
  }
  const Choice &c = kind == GemmKind::Packed ? packed : kind == GemmKind::Axpy ? axpy : dot;
  if (c.cycles == INFINITY) throw std::logic_error("emitGemm: no register tile fits the forced shape");
  t.kind = kind;
  t.MR = c.mr;
  if (kind == GemmKind::Dot) t.NRV = 1, t.NC = c.n;
  else t.NRV = c.n;
  t.MB = std::max<int64_t>(t.MB / t.MR * t.MR, t.MR);
  t.NB = std::max<int64_t>(t.NB / t.NR() * t.NR(), t.NR());
  if (std::getenv("MTLC_GEMM_DEBUG"))
    std::fprintf(stderr, "gemm %lldx%lldx%lld%s%s%s: packed %.0f axpy %.0f dot %.0f -> %s\n",
                 (long long)M, (long long)K, (long long)N, g.transA ? " Aᵀ" : "", g.transB ? " Bᵀ" : "",
                 t.bf16 ? " bf16" : "",
                 packed.cycles, axpy.cycles, dot.cycles, describe(t).c_str());
  return t;
}

// A convolution's packed product on a 16-lane target runs the 8×1 tile, unless tiling is forced
// or bf16: its shapes (M = 16 to 64 channels, K = C·KH·KW taps in slices of up to kGemmMaxKC,
// N = 49 to 784 positions) ran faster with it than with the cost model's wide tiles (6×4, 14×2),
// or as fast on the 7×7 planes, in the convolution kernels of examples/resnet_fashion.mtl on Zen 4
// (`mtlc_bench --profile-step --profile-cpu`, bench/RESULTS.md). The likely cause: a wide tile's
// B panel (kc × 64 floats) does not stay in L1 across the row panels, the 8×1 tile's (kc × 16)
// does, and its 8 accumulators still cover the FMA latency. The direct forms (axpy, dot) are left
// as the cost model picks them (the dot form stays ahead on the 16-channel filter gradients).
Tiling chooseTiling(const Kernel &k, const Gemm &g) {
  // A product kept in fp32 under bf16 (Gemm::fp32) is tiled as an fp32 one.
  CodegenOptions fp32;
  const CodegenOptions *o = k.opts;
  if (g.fp32 && o && o->bf16) {
    fp32 = *o;
    fp32.bf16 = false;
    o = &fp32;
  }
  Tiling t = chooseTiling(k.target(), o, k.maxBatch, g.staticM, g.staticK, g.staticN, g.transA, g.transB);
  const bool forced = o && (o->gemmMR || o->gemmNRV || o->gemmKind != GemmKind::Auto);
  if (!g.convolution || forced || t.bf16 || t.kind != GemmKind::Packed || t.VL != 16) return t;
  CodegenOptions narrow = o ? *o : CodegenOptions{};
  narrow.gemmMR = 8, narrow.gemmNRV = 1, narrow.gemmKind = GemmKind::Packed;
  return chooseTiling(k.target(), &narrow, k.maxBatch, g.staticM, g.staticK, g.staticN, g.transA, g.transB);
}

// `v` unchanged, through an empty inline-asm statement that instruction selection cannot see
// into. Between the rounds of a transpose it keeps the x86 DAG combiner from searching the whole
// chain of shuffles for a cheaper form (it finds none: one instruction per shuffle either way),
// which made a 16-lane transpose cost as much to compile as a GEMM kernel. `v` is any of the 32
// AVX-512 registers, `x` one of the 16 AVX/SSE ones; on a machine narrower than the vectors no
// register holds them, and the chain goes without barriers.
Value *registerBarrier(Kernel &k, Value *v) {
  const TargetInfo &target = k.target();
  if (!target.nativeVectors) return v;
  auto *type = llvm::FunctionType::get(v->getType(), {v->getType()}, false);
  const char *constraints = target.name == "avx512" ? "=v,0" : "=x,0";
  return k.b.CreateCall(llvm::InlineAsm::get(type, "", constraints, /*hasSideEffects=*/false), {v});
}

// Rows of a lanes × lanes block transposed: out[j][i] = rows[i][j]. log2(lanes) rounds of
// two-source shuffles, each exchanging the off-diagonal halves of ever smaller sub-blocks.
void transpose(Kernel &k, llvm::SmallVectorImpl<Value *> &rows) {
  const int V = (int)rows.size();
  for (int s = V / 2; s >= 1; s /= 2) {
    llvm::SmallVector<int, 16> lo(V), hi(V);
    for (int j = 0; j < V; ++j) {
      lo[j] = (j & s) == 0 ? j : V + j - s;
      hi[j] = (j & s) == 0 ? j + s : V + j;
    }
    for (int i = 0; i < V; ++i) {
      if (i & s) continue;
      Value *x = rows[i], *y = rows[i + s];
      rows[i] = k.b.CreateShuffleVector(x, y, lo);
      rows[i + s] = k.b.CreateShuffleVector(x, y, hi);
    }
    if (s > 1)
      for (Value *&row : rows) row = registerBarrier(k, row);
  }
}

void ifThenElse(Kernel &k, Value *cond, const std::function<void()> &then,
                const std::function<void()> &otherwise) {
  llvm::Function *fn = k.b.GetInsertBlock()->getParent();
  auto &ctx = k.b.getContext();
  auto *thenBlock = llvm::BasicBlock::Create(ctx, "then", fn);
  auto *elseBlock = llvm::BasicBlock::Create(ctx, "else", fn);
  auto *done = llvm::BasicBlock::Create(ctx, "endif", fn);
  k.b.CreateCondBr(cond, thenBlock, elseBlock);
  k.b.SetInsertPoint(thenBlock);
  then();
  k.b.CreateBr(done);
  k.b.SetInsertPoint(elseBlock);
  otherwise();
  k.b.CreateBr(done);
  k.b.SetInsertPoint(done);
}

// The building blocks every GEMM of a module shares, one function per (block, shape): the
// micro-kernel per register tile, the packing routines per layout. They are plain vector code
// already, so they are marked for the light optimisation pipeline (codegen::kLightPipeline).
class GemmParts {
 public:
  GemmParts(Kernel &k, const Tiling &t) : k(k), t(t), m(*k.b.GetInsertBlock()->getModule()) {}

  // void micro(ptr A, i64 rowStride, i64 kStride, i64 rows, ptr Bp, i64 kc, ptr tile):
  // tile[r·NRV + v] = Σ_kk A[r'·rowStride + kk·kStride] · Bp[kk][v·VL..], r' = min(r, rows − 1).
  // A is the broadcast operand wherever it lies: a packed panel (strides 1 and MR), or op(A) in
  // place — rows of A stored [M, K] (lda and 1) — since MR rows of one k slice stay in L1 while
  // B's panels stream past them, packing them buys nothing. Rows past `rows` repeat the last real
  // one; their sums are never stored.
  llvm::Function *micro() {
    std::string name = "mtlc.gemm.micro." + std::to_string(t.MR) + "x" + std::to_string(t.NRV) +
                       "v" + std::to_string(t.VL);
    auto &ctx = m.getContext();
    llvm::Type *ptr = llvm::PointerType::getUnqual(ctx), *i64 = llvm::Type::getInt64Ty(ctx);
    return define(name, {ptr, i64, i64, i64, ptr, i64, ptr}, [&](Kernel &h, llvm::Function *fn) {
      Value *aBase = fn->getArg(0), *rowStride = fn->getArg(1), *kStride = fn->getArg(2),
            *rows = fn->getArg(3), *bPanel = fn->getArg(4), *kc = fn->getArg(5), *tile = fn->getArg(6);
      const int VL = t.VL, MR = t.MR, NRV = t.NRV;
      llvm::SmallVector<Value *, 32> rowOffset;
      for (int r = 0; r < MR; ++r) rowOffset.push_back(h.mul(h.smin(h.c(r), h.sub(rows, h.c(1))), rowStride));
      llvm::SmallVector<Value *, 32> zeros(MR * NRV, llvm::Constant::getNullValue(h.vec(VL)));
      Carried acc = reduceLoop(h.b, h.c(0), kc, zeros, [&](Value *kk, llvm::ArrayRef<Value *> acc) {
        Value *bRow = h.at(bPanel, h.mul(kk, t.NR()));
        Value *aCol = h.at(aBase, h.mul(kk, kStride));
        llvm::SmallVector<Value *, 4> bv;
        for (int v = 0; v < NRV; ++v) bv.push_back(h.vload(VL, bRow, h.c(v * VL)));
        Carried next(acc.begin(), acc.end());
        for (int r = 0; r < MR; ++r) {
          Value *a = h.splat(VL, h.load(aCol, rowOffset[r]));
          for (int v = 0; v < NRV; ++v) next[r * NRV + v] = h.fma(a, bv[v], acc[r * NRV + v]);
        }
        return next;
      }, "k");
      for (int i = 0; i < MR * NRV; ++i) h.vstore(acc[i], tile, h.c(int64_t(i) * VL));
    });
  }

  // void packA(ptr A, i64 lda, i64 rows, i64 kc, ptr dst): rows × kc of op(A) starting at A
  // (already offset to the block; A stored [K, M]) into panels of MR rows, k-major, zero rows
  // past `rows`. (A stored [M, K] is read in place: micro() above.)
  llvm::Function *packA() {
    std::string name = "mtlc.gemm.packA.t" + std::to_string(t.MR) + "v" + std::to_string(t.VL);
    return define(name, packSignature(), [&](Kernel &h, llvm::Function *fn) {
      Value *A = fn->getArg(0), *lda = fn->getArg(1), *rows = fn->getArg(2), *kc = fn->getArg(3),
            *dst0 = fn->getArg(4);
      const int VL = t.VL, MR = t.MR, groups = (MR + VL - 1) / VL;
      llvm::IRBuilder<> &b = h.b;
      Value *panels = b.CreateUDiv(h.add(rows, MR - 1), h.c(MR));
      forLoop(b, panels, [&](Value *ip) {
        Value *dst = h.at(dst0, h.mul(ip, h.mul(kc, MR)));
        Value *r0 = h.mul(ip, MR);
        Value *rowsValid = h.smin(h.c(MR), h.sub(rows, r0));
        forLoop(b, kc, [&](Value *kk) {  // each k gives MR consecutive rows
          Value *src = h.add(h.mul(kk, lda), r0);
          for (int gi = 0; gi < groups; ++gi) {
            Value *mask = h.laneMask(VL, h.c(gi * VL), rowsValid);
            Value *v = h.maskedLoad(VL, A, h.add(src, gi * VL), mask);
            h.maskedStore(v, dst, h.add(h.mul(kk, MR), gi * VL), h.laneMask(VL, h.c(gi * VL), h.c(MR)));
          }
        }, "kk");
      }, "pa");
    });
  }

  // void packB(ptr B, i64 ldb, i64 cols, i64 kc, ptr dst): kc × cols of op(B) starting at B into
  // panels of NR columns, k-major, zero columns past `cols`.
  llvm::Function *packB(bool transB) {
    std::string name = std::string("mtlc.gemm.packB.") + (transB ? "t" : "n") +
                       std::to_string(t.NRV) + "v" + std::to_string(t.VL);
    return define(name, packSignature(), [&](Kernel &h, llvm::Function *fn) {
      Value *B = fn->getArg(0), *ldb = fn->getArg(1), *cols = fn->getArg(2), *kc = fn->getArg(3),
            *dst0 = fn->getArg(4);
      const int VL = t.VL, NR = t.NR(), NRV = t.NRV;
      llvm::IRBuilder<> &b = h.b;
      Value *panels = b.CreateUDiv(h.add(cols, NR - 1), h.c(NR));
      forLoop(b, panels, [&](Value *jp) {
        Value *dst = h.at(dst0, h.mul(jp, h.mul(kc, NR)));
        Value *c0 = h.mul(jp, NR);
        Value *colsValid = h.smin(h.c(NR), h.sub(cols, c0));
        if (!transB) {  // B stored [K, N]: rows are contiguous along the columns
          forLoop(b, kc, [&](Value *kk) {
            Value *src = h.add(h.mul(kk, ldb), c0);
            for (int v = 0; v < NRV; ++v) {
              Value *mask = h.laneMask(VL, h.c(v * VL), colsValid);
              h.vstore(h.maskedLoad(VL, B, h.add(src, v * VL), mask), dst, h.add(h.mul(kk, NR), v * VL));
            }
          }, "kk");
          return;
        }
        // B stored [N, K]: each column of op(B) is contiguous along k.
        transposingPanel(h, h.rawAt(B, h.mul(c0, ldb)), ldb, colsValid, kc, dst, NR);
      }, "pb");
    });
  }

  // ---- bf16 (CodegenOptions::bf16): operands packed as bf16 pairs, vdpbf16ps into fp32 ----
  // A packed bf16 panel of W lines holds, for each pair p of the slice's k (k = 2p, 2p + 1; a
  // missing k of an odd slice is 0), W 32-bit words: word p·W + j is line j's two values, the
  // lower k in the low half, as vdpbf16ps pairs them. Scratch counts words as floats: a slice of
  // kc floats per line packs into ceil(kc/2) words, so the fp32 layout's bounds hold.

  // void microBf16(ptr Ap, ptr Bp, i64 pairs, ptr tile): tile[r·NRV + v] = Σ_p Ap[p·MR + r] ⋅
  // Bp[p·NR + v·VL ..], each ⋅ one vdpbf16ps (two bf16 products added to the fp32 lane).
  llvm::Function *microBf16() {
    std::string name = "mtlc.gemm.microbf16." + std::to_string(t.MR) + "x" + std::to_string(t.NRV);
    auto &ctx = m.getContext();
    llvm::Type *ptr = llvm::PointerType::getUnqual(ctx), *i64 = llvm::Type::getInt64Ty(ctx);
    return define(name, {ptr, ptr, i64, ptr}, [&](Kernel &h, llvm::Function *fn) {
      Value *aPanel = fn->getArg(0), *bPanel = fn->getArg(1), *pairs = fn->getArg(2), *tile = fn->getArg(3);
      const int VL = t.VL, MR = t.MR, NRV = t.NRV;
      llvm::Type *pairsType = llvm::FixedVectorType::get(h.b.getBFloatTy(), 2 * VL);
      auto asPairs = [&](Value *v) { return h.b.CreateBitCast(v, pairsType); };
      llvm::SmallVector<Value *, 32> zeros(MR * NRV, llvm::Constant::getNullValue(h.vec(VL)));
      Carried acc = reduceLoop(h.b, h.c(0), pairs, zeros, [&](Value *p, llvm::ArrayRef<Value *> acc) {
        Value *bRow = h.at(bPanel, h.mul(p, t.NR()));
        Value *aCol = h.at(aPanel, h.mul(p, MR));
        llvm::SmallVector<Value *, 4> bv;
        for (int v = 0; v < NRV; ++v) bv.push_back(asPairs(h.vload(VL, bRow, h.c(v * VL))));
        Carried next(acc.begin(), acc.end());
        for (int r = 0; r < MR; ++r) {
          Value *a = asPairs(h.splat(VL, h.load(aCol, h.c(r))));
          for (int v = 0; v < NRV; ++v)
            next[r * NRV + v] = h.b.CreateIntrinsic(llvm::Intrinsic::x86_avx512bf16_dpbf16ps_512, {},
                                                    {acc[r * NRV + v], a, bv[v]});
        }
        return next;
      }, "p");
      for (int i = 0; i < MR * NRV; ++i) h.vstore(acc[i], tile, h.c(int64_t(i) * VL));
    });
  }

  // void packBf16(ptr src, i64 ld, i64 lines, i64 kc, ptr dst): `lines` lines × kc of an operand
  // into bf16 panels of W lines (the layout above), zero lines past `lines`; rounded to nearest
  // even by vcvtne2ps2bf16. `alongK`: each source line is contiguous along k (A stored [M, K], B
  // stored [N, K]); else each k is a source row contiguous along the lines.
  llvm::Function *packBf16(bool alongK, int W, const char *operand) {
    std::string name = std::string("mtlc.gemm.packbf16.") + operand + (alongK ? "k" : "l") + std::to_string(W);
    return define(name, packSignature(), [&](Kernel &h, llvm::Function *fn) {
      Value *src = fn->getArg(0), *ld = fn->getArg(1), *lines = fn->getArg(2), *kc = fn->getArg(3),
            *dst0 = fn->getArg(4);
      llvm::IRBuilder<> &b = h.b;
      Value *pairs = b.CreateUDiv(h.add(kc, 1), h.c(2));
      Value *panels = b.CreateUDiv(h.add(lines, W - 1), h.c(W));
      forLoop(b, panels, [&](Value *jp) {
        Value *dst = h.at(dst0, h.mul(jp, h.mul(pairs, W)));
        Value *line0 = h.mul(jp, W);
        Value *valid = h.smin(h.c(W), h.sub(lines, line0));
        Value *panelSrc = alongK ? h.rawAt(src, h.mul(line0, ld)) : h.rawAt(src, line0);
        if (alongK) pairsAlongK(h, panelSrc, ld, valid, kc, pairs, dst, W);
        else pairsAcrossRows(h, panelSrc, ld, valid, kc, pairs, dst, W);
      }, "panel");
    });
  }

 private:
  // Lines [line0, line0 + VL) of a panel as vectors, read(line) each: lines past `valid` read the
  // last real one and are zeroed by a select, those from `width` on are zero without a read.
  llvm::SmallVector<Value *, 16> panelBlock(Kernel &h, Value *line0, int width, Value *valid,
                                            const std::function<Value *(Value *line)> &read) {
    Value *lastLine = h.sub(valid, h.c(1));
    Value *zero = llvm::Constant::getNullValue(h.vec(t.VL));
    llvm::SmallVector<Value *, 16> blk;
    for (int jj = 0; jj < t.VL; ++jj) {
      if (jj >= width) {
        blk.push_back(zero);
        continue;
      }
      Value *line = h.add(line0, jj);
      blk.push_back(h.b.CreateSelect(h.b.CreateICmpSLT(line, valid), read(h.smin(line, lastLine)), zero));
    }
    return blk;
  }

  // Two fp32 vectors as one of VL words, each word a bf16 pair: word i = (lo[i], hi[i]) when
  // interleave, else the 2·VL values of lo then hi as consecutive pairs.
  Value *bf16Words(Kernel &h, Value *lo, Value *hi, bool interleave) {
    const int VL = t.VL;
    if (interleave) {
      llvm::SmallVector<int, 16> first, second;
      for (int i = 0; i < VL / 2; ++i) first.append({i, VL + i}), second.append({VL / 2 + i, VL + VL / 2 + i});
      Value *a = h.b.CreateShuffleVector(lo, hi, first), *c = h.b.CreateShuffleVector(lo, hi, second);
      lo = a, hi = c;
    }
    // vcvtne2ps2bf16(x, y): the low half of the result is y's values, the high half x's.
    Value *words = h.b.CreateIntrinsic(llvm::Intrinsic::x86_avx512bf16_cvtne2ps2bf16_512, {}, {hi, lo});
    return h.b.CreateBitCast(words, h.vec(VL));
  }

  // dst[p·W + j] = (src[2p·ld + j], src[(2p+1)·ld + j]) for j < valid, 0 for valid <= j < W: rows
  // 2p and 2p + 1 interleaved lane by lane.
  void pairsAcrossRows(Kernel &h, Value *src, Value *ld, Value *valid, Value *kc, Value *pairs, Value *dst, int W) {
    const int VL = t.VL, groups = (W + VL - 1) / VL;
    forLoop(h.b, pairs, [&](Value *p) {
      Value *k0 = h.mul(p, 2);
      Value *secondReal = h.splat(VL, h.b.CreateICmpSLT(h.add(k0, 1), kc));
      for (int gi = 0; gi < groups; ++gi) {
        Value *mask = h.laneMask(VL, h.c(gi * VL), valid);
        Value *row0 = h.maskedLoad(VL, src, h.add(h.mul(k0, ld), gi * VL), mask);
        Value *row1 = h.maskedLoad(VL, src, h.add(h.mul(h.add(k0, 1), ld), gi * VL), h.b.CreateAnd(mask, secondReal));
        Value *words = bf16Words(h, row0, row1, true);
        Value *at = h.add(h.mul(p, W), gi * VL);
        if ((gi + 1) * VL <= W) h.vstore(words, dst, at);
        else h.maskedStore(words, dst, at, h.laneMask(VL, h.c(gi * VL), h.c(W)));
      }
    }, "p");
  }

  // dst[p·W + j] = (src[j·ld + 2p], src[j·ld + 2p + 1]) for j < valid, 0 for valid <= j < W: VL
  // lines × 2·VL values (VL pairs) at a time, converted, then transposed as VL × VL words in
  // registers. The last block of k is read masked and lands through a stack buffer, of which only
  // its real pairs are copied.
  void pairsAlongK(Kernel &h, Value *src, Value *ld, Value *valid, Value *kc, Value *pairs, Value *dst, int W) {
    llvm::IRBuilder<> &b = h.b;
    const int VL = t.VL;
    llvm::AllocaInst *staging = nullptr;
    {
      llvm::BasicBlock &entry = b.GetInsertBlock()->getParent()->getEntryBlock();
      llvm::IRBuilder<> eb(&entry, entry.begin());
      staging = eb.CreateAlloca(h.vec(VL), eb.getInt32(VL), "staging");
      staging->setAlignment(llvm::Align(64));
    }
    // Lines [line0, line0 + width) × pairs [p0, p0 + VL); `realPairs` null: all VL are real.
    auto block = [&](Value *p0, Value *line0, int width, Value *realPairs) {
      Value *k0 = h.mul(p0, 2);
      Value *mask0 = realPairs ? h.laneMask(VL, k0, kc) : nullptr;
      Value *mask1 = realPairs ? h.laneMask(VL, h.add(k0, VL), kc) : nullptr;
      auto blk = panelBlock(h, line0, width, valid, [&](Value *line) {
        Value *at = h.add(h.mul(line, ld), k0);
        Value *lo = realPairs ? h.maskedLoad(VL, src, at, mask0) : h.vload(VL, src, at);
        Value *hi = realPairs ? h.maskedLoad(VL, src, h.add(at, VL), mask1) : h.vload(VL, src, h.add(at, VL));
        return bf16Words(h, lo, hi, false);
      });
      transpose(h, blk);
      Value *lineMask = width == VL ? nullptr : h.laneMask(VL, h.c(0), h.c(width));
      auto put = [&](Value *v, Value *p) {
        Value *at = h.add(h.mul(p, W), line0);
        if (lineMask) h.maskedStore(v, dst, at, lineMask);
        else h.vstore(v, dst, at);
      };
      if (!realPairs) {
        for (int tt = 0; tt < VL; ++tt) put(blk[tt], h.add(p0, tt));
        return;
      }
      for (int tt = 0; tt < VL; ++tt) h.vstore(blk[tt], staging, h.c(int64_t(tt) * VL));
      forLoop(b, realPairs, [&](Value *tt) { put(h.vload(VL, staging, h.mul(tt, VL)), h.add(p0, tt)); }, "tt");
    };
    const int fullGroups = W / VL, tail = W - fullGroups * VL;
    auto lineGroups = [&](Value *p0, Value *realPairs) {
      if (fullGroups == 1) block(p0, h.c(0), VL, realPairs);
      else if (fullGroups > 1)
        forLoop(b, h.c(fullGroups), [&](Value *gi) { block(p0, h.mul(gi, VL), VL, realPairs); }, "g");
      if (tail > 0) block(p0, h.c(int64_t(fullGroups) * VL), tail, realPairs);
    };
    Value *fullBlocks = b.CreateUDiv(kc, h.c(2 * VL));
    forLoop(b, fullBlocks, [&](Value *pb) { lineGroups(h.mul(pb, VL), nullptr); }, "pb");
    Value *p0 = h.mul(fullBlocks, VL);
    Value *left = h.sub(pairs, p0);
    ifThenElse(h, b.CreateICmpSGT(left, h.c(0)), [&] { lineGroups(p0, left); }, [] {});
  }

  // dst[kk·W + j] = src[j·ld + kk] for j < valid, 0 for valid <= j < W, kk < kc: one panel of a
  // packed block whose source lines (columns of op(B)) are contiguous along k, VL×VL blocks at a
  // time, transposed in registers; the k remainder (kc mod VL) element by element.
  void transposingPanel(Kernel &h, Value *src, Value *ld, Value *valid, Value *kc, Value *dst, int W) {
    llvm::IRBuilder<> &b = h.b;
    const int VL = t.VL;
    Value *lastLine = h.sub(valid, h.c(1));
    auto elementwise = [&](Value *kBegin) {
      forLoop(b, kBegin, kc, [&](Value *kk) {
        forLoop(b, h.c(W), [&](Value *j) {
          Value *line = h.smin(j, lastLine);  // a real line, read but discarded past `valid`
          Value *v = h.load(src, h.add(h.mul(line, ld), kk));
          h.store(b.CreateSelect(b.CreateICmpSLT(j, valid), v, h.f32(0)), dst, h.add(h.mul(kk, W), j));
        }, "j");
      }, "kt");
    };
    Value *kBlocks = b.CreateUDiv(kc, h.c(VL));
    // One VL×VL block: lines [line0, line0 + width) of the panel at k0, the rest zero. In a
    // partial panel (the edge of op(B), valid < W) lines past `valid` read the last real one and
    // are zeroed by a select: every panel goes through the transposes (element by element, a
    // head's 10-column panel had cost more than its products).
    auto block = [&](Value *k0, Value *line0, int width) {
      auto blk = panelBlock(h, line0, width, valid, [&](Value *line) { return h.vload(VL, src, h.add(h.mul(line, ld), k0)); });
      transpose(h, blk);
      for (int tt = 0; tt < VL; ++tt) {
        Value *at = h.add(h.mul(h.add(k0, tt), W), line0);
        if (width == VL) h.vstore(blk[tt], dst, at);
        else h.maskedStore(blk[tt], dst, at, h.laneMask(VL, h.c(0), h.c(width)));
      }
    };
    // The full groups of VL lines in a loop rather than unrolled: one transpose in the code
    // instead of W/VL (a 4-group panel's shuffles were a third of a module's instruction
    // selection time), at the cost of a loop counter.
    const int fullGroups = W / VL, tail = W - fullGroups * VL;
    forLoop(b, kBlocks, [&](Value *kb) {
      Value *k0 = h.mul(kb, VL);
      if (fullGroups == 1) block(k0, h.c(0), VL);
      else if (fullGroups > 1) forLoop(b, h.c(fullGroups), [&](Value *gi) { block(k0, h.mul(gi, VL), VL); }, "g");
      if (tail > 0) block(k0, h.c(int64_t(fullGroups) * VL), tail);
    }, "kb");
    elementwise(h.mul(kBlocks, VL));
  }

  // The packing routines' parameters: source, its leading dimension, lines, kc, destination.
  std::vector<llvm::Type *> packSignature() {
    auto &ctx = m.getContext();
    llvm::Type *ptr = llvm::PointerType::getUnqual(ctx), *i64 = llvm::Type::getInt64Ty(ctx);
    return {ptr, i64, i64, i64, ptr};
  }

  // An internal, non-inlined function of the given parameters, defined once per module. Its
  // pointers do not alias; all but the last (the destination) are read-only.
  llvm::Function *define(const std::string &name, const std::vector<llvm::Type *> &types,
                         const std::function<void(Kernel &, llvm::Function *)> &body) {
    if (llvm::Function *existing = m.getFunction(name)) return existing;
    auto &ctx = m.getContext();
    auto *fn = llvm::Function::Create(llvm::FunctionType::get(llvm::Type::getVoidTy(ctx), types, false),
                                      llvm::Function::InternalLinkage, name, m);
    fn->setDoesNotThrow();
    fn->addFnAttr(llvm::Attribute::NoInline);
    fn->addFnAttr(kLightPipeline);
    for (unsigned i = 0; i < types.size(); ++i)
      if (types[i]->isPointerTy()) {
        fn->addParamAttr(i, llvm::Attribute::NoAlias);
        fn->addParamAttr(i, llvm::Attribute::NoCapture);
      }
    for (unsigned i = 0; i + 1 < types.size(); ++i)
      if (types[i]->isPointerTy()) fn->addParamAttr(i, llvm::Attribute::ReadOnly);
    llvm::IRBuilder<> hb(llvm::BasicBlock::Create(ctx, "entry", fn));
    Kernel h{hb, k.node, nullptr, {}, nullptr, nullptr, nullptr, k.opts, k.maxBatch, {}, nullptr};
    body(h, fn);
    hb.CreateRetVoid();
    return fn;
  }

  Kernel &k;
  const Tiling &t;
  llvm::Module &m;
};

class GemmEmitter {
 public:
  GemmEmitter(Kernel &k, const Gemm &g) : k(k), b(k.b), g(g), t(chooseTiling(k, g)) {}

  // The same GEMM emitted through another kernel view (a parallel body's): shares every value.
  GemmEmitter(Kernel &h, const GemmEmitter &parent)
      : k(h), b(h.b), g(parent.g), t(parent.t), lda(parent.lda), ldb(parent.ldb), ldc(parent.ldc),
        packBase(parent.packBase), slotFloats(parent.slotFloats), slotAFloats(parent.slotAFloats),
        kBlocks(parent.kBlocks), kStep(parent.kStep), fnMicro(parent.fnMicro), fnPackA(parent.fnPackA),
        fnPackB(parent.fnPackB), singleSlice(parent.singleSlice) {}

  void emit() {
    lda = g.lda ? g.lda : (g.transA ? g.M : g.K);
    ldb = g.ldb ? g.ldb : (g.transB ? g.K : g.N);
    ldc = g.ldc ? g.ldc : g.N;
    if (t.kind == GemmKind::Axpy) return emitAxpy();
    if (t.kind == GemmKind::Dot) return emitDot();
    layoutScratch();
    GemmParts functions(k, t);
    if (t.bf16) {
      fnMicro = functions.microBf16();
      fnPackB = functions.packBf16(g.transB, t.NR(), "b");
      fnPackA = functions.packBf16(!g.transA, t.MR, "a");
    } else {
      fnMicro = functions.micro(), fnPackB = functions.packB(g.transB);
      if (!directA()) fnPackA = functions.packA();
    }

    // K in kBlocks slices of kStep (the last may be shorter): even slices, no sliver at the end.
    // bf16: kStep even, so that only the last slice may end in half a pair (every slice starts a
    // pair; the slices may then cover K before the last, which multiplies nothing).
    singleSlice = g.staticK >= 0 && g.staticK <= t.KC;
    kBlocks = singleSlice ? k.c(1) : b.CreateUDiv(k.add(g.K, t.KC - 1), k.c(t.KC));
    kStep = singleSlice ? g.K : b.CreateUDiv(k.sub(k.add(g.K, kBlocks), k.c(1)), kBlocks);
    if (t.bf16 && !singleSlice) kStep = k.mul(b.CreateUDiv(k.add(kStep, 1), k.c(2)), 2);

    // Threads: C is cut into one band of rows (or of columns) per slot, and each slot runs the
    // serial loop nest over its band with panels of its own, so nothing one thread packs is read
    // by another and no thread waits for another inside the product. A row split repacks all of
    // B in every slot, a column split all of A: the split taken is the one whose slowest slot
    // (its share of the tiles, rounded up to whole panels, plus its packing) finishes first, or
    // g.prefer's unless that is kPreferSlack slower, and none when that saves less than a fork
    // and join. Each C element's sum over k runs in the same order either way, so the thread
    // count cannot change results.
    Value *mPanels = b.CreateUDiv(k.add(g.M, t.MR - 1), k.c(t.MR));
    Value *nPanels = b.CreateUDiv(k.add(g.N, t.NR() - 1), k.c(t.NR()));
    if (g.slots <= 1 || !k.args) return subGemm(k.c(0), g.M, k.c(0), g.N, slot(k, k.c(0)));
    Value *threads = b.CreateSExt(loadArgsField(b, k.args, ArgsField::Threads), b.getInt64Ty());
    Value *slots = k.smax(k.smin(threads, k.c(g.slots)), k.c(1));
    Value *sm = k.smax(k.smin(slots, mPanels), k.c(1)), *sn = k.smax(k.smin(slots, nPanels), k.c(1));
    auto f = [&](Value *v) { return b.CreateSIToFP(v, b.getDoubleTy()); };
    auto cyc = [&](double c) { return llvm::ConstantFP::get(b.getDoubleTy(), c); };
    const double kPreferSlack = 1.15;
    const double macsPerCycle = 1.4 * t.VL;  // the micro-kernel's measured rate, about 70% of peak
    const double packA = g.transA ? 0.15 : 0, packB = g.transB ? 0.4 : 0.15;  // cycles per float
    Value *M = f(g.M), *N = f(g.N), *K = f(g.K);
    // Cycles of the slowest of `parts` bands of `panels` panels of `extent` lines, each line
    // `other` long: its tiles, packing its own lines, and packing all of the other operand.
    auto bandTime = [&](Value *panels, Value *parts, int extent, Value *other, double packOwn, double packOther) {
      Value *share = f(k.mul(b.CreateUDiv(k.add(panels, k.sub(parts, k.c(1))), parts), k.c(extent)));
      Value *compute = b.CreateFDiv(b.CreateFMul(b.CreateFMul(share, other), K), cyc(macsPerCycle));
      Value *own = b.CreateFMul(b.CreateFMul(share, K), cyc(packOwn));
      Value *all = b.CreateFMul(b.CreateFMul(other, K), cyc(packOther));
      return b.CreateFAdd(compute, b.CreateFAdd(own, all));
    };
    Value *rowTime = bandTime(mPanels, sm, t.MR, N, packA, packB);
    Value *colTime = bandTime(nPanels, sn, t.NR(), M, packB, packA);
    Value *serial = bandTime(mPanels, k.c(1), t.MR, N, packA, packB);
    Value *byRows = b.CreateFCmpOLE(rowTime, colTime);
    if (g.prefer == Gemm::Split::Rows) byRows = b.CreateFCmpOLE(rowTime, b.CreateFMul(colTime, cyc(kPreferSlack)));
    if (g.prefer == Gemm::Split::Cols) byRows = b.CreateFCmpOGT(colTime, b.CreateFMul(rowTime, cyc(kPreferSlack)));
    if (k.opts && k.opts->gemmSplit) byRows = b.getInt1(k.opts->gemmSplit == 1);
    Value *parts = b.CreateSelect(byRows, sm, sn);
    Value *best = b.CreateSelect(byRows, rowTime, colTime);
    Value *worth = b.CreateFCmpOLT(b.CreateFAdd(best, cyc(10000)), serial);  // a fork/join ~3 µs
    if (k.opts && k.opts->parallelAlways) worth = b.getTrue();
    parts = b.CreateSelect(worth, parts, k.c(1));
    parallelFor(k, parts, nullptr, [&](Kernel &h, Value *s0, Value *s1) {
      GemmEmitter e(h, *this);
      forLoop(h.b, s0, s1, [&](Value *s) {
        // Band s of `parts`: whole panels, the last band ending at the matrix's edge.
        auto band = [&](Value *panels, int extent, Value *limit) {
          Value *p0 = h.b.CreateUDiv(h.mul(panels, s), parts);
          Value *p1 = h.b.CreateUDiv(h.mul(panels, h.add(s, h.c(1))), parts);
          return std::pair{h.mul(p0, extent), h.smin(h.mul(p1, extent), limit)};
        };
        auto [r0, r1] = band(mPanels, t.MR, g.M);
        auto [c0, c1] = band(nPanels, t.NR(), g.N);
        r0 = h.b.CreateSelect(byRows, r0, h.c(0)), r1 = h.b.CreateSelect(byRows, r1, g.M);
        c0 = h.b.CreateSelect(byRows, h.c(0), c0), c1 = h.b.CreateSelect(byRows, g.N, c1);
        e.subGemm(r0, r1, c0, c1, e.slot(h, s));
      }, "slot");
    });
  }

  // The packing buffers of slot s: A's panels, then B's, each 64-byte aligned.
  std::pair<Value *, Value *> slot(Kernel &h, Value *s) {
    Value *base = h.at(packBase, h.mul(s, h.c(slotFloats)));
    return {base, h.at(base, h.c(slotAFloats))};
  }

  // C[r0:r1, c0:c1] on this thread, with the panels in `panels` (the serial loop nest above).
  // Row and column blocks are even (multiples of the register tile), so no sliver block is left.
  void subGemm(Value *r0, Value *r1, Value *c0, Value *c1, std::pair<Value *, Value *> panels) {
    Kernel &h = k;
    llvm::IRBuilder<> &hb = b;
    if (!tile) allocTile();
    auto evenStep = [&](Value *extent, int64_t block, int unit) {
      Value *blocks = h.smax(hb.CreateUDiv(h.add(extent, block - 1), h.c(block)), h.c(1));
      Value *step = hb.CreateUDiv(h.add(extent, h.sub(blocks, h.c(1))), blocks);
      return std::pair{blocks, h.mul(hb.CreateUDiv(h.add(step, unit - 1), h.c(unit)), h.c(unit))};
    };
    Value *mLen = h.smax(h.sub(r1, r0), h.c(0)), *nLen = h.smax(h.sub(c1, c0), h.c(0));
    auto [mBlocks, mStep] = evenStep(mLen, t.MB, t.MR);
    auto [nBlocks, nStep] = evenStep(nLen, t.NB, t.NR());
    Value *packA = panels.first, *packB = panels.second;
    Value *nonEmpty = hb.CreateAnd(hb.CreateICmpSGT(mLen, h.c(0)), hb.CreateICmpSGT(nLen, h.c(0)));
    ifThenElse(h, nonEmpty, [&] {
      forLoop(hb, mBlocks, [&](Value *ib) {
        Value *ic = h.add(r0, h.mul(ib, mStep));
        Value *mc = h.smin(mStep, h.sub(r1, ic));
        Value *mp = hb.CreateUDiv(h.add(mc, t.MR - 1), h.c(t.MR));
        forLoop(hb, kBlocks, [&](Value *pb) {
          Value *pc = h.mul(pb, kStep);
          Value *kc = h.smax(h.smin(kStep, h.sub(g.K, pc)), h.c(0));
          Value *pairs = hb.CreateUDiv(h.add(kc, 1), h.c(2));  // bf16: words per panel line
          Value *first = hb.CreateICmpEQ(pb, h.c(0));
          Value *last = hb.CreateICmpEQ(pb, h.sub(kBlocks, h.c(1)));
          Value *aBlock = h.rawAt(g.A, g.transA ? h.add(h.mul(pc, lda), ic) : h.add(h.mul(ic, lda), pc));
          if (!directA()) hb.CreateCall(fnPackA, {aBlock, lda, mc, kc, packA});
          forLoop(hb, nBlocks, [&](Value *jb) {
            Value *jc = h.add(c0, h.mul(jb, nStep));
            Value *nc = h.smin(nStep, h.sub(c1, jc));
            Value *np = hb.CreateUDiv(h.add(nc, t.NR() - 1), h.c(t.NR()));
            Value *bBlock = h.rawAt(g.B, g.transB ? h.add(h.mul(jc, ldb), pc) : h.add(h.mul(pc, ldb), jc));
            hb.CreateCall(fnPackB, {bBlock, ldb, nc, kc, packB});
            forLoop(hb, mp, [&](Value *ip) {
              Value *i0 = h.add(ic, h.mul(ip, t.MR));
              Value *rows = h.smin(h.c(t.MR), h.sub(mc, h.mul(ip, t.MR)));
              // A's MR rows in place (rows past the edge repeat the last), or its packed panel
              // (zero-padded to MR rows).
              Value *aPanel = directA() ? h.rawAt(aBlock, h.mul(h.mul(ip, t.MR), lda))
                                        : h.at(packA, h.mul(ip, h.mul(t.bf16 ? pairs : kc, t.MR)));
              Value *rowStride = directA() ? lda : h.c(1), *kStride = directA() ? h.c(1) : h.c(t.MR);
              Value *panelRows = directA() ? rows : h.c(t.MR);
              forLoop(hb, np, [&](Value *jp) {
                Value *bPanel = h.at(packB, h.mul(jp, h.mul(t.bf16 ? pairs : kc, t.NR())));
                Value *j0 = h.add(jc, h.mul(jp, t.NR()));
                Value *cols = h.smin(h.c(t.NR()), h.sub(nc, h.mul(jp, t.NR())));
                if (t.bf16) hb.CreateCall(fnMicro, {aPanel, bPanel, pairs, tile});
                else hb.CreateCall(fnMicro, {aPanel, rowStride, kStride, panelRows, bPanel, kc, tile});
                storeTile(i0, rows, j0, cols, first, last);
              }, "jp");
            }, "ip");
          }, "jb");
        }, "pb");
      }, "ib");
    }, [] {});
  }

  // The register tile reaches the store code through a stack buffer in the function being
  // emitted (one per thread): a few dozen vectors per tile, against MR·NRV·kc multiply-adds.
  void allocTile() {
    llvm::BasicBlock &entry = b.GetInsertBlock()->getParent()->getEntryBlock();
    llvm::IRBuilder<> eb(&entry, entry.begin());
    tile = eb.CreateAlloca(k.vec(t.VL), eb.getInt32(t.MR * t.NRV), "tile");
    tile->setAlignment(llvm::Align(64));
  }

  // Runs tileBody(e, it, jt) for every (row tile, column tile) of the direct forms, the flattened
  // tile range split across threads.
  void forTilesParallel(Value *mTiles, Value *nTiles,
                        const std::function<void(GemmEmitter &e, Value *it, Value *jt)> &tileBody) {
    Value *work = k.mul(k.mul(g.M, g.N), g.K);
    parallelFor(k, k.mul(mTiles, nTiles), b.CreateICmpSGE(work, k.c(int64_t(1) << 18)),
                [&](Kernel &h, Value *t0, Value *t1) {
                  GemmEmitter e(h, *this);
                  e.allocTile();
                  forLoop(h.b, t0, t1, [&](Value *ti) {
                    tileBody(e, h.b.CreateUDiv(ti, nTiles), h.b.CreateURem(ti, nTiles));
                  }, "t");
                });
  }

 private:
  // A stored [M, K] feeds the micro-kernel in place; stored [K, M] (transposed), or as bf16, it
  // is packed.
  bool directA() const { return !g.transA && !t.bf16; }

  // Row (or column) indices i0 + r for r < count, clamped to the last real one: edge tiles compute
  // on copies of a real line, whose results the masked stores then drop.
  llvm::SmallVector<Value *, 8> clampedLines(Value *i0, int count, Value *extent) {
    llvm::SmallVector<Value *, 8> lines;
    Value *lastLine = k.sub(extent, k.c(1));
    for (int r = 0; r < count; ++r) lines.push_back(k.smin(k.add(i0, r), lastLine));
    return lines;
  }

  // A(i, k) of op(A) for the broadcast forms.
  Value *elementA(Value *i, Value *kk) {
    return k.load(g.A, g.transA ? k.add(k.mul(kk, lda), i) : k.add(k.mul(i, lda), kk));
  }

  // The register tile straight from A and B ([K, N]): no packing, one pass over K.
  void emitAxpy() {
    singleSlice = true;
    const int MR = t.MR, NR = t.NR();
    Value *mTiles = b.CreateUDiv(k.add(g.M, MR - 1), k.c(MR));
    Value *nTiles = b.CreateUDiv(k.add(g.N, NR - 1), k.c(NR));
    forTilesParallel(mTiles, nTiles, [&](GemmEmitter &e, Value *it, Value *jt) { e.axpyTile(it, jt); });
  }

  void axpyTile(Value *it, Value *jt) {
    const int VL = t.VL, MR = t.MR, NRV = t.NRV, NR = t.NR();
    Value *i0 = k.mul(it, MR);
    Value *rows = k.smin(k.c(MR), k.sub(g.M, i0));
    auto lines = clampedLines(i0, MR, g.M);
    Value *j0 = k.mul(jt, NR);
    Value *cols = k.smin(k.c(NR), k.sub(g.N, j0));
    llvm::SmallVector<Value *, 4> masks;
    for (int v = 0; v < NRV; ++v) masks.push_back(k.laneMask(VL, k.c(v * VL), cols));
    llvm::SmallVector<Value *, 32> zeros(MR * NRV, llvm::Constant::getNullValue(k.vec(VL)));
    Carried acc = reduceLoop(b, k.c(0), g.K, zeros, [&](Value *kk, llvm::ArrayRef<Value *> acc) {
      Value *bRow = k.add(k.mul(kk, ldb), j0);
      llvm::SmallVector<Value *, 4> bv;
      for (int v = 0; v < NRV; ++v) bv.push_back(k.maskedLoad(VL, g.B, k.add(bRow, v * VL), masks[v]));
      Carried next(acc.begin(), acc.end());
      for (int r = 0; r < MR; ++r) {
        Value *a = k.splat(VL, elementA(lines[r], kk));
        for (int v = 0; v < NRV; ++v) next[r * NRV + v] = k.fma(a, bv[v], acc[r * NRV + v]);
      }
      return next;
    }, "k");
    for (int i = 0; i < MR * NRV; ++i) k.vstore(acc[i], tile, k.c(int64_t(i) * VL));
    storeTile(i0, rows, j0, cols, b.getTrue(), b.getTrue());
  }

  // C = A·Bᵀ with A [M, K] and B [N, K]: MR×NC lane-wise partial dot products over k, then lane
  // sums into row r of the tile buffer (lanes 0..NC-1).
  void emitDot() {
    singleSlice = true;
    Value *mTiles = b.CreateUDiv(k.add(g.M, t.MR - 1), k.c(t.MR));
    Value *nTiles = b.CreateUDiv(k.add(g.N, t.NC - 1), k.c(t.NC));
    forTilesParallel(mTiles, nTiles, [&](GemmEmitter &e, Value *it, Value *jt) { e.dotTile(it, jt); });
  }

  void dotTile(Value *it, Value *jt) {
    const int VL = t.VL, MR = t.MR, NC = t.NC;
    Value *kVectors = b.CreateUDiv(g.K, k.c(VL));
    Value *kTail = k.mul(kVectors, VL);
    Value *i0 = k.mul(it, MR);
    Value *rows = k.smin(k.c(MR), k.sub(g.M, i0));
    llvm::SmallVector<Value *, 8> aRows;
    for (Value *line : clampedLines(i0, MR, g.M)) aRows.push_back(k.mul(line, lda));
    Value *j0 = k.mul(jt, NC);
    Value *cols = k.smin(k.c(NC), k.sub(g.N, j0));
    llvm::SmallVector<Value *, 16> bRows;
    for (Value *line : clampedLines(j0, NC, g.N)) bRows.push_back(k.mul(line, ldb));
    auto step = [&](Value *k0, Value *mask, llvm::ArrayRef<Value *> acc) {
      auto get = [&](Value *base, Value *row) {
        return mask ? k.maskedLoad(VL, base, k.add(row, k0), mask) : k.vload(VL, base, k.add(row, k0));
      };
      llvm::SmallVector<Value *, 8> a;
      for (int r = 0; r < MR; ++r) a.push_back(get(g.A, aRows[r]));
      Carried next(acc.begin(), acc.end());
      for (int c = 0; c < NC; ++c) {
        Value *bv = get(g.B, bRows[c]);
        for (int r = 0; r < MR; ++r) next[r * NC + c] = k.fma(a[r], bv, acc[r * NC + c]);
      }
      return next;
    };
    llvm::SmallVector<Value *, 32> zeros(MR * NC, llvm::Constant::getNullValue(k.vec(VL)));
    Carried acc = reduceLoop(b, k.c(0), kVectors, zeros, [&](Value *kv, llvm::ArrayRef<Value *> acc) {
      return step(k.mul(kv, VL), nullptr, acc);
    }, "kv");
    if (!(g.staticK >= 0 && g.staticK % VL == 0)) acc = step(kTail, k.laneMask(VL, kTail, g.K), acc);
    for (int r = 0; r < MR; ++r) {
      Value *row = llvm::Constant::getNullValue(k.vec(VL));
      for (int c = 0; c < NC; ++c) {
        auto *sum = b.CreateFAddReduce(llvm::ConstantFP::get(b.getFloatTy(), -0.0), acc[r * NC + c]);
        llvm::cast<llvm::Instruction>(sum)->setHasAllowReassoc(true);
        row = b.CreateInsertElement(row, sum, uint64_t(c));
      }
      k.vstore(row, tile, k.c(int64_t(r) * VL));
    }
    storeTile(i0, rows, j0, cols, b.getTrue(), b.getTrue());
  }

  // The scratch holds g.slots slots, each A's packed block, then B's, each 64-byte aligned.
  void layoutScratch() {
    if (!g.pack) throw std::logic_error("emitGemm: no packing scratch");
    auto up = [](int64_t v, int64_t to) { return (v + to - 1) / to * to; };
    // Extents that are the batch size n are at most k.maxBatch (the plan's bound too).
    const int64_t batch = std::max<int64_t>(k.maxBatch, 1);
    auto bound = [&](int64_t e, int64_t block) { return std::min(e < 0 ? batch : e, block); };
    int64_t kcMax = bound(g.staticK, t.KC), mbMax = bound(g.staticM, t.MB), nbMax = bound(g.staticN, t.NB);
    slotAFloats = up(kcMax * ceilDiv(mbMax, t.MR) * t.MR, 16);
    slotFloats = gemmSlotFloats(g.staticM, g.staticK, g.staticN, batch);
    if (slotAFloats + up(kcMax * ceilDiv(nbMax, t.NR()) * t.NR(), 16) > slotFloats)
      throw std::logic_error("emitGemm: packing needs more scratch than the plan reserves");
    packBase = b.CreateIntrinsic(llvm::Intrinsic::ptrmask, {b.getPtrTy(), b.getInt64Ty()},
                                 {k.at(g.pack, k.c(15)), b.getInt64(~int64_t(63))});
  }

  // Writes the register tile (in `tile`) to C rows [i0, i0+rows), columns [j0, j0+cols): a loop
  // over the real rows, NRV masked vectors each.
  void storeTile(Value *i0, Value *rows, Value *j0, Value *cols, Value *first, Value *last) {
    // C's previous value joins the sum when accumulating or on every slice after the first.
    Value *loadOld = g.accumulate ? b.getTrue() : singleSlice ? b.getFalse() : b.CreateNot(first);
    llvm::SmallVector<Value *, 4> masks;
    for (int v = 0; v < t.NRV; ++v) masks.push_back(k.laneMask(t.VL, k.c(v * t.VL), cols));
    auto variant = [&](bool withEpilogue) {
      forLoop(b, rows, [&](Value *r) {
        Value *row = k.add(i0, r);
        for (int v = 0; v < t.NRV; ++v) {
          Value *col = k.add(j0, v * t.VL);
          Value *index = k.add(k.mul(row, ldc), col);
          Value *value = k.vload(t.VL, tile, k.mul(k.add(k.mul(r, t.NRV), k.c(v)), t.VL));
          if (auto *known = llvm::dyn_cast<llvm::ConstantInt>(loadOld); known && known->isOne()) {
            value = b.CreateFAdd(k.maskedLoad(t.VL, g.C, index, masks[v]), value);
          } else if (!known) {
            // A branch rather than a mask with loadOld: a masked load with every lane off still
            // costs hundreds of cycles on Zen 1 (the batch-1 MLP's first dW product halves with the
            // branch).
            llvm::BasicBlock *from = b.GetInsertBlock();
            auto *withOld = llvm::BasicBlock::Create(b.getContext(), "old", from->getParent());
            auto *join = llvm::BasicBlock::Create(b.getContext(), "old.done", from->getParent());
            b.CreateCondBr(loadOld, withOld, join);
            b.SetInsertPoint(withOld);
            Value *sum = b.CreateFAdd(k.maskedLoad(t.VL, g.C, index, masks[v]), value);
            llvm::BasicBlock *withOldEnd = b.GetInsertBlock();
            b.CreateBr(join);
            b.SetInsertPoint(join);
            llvm::PHINode *phi = b.CreatePHI(value->getType(), 2);
            phi->addIncoming(value, from);
            phi->addIncoming(sum, withOldEnd);
            value = phi;
          }
          if (withEpilogue)
            if (Value *out = g.epilogue(k, value, TileSite{row, col, masks[v]})) value = out;
          k.maskedStore(value, g.C, index, masks[v]);
        }
      }, "r");
    };
    if (!g.epilogue) return variant(false);
    if (singleSlice) return variant(true);
    ifThenElse(k, last, [&] { variant(true); }, [&] { variant(false); });
  }

  Kernel &k;
  llvm::IRBuilder<> &b;
  const Gemm &g;
  Tiling t;
  Value *lda = nullptr, *ldb = nullptr, *ldc = nullptr;
  Value *packBase = nullptr;                // slot 0's A panels (64-byte aligned)
  int64_t slotFloats = 0, slotAFloats = 0;  // a slot's size; where its B panels start
  Value *kBlocks = nullptr, *kStep = nullptr;
  llvm::Function *fnMicro = nullptr, *fnPackA = nullptr, *fnPackB = nullptr;
  llvm::AllocaInst *tile = nullptr;
  bool singleSlice = false;
};

}  // namespace

void emitGemm(Kernel &k, const Gemm &g) { GemmEmitter(k, g).emit(); }

std::string gemmChoice(const TargetInfo &target, const CodegenOptions *opts, int64_t maxBatch, int64_t M,
                       int64_t K, int64_t N, bool transA, bool transB) {
  return describe(chooseTiling(target, opts, maxBatch, M, K, N, transA, transB));
}

}  // namespace mtlc::codegen
