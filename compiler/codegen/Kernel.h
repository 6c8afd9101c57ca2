// What every op emitter gets: an IRBuilder positioned in the body of the node's kernel function,
// the node, and the kernel's arguments (result pointer, one pointer per operand, batch size n,
// dropout seed), plus small helpers for index arithmetic, float memory and math.
//
// Each node is a call, in graph order, to an internal kernel function
//     void @k<number>.<mnemonic>[.<node name>](ptr noalias %out, ptr noalias readonly %in0, ...,
//                                              [ptr noalias %scratch,] i64 %n, i64 %seed)
// shared by all nodes with the same op, types and attributes. The noalias markings are valid
// because the memory plan gives every computed node its own storage (no in-place updates); the
// one exception, state a kernel updates in place (ir::updatesOperand: batchnorm's running
// statistics), is a parameter nothing else in the call writes, and its pointer is not readonly.
#pragma once

#include "Codegen.h"
#include "ir/IR.h"

#include <llvm/IR/IRBuilder.h>

#include <functional>

namespace mtlc::codegen {

// Function attribute of generated code that is explicit vector code already (GEMM micro-kernels,
// packing): optimizeModule skips the loop vectoriser, unrollers and other loop passes on it.
inline constexpr const char *kLightPipeline = "mtlc-light";

struct ElementSite;

struct Kernel {
  llvm::IRBuilder<> &b;
  const ir::Node &node;
  llvm::Value *out;                      // float *: the node's result
  llvm::SmallVector<llvm::Value *, 3> in;  // float *: one per operand
  llvm::Value *n;                        // i64: samples in this batch
  llvm::Value *seed;                     // i64: dropout stream
  llvm::Value *scratch = nullptr;        // float *: working memory (kernelScratchFloats), or null
  const CodegenOptions *opts = nullptr;  // target vector shape, tiling overrides (null: defaults)
  int64_t maxBatch = 1;                  // the module's largest n (sizes blocks when M or K is n)
  // The fused chain after this kernel's root (empty when it stands alone): maps root values to
  // the group's result at one element (or a vector of consecutive elements, see ElementSite).
  // Root emitters call it on each finished value right before its single store. EmitFusion.cpp.
  std::function<llvm::Value *(Kernel &k, llvm::Value *v, const ElementSite &site)> chain;
  llvm::Value *args = nullptr;           // const mtlc_args *: the call's record (threads), or null
  // A fused per-sample prologue (passes/Fusion.h): writes sample `sample` (i64) of the value the
  // root reads as its dy (its in[] entry is then null) into `into`, that value's per-sample floats
  // of working memory. Empty when the root reads it from memory. EmitFusion.cpp.
  std::function<void(Kernel &k, llvm::Value *sample, llvm::Value *into)> prologue;
  // Where the group's siblings (bias_grad of the prologue's value) store their results, in order.
  llvm::SmallVector<llvm::Value *, 1> siblingOut;

  const ir::Type &type() const { return node.type; }
  const ir::Type &inType(size_t i) const { return node.operands.at(i)->type; }
  int64_t attr(size_t i) const { return node.ints.at(i); }

  // ---- i64 index arithmetic ----
  // Marked nsw (no signed wrap: indices address the arenas), which lets SCEV reason about loops.
  // Not nuw: offsets such as (kh - pad) are negative constants.
  llvm::Value *c(int64_t v) { return b.getInt64(v); }
  llvm::Value *add(llvm::Value *x, llvm::Value *y) { return b.CreateAdd(x, y, "", false, true); }
  llvm::Value *add(llvm::Value *x, int64_t y) { return y == 0 ? x : add(x, c(y)); }
  llvm::Value *sub(llvm::Value *x, llvm::Value *y) { return b.CreateSub(x, y, "", false, true); }
  llvm::Value *mul(llvm::Value *x, llvm::Value *y) { return b.CreateMul(x, y, "", false, true); }
  llvm::Value *mul(llvm::Value *x, int64_t y) { return y == 1 ? x : mul(x, c(y)); }
  llvm::Value *smin(llvm::Value *x, llvm::Value *y) { return b.CreateBinaryIntrinsic(llvm::Intrinsic::smin, x, y); }
  llvm::Value *smax(llvm::Value *x, llvm::Value *y) { return b.CreateBinaryIntrinsic(llvm::Intrinsic::smax, x, y); }

  // Samples a value of type t holds: n if batched, else 1.
  llvm::Value *samples(const ir::Type &t) { return t.batched ? n : c(1); }
  // Total floats a value of type t holds in this call.
  llvm::Value *count(const ir::Type &t) { return mul(samples(t), t.elements()); }

  // ---- float memory ----
  llvm::Value *at(llvm::Value *base, llvm::Value *index);
  llvm::Value *load(llvm::Value *base, llvm::Value *index);
  void store(llvm::Value *v, llvm::Value *base, llvm::Value *index);
  void zero(llvm::Value *base, llvm::Value *floats);  // memset to 0.0f

  // ---- float math ----
  llvm::Value *f32(double v) { return llvm::ConstantFP::get(b.getFloatTy(), v); }
  llvm::Value *f64(double v) { return llvm::ConstantFP::get(b.getDoubleTy(), v); }
  llvm::Value *toDouble(llvm::Value *x) { return b.CreateFPExt(x, b.getDoubleTy()); }
  llvm::Value *toFloat(llvm::Value *x) { return b.CreateFPTrunc(x, b.getFloatTy()); }
  llvm::Value *intToFP(llvm::Value *i, llvm::Type *t) { return b.CreateSIToFP(i, t); }
  // An LLVM math intrinsic overloaded on the argument type (exp, log, sqrt, fabs, tanh, ...).
  llvm::Value *math(llvm::Intrinsic::ID id, llvm::Value *x) { return b.CreateUnaryIntrinsic(id, x); }
  llvm::Value *maxnum(llvm::Value *x, llvm::Value *y) { return b.CreateBinaryIntrinsic(llvm::Intrinsic::maxnum, x, y); }
  llvm::Value *fma(llvm::Value *x, llvm::Value *y, llvm::Value *z);  // x*y + z (llvm.fmuladd)
  // x + y for reductions: marked reassociable so the vectoriser may split the sum into lanes.
  llvm::Value *sumAdd(llvm::Value *acc, llvm::Value *v);
  // acc + x*y for reductions (dot products): reassociable, and contractible into an FMA.
  llvm::Value *dotAdd(llvm::Value *acc, llvm::Value *x, llvm::Value *y);
  // Float transcendentals as inline polynomials (Math.cpp, accuracy stated there): x is a float or
  // a vector of floats, so loops using them vectorise.
  llvm::Value *exp(llvm::Value *x);
  llvm::Value *log(llvm::Value *x);
  llvm::Value *tanh(llvm::Value *x);
  llvm::Value *sigmoid(llvm::Value *x);
  llvm::Value *erf(llvm::Value *x);

  // ---- explicit vectors (GEMM, packing, epilogues) ----
  const TargetInfo &target() const;
  int lanes() const { return target().lanes; }
  llvm::FixedVectorType *vec(int lanes) { return llvm::FixedVectorType::get(b.getFloatTy(), lanes); }
  llvm::Value *splat(int lanes, llvm::Value *v) { return b.CreateVectorSplat(lanes, v); }
  // <lanes x i1>: lane l is on when first + l < limit (i64 scalars; signed compare).
  llvm::Value *laneMask(int lanes, llvm::Value *first, llvm::Value *limit);
  // Masked vector memory at base + index floats; masked-off lanes are not accessed (so the address
  // may lie outside any buffer) and load as 0.
  llvm::Value *maskedLoad(int lanes, llvm::Value *base, llvm::Value *index, llvm::Value *mask);
  void maskedStore(llvm::Value *v, llvm::Value *base, llvm::Value *index, llvm::Value *mask);
  llvm::Value *vload(int lanes, llvm::Value *base, llvm::Value *index);
  void vstore(llvm::Value *v, llvm::Value *base, llvm::Value *index);
  // base + index floats without the inbounds promise (addresses masked-off lanes may compute).
  llvm::Value *rawAt(llvm::Value *base, llvm::Value *index) {
    return b.CreateGEP(b.getFloatTy(), base, index);
  }
};

// Where a root value handed to Kernel::chain lies: a float at element `flat` of the node's value
// (i64, counted over the whole batch), or a vector whose lane l is element flat + l.
struct ElementSite {
  llvm::Value *flat;
  llvm::Value *mask = nullptr;     // vectors: <lanes x i1>, the lanes that are real (null: all)
  // Optional, for bias members: the channel (bias index) of lane 0, when the root knows it
  // cheaply: every lane's (uniform) or lane l's = channel + l (perLane).
  llvm::Value *channel = nullptr;
  bool perLane = false;
};

// Where a vector of results lies when an epilogue sees it: lane l holds the element at row `row`,
// column `col + l` of the GEMM's C (which the root emitter maps to the node's flat index).
struct TileSite {
  llvm::Value *row, *col;  // i64
  llvm::Value *mask;       // <lanes x i1>: the lanes that are real elements
};
// Turns a vector of finished root values into what is stored (fused chain), or null: store as is.
using Epilogue = std::function<llvm::Value *(Kernel &k, llvm::Value *v, const TileSite &site)>;

// C[M,N] = op(A)[M,K] · op(B)[K,N] (or C += with accumulate) over row-major matrices: A is [M,K],
// or [K,M] when transA; B is [K,N], or [N,K] when transB; leading dimensions default to dense.
// Packed (EmitGemm.cpp): operands are copied into panels in `pack` (gemmPackFloats, GemmBlocking.h)
// and multiplied by a register-blocked micro-kernel; the epilogue, if any, runs on each finished
// vector before its single store.
struct Gemm {
  llvm::Value *A, *B, *C;
  llvm::Value *M, *K, *N;  // i64
  bool transA = false, transB = false, accumulate = false;
  llvm::Value *pack = nullptr;  // float *: packing panels (required), gemmPackFloats(.., slots)
  int slots = 1;                // threads it may split across, each packing into its own slot
  // How to cut C across threads when the costs are close: Rows when C is a parameter's gradient,
  // Cols when B is a weight [N, K] (transB), so that each thread touches the same band of the
  // parameter arena here as in the optimizer's update (a line one core writes and the other
  // reads moves between their caches on every step).
  enum class Split { Auto, Rows, Cols } prefer = Split::Auto;
  llvm::Value *lda = nullptr, *ldb = nullptr, *ldc = nullptr;  // i64; null: dense
  Epilogue epilogue;            // empty: store the product
  // fp32 operands even under CodegenOptions::bf16: a product whose packing as bf16 would cost
  // more than vdpbf16ps saves (a convolution's filter gradient over few taps, EmitConv.cpp).
  bool fp32 = false;
  // Static extents where known (-1: the batch size n, bounded by maxBatch) for tiling decisions.
  int64_t staticM = -1, staticK = -1, staticN = -1;
  // A convolution's product (EmitConv.cpp): on 16-lane targets its packed form takes the 8×1
  // register tile (see chooseTiling in EmitGemm.cpp).
  bool convolution = false;
};
void emitGemm(Kernel &k, const Gemm &g);                         // EmitGemm.cpp

// The value of an elementwise (or bias) node at one element, for a float or a vector of floats
// (lanes = consecutive elements): v holds its operands' values there (the bias at the element's
// channel), `flat` the element's index over the whole batch (i64, or a vector of i64 for vectors;
// dropout hashes it). Used by the elementwise kernels and by fused epilogues. EmitElementwise.cpp.
llvm::Value *elementwiseValue(Kernel &k, const ir::Node &node, llvm::ArrayRef<llvm::Value *> v,
                              llvm::Value *flat);

// Runs body over [0, count) on the call's threads (mtlc_args::parallel_for; Parallel.cpp): the
// body is emitted into an outlined function `void (ptr ctx, i64 begin, i64 end)` and called
// once per contiguous range the runtime hands out, or once over all of it, on this thread, when
// the record has no pool, threads <= 1, or `worthIt` (an i1, or null = always) is false. `h` is
// a copy of k whose builder writes the outlined function; the body may use any value of the
// enclosing kernel (k's parameters, values computed before the call): they are passed through
// ctx automatically. The body must give the same results however [0, count) is split.
// `worthIt` must not turn false as n grows (a work estimate against a threshold): when it is
// false at n = maxBatch, no batch makes the loop worth splitting, and the body is emitted in
// place, with h = k (an outlined function per small kernel was a tenth of a compile).
void parallelFor(Kernel &k, llvm::Value *count, llvm::Value *worthIt,
                 const std::function<void(Kernel &h, llvm::Value *begin, llvm::Value *end)> &body);

// parallelFor over [0, count) in blocks of `grain` iterations, worth it from `minTotal` on:
// body(h, i0, i1) gets a contiguous range of iterations.
void parallelRange(Kernel &k, llvm::Value *count, int64_t grain, int64_t minTotal,
                   const std::function<void(Kernel &h, llvm::Value *i0, llvm::Value *i1)> &body);

// ---- the op emitters, one family per file ----
void emitMatMul(Kernel &k);                                      // EmitMatMul.cpp
void emitConv2d(Kernel &k);                                      // EmitConv.cpp
void emitConv2dBwdData(Kernel &k);
void emitConv2dBwdFilter(Kernel &k);
// The direct conv2d for stride 1 and at most kDirectConvMaxTaps = C·KH·KW taps
// (EmitConvDirect.cpp): convDirect says whether k's node runs it; emitConv2d dispatches to it.
inline constexpr int64_t kDirectConvMaxTaps = 27;
bool convDirectShape(const ir::Node &n);
bool convDirect(const Kernel &k);
int64_t convDirectScratchFloats(const ir::Node &n);
void emitConv2dDirect(Kernel &k);

// Scratch hooks (kernelScratchFloats): the working memory an op's kernel needs, by its emitter.
int64_t matMulScratchFloats(const ir::Node &n, int64_t maxBatch);  // EmitMatMul.cpp
// EmitConv.cpp: the three convolutions; the filter gradient's per-sample prologue and siblings.
int64_t convScratchFloats(const ir::Node &n, const passes::FusionGroup *group, int64_t maxBatch);
void emitPool(Kernel &k);                                        // EmitPool.cpp: MaxPool, AvgPool
void emitMaxPoolBwd(Kernel &k);
void emitAvgPoolBwd(Kernel &k);
void emitElementwise(Kernel &k);                                 // EmitElementwise.cpp: unary
void emitBiasAdd(Kernel &k);                                     //   ops and their backward,
void emitBiasGrad(Kernel &k);                                    //   Add, Mul, Const, dropout
void emitReduceBatch(Kernel &k);
void emitLayerNorm(Kernel &k);                                   // EmitNorm.cpp
void emitLayerNormBwdData(Kernel &k);
void emitLayerNormBwdGamma(Kernel &k);
void emitBatchNorm(Kernel &k);                                   // EmitBatchNorm.cpp
void emitBatchNormEval(Kernel &k);
void emitBatchNormBwdStats(Kernel &k);
void emitBatchNormBwdData(Kernel &k);
void emitBatchNormBwdParam(Kernel &k);
// batchnorm_eval's per-channel (scale, shift) from γ, β, running mean and variance (floats or
// vectors of floats): y = x·scale + shift, the same rounding alone and in a fused epilogue.
std::pair<llvm::Value *, llvm::Value *> batchNormEvalTransform(Kernel &k, llvm::Value *gamma, llvm::Value *beta,
                                                               llvm::Value *mean, llvm::Value *var, double eps);
void emitGlobalAvgPool(Kernel &k);                               // EmitResample.cpp
void emitGlobalAvgPoolBwd(Kernel &k);
void emitUpsample(Kernel &k);
void emitUpsampleBwd(Kernel &k);
void emitLoss(Kernel &k);                                        // EmitLoss.cpp
void emitLossBwd(Kernel &k);

}  // namespace mtlc::codegen
