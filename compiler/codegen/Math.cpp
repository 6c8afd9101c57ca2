// Float transcendental functions as inline polynomial code, for a float or a vector of floats, so
// that elementwise loops and GEMM epilogues vectorise instead of calling libm once per element.
// Accuracy (tests/codegen/TestMath.cpp measures it against libm's double-precision results over
// ranges that include large |x|, the saturation regions, ±0, ±inf and NaN):
//   exp      Cephes expf: Cody–Waite reduction by ln 2, degree-6 polynomial; ≤ 1 ulp, denormal
//            results included; +inf above 88.72, 0 below −103.97
//   log      Cephes logf: frexp, degree-8 polynomial in (m − 1); ≤ 1 ulp for x > 0 (denormals
//            included), −inf at 0, NaN below 0
//   tanh     Cephes tanhf: odd polynomial for |x| < 0.625, 1 − 2/(e^{2|x|} + 1) above; ≤ 1.5 ulp
//   sigmoid  1/(1 + e^{−x}) with the exp above: ≤ 2.5 ulp where the result is a normal float
//   erf      x·P(x²) for |x| < 1, 1 − e^{−x²}·Q(|x|) on [1, 4] (both fitted here, see erf below),
//            ±1 beyond: ≤ 2.5 ulp everywhere, absolute error < 1.5e-7
// NaN propagates through all of them. No fast-math flags: results do not depend on the vector
// width, so fused and unfused kernels agree bit for bit.
#include "Kernel.h"

#include <cmath>

namespace mtlc::codegen {

namespace {

llvm::Value *cst(llvm::Value *like, double v) { return llvm::ConstantFP::get(like->getType(), v); }

llvm::Type *intTypeLike(llvm::Value *x) {
  llvm::Type *i32 = llvm::Type::getInt32Ty(x->getContext());
  if (auto *vt = llvm::dyn_cast<llvm::VectorType>(x->getType()))
    return llvm::VectorType::get(i32, vt->getElementCount());
  return i32;
}

llvm::Value *icst(llvm::Value *like, int64_t v) { return llvm::ConstantInt::get(like->getType(), v, true); }

// c[0] + x·(c[1] + x·(c[2] + ...)) by Horner's rule with fused multiply-adds.
llvm::Value *horner(Kernel &k, llvm::Value *x, std::initializer_list<double> c) {
  auto it = std::rbegin(c);
  llvm::Value *acc = cst(x, *it++);
  for (; it != std::rend(c); ++it) acc = k.fma(acc, x, cst(x, *it));
  return acc;
}

// x unless it is NaN, then the NaN: selects after the clamps that would otherwise drop it.
llvm::Value *keepNaN(Kernel &k, llvm::Value *x, llvm::Value *result) {
  return k.b.CreateSelect(k.b.CreateFCmpUNO(x, x), x, result);
}

// 2^e for integer e in [-126, 127] (as i32 lanes): the exponent field.
llvm::Value *pow2(Kernel &k, llvm::Value *e, llvm::Type *floatTy) {
  llvm::Value *bits = k.b.CreateShl(k.b.CreateAdd(e, icst(e, 127)), icst(e, 23));
  return k.b.CreateBitCast(bits, floatTy);
}

}  // namespace

llvm::Value *Kernel::exp(llvm::Value *x) {
  llvm::IRBuilder<> &B = b;
  // Clamp (NaN-preserving compares): below −104 the result rounds to 0, above 89 to +inf.
  llvm::Value *xc = B.CreateSelect(B.CreateFCmpOLT(x, cst(x, -104.0)), cst(x, -104.0), x);
  xc = B.CreateSelect(B.CreateFCmpOGT(xc, cst(x, 89.0)), cst(x, 89.0), xc);
  // n = round(x / ln 2) by the 1.5·2^23 trick (exact for |v| < 2^22; no rounding instruction needed)
  const double magic = 12582912.0;
  llvm::Value *shifted = B.CreateFAdd(B.CreateFMul(xc, cst(x, M_LOG2E)), cst(x, magic));
  llvm::Value *n = B.CreateFSub(shifted, cst(x, magic));
  llvm::Type *ity = intTypeLike(x);
  llvm::Value *ni = B.CreateSub(B.CreateBitCast(shifted, ity), icst(B.CreateBitCast(shifted, ity), 0x4B400000));
  // r = x − n·ln 2 in two steps (Cody–Waite), |r| <= ln2/2
  llvm::Value *r = fma(n, cst(x, -0.693359375), xc);
  r = fma(n, cst(x, 2.12194440e-4), r);
  // e^r ≈ 1 + r + r²·P(r)
  llvm::Value *p = horner(*this, r, {5.0000001201E-1, 1.6666665459E-1, 4.1665795894E-2,
                                      8.3334519073E-3, 1.3981999507E-3, 1.9875691500E-4});
  llvm::Value *r2 = B.CreateFMul(r, r);
  llvm::Value *er = B.CreateFAdd(fma(r2, p, r), cst(x, 1.0));
  // · 2^n as 2^⌊n/2⌋ · 2^(n−⌊n/2⌋): both factors normal for n in [−150, 129], so denormal results
  // round once and overflow gives +inf.
  llvm::Value *half = B.CreateAShr(ni, icst(ni, 1));
  llvm::Value *result = B.CreateFMul(B.CreateFMul(er, pow2(*this, half, x->getType())),
                                     pow2(*this, B.CreateSub(ni, half), x->getType()));
  return keepNaN(*this, x, result);
}

llvm::Value *Kernel::log(llvm::Value *x) {
  llvm::IRBuilder<> &B = b;
  llvm::Type *ity = intTypeLike(x);
  // Denormals: scale into the normal range first.
  llvm::Value *tiny = B.CreateFCmpOLT(x, cst(x, 1.17549435e-38));
  llvm::Value *xs = B.CreateSelect(tiny, B.CreateFMul(x, cst(x, 8388608.0)), x);  // · 2^23
  llvm::Value *bits = B.CreateBitCast(xs, ity);
  // x = m · 2^e with m in [0.5, 1)
  llvm::Value *e = B.CreateSub(B.CreateLShr(bits, icst(bits, 23)), icst(bits, 126));
  e = B.CreateSub(e, B.CreateSelect(tiny, icst(e, 23), icst(e, 0)));
  llvm::Value *m = B.CreateBitCast(B.CreateOr(B.CreateAnd(bits, icst(bits, 0x007FFFFF)), icst(bits, 0x3F000000)),
                                   x->getType());
  // m < √½: use 2m − 1 and e − 1, so the polynomial's argument stays in [√½ − 1, √2 − 1)
  llvm::Value *small = B.CreateFCmpOLT(m, cst(x, M_SQRT1_2));
  e = B.CreateSub(e, B.CreateZExt(small, ity));
  llvm::Value *f = B.CreateSelect(small, B.CreateFSub(B.CreateFAdd(m, m), cst(x, 1.0)), B.CreateFSub(m, cst(x, 1.0)));
  llvm::Value *ef = B.CreateSIToFP(e, x->getType());
  llvm::Value *z = B.CreateFMul(f, f);
  llvm::Value *p = horner(*this, f, {3.3333331174E-1, -2.4999993993E-1, 2.0000714765E-1, -1.6668057665E-1,
                                     1.4249322787E-1, -1.2420140846E-1, 1.1676998740E-1, -1.1514610310E-1,
                                     7.0376836292E-2});
  llvm::Value *y = B.CreateFMul(B.CreateFMul(p, f), z);
  y = fma(ef, cst(x, -2.12194440e-4), y);
  y = fma(z, cst(x, -0.5), y);
  llvm::Value *result = fma(ef, cst(x, 0.693359375), B.CreateFAdd(f, y));
  // log(0) = −inf, log(x < 0) = NaN, log(+inf) = +inf; NaN stays NaN.
  result = B.CreateSelect(B.CreateFCmpOEQ(x, cst(x, 0.0)), cst(x, -INFINITY), result);
  result = B.CreateSelect(B.CreateFCmpOLT(x, cst(x, 0.0)), cst(x, NAN), result);
  result = B.CreateSelect(B.CreateFCmpOEQ(x, cst(x, INFINITY)), x, result);
  return keepNaN(*this, x, result);
}

llvm::Value *Kernel::tanh(llvm::Value *x) {
  llvm::IRBuilder<> &B = b;
  llvm::Value *ax = math(llvm::Intrinsic::fabs, x);
  // small: x + x³·P(x²)
  llvm::Value *z = B.CreateFMul(x, x);
  llvm::Value *p = horner(*this, z, {-3.33332819422E-1, 1.33314422036E-1, -5.37397155531E-2,
                                     2.06390887954E-2, -5.70498872745E-3});
  llvm::Value *smallResult = fma(B.CreateFMul(p, z), x, x);
  // large: 1 − 2/(e^{2|x|} + 1), with x's sign
  llvm::Value *e = exp(B.CreateFAdd(ax, ax));
  llvm::Value *large = B.CreateFSub(cst(x, 1.0), B.CreateFDiv(cst(x, 2.0), B.CreateFAdd(e, cst(x, 1.0))));
  large = B.CreateBinaryIntrinsic(llvm::Intrinsic::copysign, large, x);
  return B.CreateSelect(B.CreateFCmpOLT(ax, cst(x, 0.625)), smallResult, large);  // NaN: large path
}

llvm::Value *Kernel::sigmoid(llvm::Value *x) {
  llvm::Value *one = cst(x, 1.0);
  return b.CreateFDiv(one, b.CreateFAdd(one, exp(b.CreateFNeg(x))));
}

llvm::Value *Kernel::erf(llvm::Value *x) {
  llvm::IRBuilder<> &B = b;
  llvm::Value *ax = math(llvm::Intrinsic::fabs, x);
  // |x| < 1: x·P(x²), P of degree 6 (the Taylor-like series, minimax-fitted)
  llvm::Value *x2 = B.CreateFMul(x, x);
  llvm::Value *small = B.CreateFMul(x, horner(*this, x2, {1.1283791657385067, -0.37612625857063864,
                                                          0.1128358540791275, -0.026853820709154402,
                                                          0.00518834212938081, -0.000801030786995463,
                                                          7.854209226079711e-05}));
  // 1 <= |x|: 1 − e^{−x²}·Q(s), Q of degree 11 in s = (2|x| − 5)/3 ∈ [−1, 1] fitting erfc(x)·e^{x²}
  // on [1, 4] (relative error 3e-8); beyond 4 erf is 1 to float precision.
  llvm::Value *a4 = B.CreateSelect(B.CreateFCmpOGT(ax, cst(x, 4.0)), cst(x, 4.0), ax);  // keeps NaN
  llvm::Value *sv = fma(a4, cst(x, 2.0 / 3.0), cst(x, -5.0 / 3.0));
  llvm::Value *q = horner(*this, sv, {0.21080635828493063, -0.11152103023370986, 0.056110919479101726,
                                      -0.027005201214638203, 0.012484353332508809, -0.0055703231875972765,
                                      0.002424982929155859, -0.0010101851099706856, 0.0003689108910889666,
                                      -0.00015095881460033996, 9.598410381825989e-05, -3.4356653022324726e-05});
  llvm::Value *tail = B.CreateFMul(exp(B.CreateFNeg(B.CreateFMul(a4, a4))), q);
  llvm::Value *large = B.CreateBinaryIntrinsic(llvm::Intrinsic::copysign, B.CreateFSub(cst(x, 1.0), tail), x);
  return B.CreateSelect(B.CreateFCmpOLT(ax, cst(x, 1.0)), small, large);  // NaN: large, stays NaN
}

}  // namespace mtlc::codegen
