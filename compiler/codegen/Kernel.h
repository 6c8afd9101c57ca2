// What every op emitter gets: an IRBuilder positioned in the body of the node's kernel function,
// the node, and the kernel's arguments (result pointer, one pointer per operand, batch size n,
// dropout seed), plus small helpers for index arithmetic, float memory and math.
//
// Each node is a call, in graph order, to an internal kernel function
//     void @k<number>.<mnemonic>[.<node name>](ptr noalias %out, ptr noalias readonly %in0, ...,
//                                              [ptr noalias %scratch,] i64 %n, i64 %seed)
// shared by all nodes with the same op, types and attributes. The noalias markings are valid
// because the memory plan gives every computed node its own storage (no in-place updates).
#pragma once

#include "ir/IR.h"

#include <llvm/IR/IRBuilder.h>

namespace mtlc::codegen {

struct Kernel {
  llvm::IRBuilder<> &b;
  const ir::Node &node;
  llvm::Value *out;                      // float *: the node's result
  llvm::SmallVector<llvm::Value *, 3> in;  // float *: one per operand
  llvm::Value *n;                        // i64: samples in this batch
  llvm::Value *seed;                     // i64: dropout stream
  llvm::Value *scratch = nullptr;        // float *: working memory (passes::scratchFloats), or null

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
  // libm erff (the only library call kernels make besides what LLVM lowers intrinsics to).
  llvm::Value *erf(llvm::Value *x);
};

// C[M,N] = op(A)[M,K] · op(B)[K,N] (or C += with accumulate) over densely stored row-major
// matrices: A is [M,K], or [K,M] when transA; B is [K,N], or [N,K] when transB.
struct Gemm {
  llvm::Value *A, *B, *C;
  llvm::Value *M, *K, *N;  // i64
  bool transA = false, transB = false, accumulate = false;
};
void emitGemm(Kernel &k, const Gemm &g);                         // EmitMatMul.cpp

// ---- the op emitters, one family per file ----
void emitMatMul(Kernel &k);                                      // EmitMatMul.cpp
void emitConv2d(Kernel &k);                                      // EmitConv.cpp
void emitConv2dBwdData(Kernel &k);
void emitConv2dBwdFilter(Kernel &k);
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
void emitLoss(Kernel &k);                                        // EmitLoss.cpp
void emitLossBwd(Kernel &k);

}  // namespace mtlc::codegen
