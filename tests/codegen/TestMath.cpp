// The inline float math of codegen/Math.cpp against libm's double-precision functions (rounded
// to float: the correctly rounded result for all practical purposes), as generated code runs it:
// scalar and as 16-lane vectors, over random arguments spanning the whole useful range (large |x|,
// saturation, over/underflow, denormal results) plus ±0, ±inf and NaN. Errors in ulp of the
// float result; the bounds are the ones Math.cpp states.
#include "Harness.h"

#include "codegen/Kernel.h"
#include "codegen/LoopBuilder.h"
#include "jit/JIT.h"

#include <llvm/IR/Module.h>
#include <llvm/IR/Verifier.h>

#include <cmath>
#include <limits>

using namespace mtlc;

namespace {

enum class Fn { Exp, Log, Tanh, Sigmoid, Erf };

using Kernel1 = void (*)(const float *, float *, int64_t);

// Compiles void f(const float *in, float *out, int64_t n) applying fn, `lanes` at a time.
struct MathKernel {
  std::shared_ptr<jit::JIT> jit = std::make_shared<jit::JIT>();
  Kernel1 fn = nullptr;

  MathKernel(Fn which, int lanes) {
    auto ctx = std::make_unique<llvm::LLVMContext>();
    auto m = std::make_unique<llvm::Module>("math", *ctx);
    m->setDataLayout(jit->dataLayout());
    m->setTargetTriple(jit->targetTriple().str());
    llvm::Type *ptr = llvm::PointerType::getUnqual(*ctx), *i64 = llvm::Type::getInt64Ty(*ctx);
    auto *f = llvm::Function::Create(llvm::FunctionType::get(llvm::Type::getVoidTy(*ctx), {ptr, ptr, i64}, false),
                                     llvm::Function::ExternalLinkage, "f", *m);
    llvm::IRBuilder<> b(llvm::BasicBlock::Create(*ctx, "entry", f));
    ir::Node dummy;
    codegen::CodegenOptions opts;
    codegen::Kernel k{b, dummy, f->getArg(1), {}, f->getArg(2), b.getInt64(0), nullptr, &opts, 1, {}};
    llvm::Value *steps = b.CreateUDiv(f->getArg(2), b.getInt64(lanes));
    codegen::forLoop(b, steps, [&](llvm::Value *i) {
      llvm::Value *at = k.mul(i, lanes);
      llvm::Value *x = lanes == 1 ? k.load(f->getArg(0), at) : k.vload(lanes, f->getArg(0), at);
      llvm::Value *y = nullptr;
      switch (which) {
        case Fn::Exp: y = k.exp(x); break;
        case Fn::Log: y = k.log(x); break;
        case Fn::Tanh: y = k.tanh(x); break;
        case Fn::Sigmoid: y = k.sigmoid(x); break;
        case Fn::Erf: y = k.erf(x); break;
      }
      if (lanes == 1) k.store(y, f->getArg(1), at);
      else k.vstore(y, f->getArg(1), at);
    });
    b.CreateRetVoid();
    REQUIRE_FALSE(llvm::verifyModule(*m, &llvm::errs()));
    jit->addModule(llvm::orc::ThreadSafeModule(std::move(m), std::move(ctx)));
    fn = jit->lookup<Kernel1>("f");
  }
};

double reference(Fn f, double x) {
  switch (f) {
    case Fn::Exp: return std::exp(x);
    case Fn::Log: return std::log(x);
    case Fn::Tanh: return std::tanh(x);
    case Fn::Sigmoid: return 1.0 / (1.0 + std::exp(-x));
    case Fn::Erf: return std::erf(x);
  }
  return 0;
}

// |got − want| in units of the float spacing at want (denormal spacing below FLT_MIN).
double ulps(float got, double want) {
  if (std::isnan(want)) return std::isnan(got) ? 0 : INFINITY;
  float w = (float)want;
  if (std::isinf(w) || std::isinf(got)) return w == got ? 0 : INFINITY;
  float a = std::fabs(w);
  double spacing = std::nextafter(a, INFINITY) - a;
  return std::fabs(double(got) - want) / spacing;
}

struct Report {
  double worst = 0;
  float at = 0;
};

// Worst ulp error of fn over `xs` where `counts(x)`, for the scalar and the 16-lane form.
Report measure(Fn f, const std::vector<float> &xs, const std::function<bool(float)> &counts) {
  Report r;
  for (int lanes : {1, 16}) {
    MathKernel k(f, lanes);
    std::vector<float> out(xs.size());
    k.fn(xs.data(), out.data(), (int64_t)xs.size());
    for (size_t i = 0; i < xs.size(); ++i) {
      if (!counts(xs[i])) continue;
      double e = ulps(out[i], reference(f, xs[i]));
      if (!(e <= r.worst)) r.worst = e, r.at = xs[i];
    }
  }
  return r;
}

std::vector<float> uniform(double lo, double hi, int count, std::vector<float> extra = {}) {
  std::mt19937 rng(99);
  std::uniform_real_distribution<double> d(lo, hi);
  std::vector<float> xs;
  for (int i = 0; i < count; ++i) xs.push_back((float)d(rng));
  xs.insert(xs.end(), extra.begin(), extra.end());
  while (xs.size() % 16) xs.push_back(0.5f);
  return xs;
}

const float inf = std::numeric_limits<float>::infinity();
const float qnan = std::numeric_limits<float>::quiet_NaN();
auto all = [](float) { return true; };

}  // namespace

TEST_CASE("math: exp ≤ 1 ulp, over- and underflow, denormal results", "[codegen][math]") {
  auto xs = uniform(-110, 95, 200000, {0.f, -0.f, 1.f, -1.f, 88.7228f, 88.73f, 89.5f, -87.33f, -100.f,
                                       -103.9f, -104.5f, -200.f, 1e-8f, -1e-8f, inf, -inf, qnan});
  Report r = measure(Fn::Exp, xs, all);
  INFO("worst " << r.worst << " ulp at " << r.at);
  CHECK(r.worst <= 1.0);
}

TEST_CASE("math: log ≤ 1 ulp from denormals to FLT_MAX; 0, negatives, inf, NaN", "[codegen][math]") {
  std::vector<float> xs;
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> e(-149, 128);
  for (int i = 0; i < 200000; ++i) xs.push_back((float)std::exp2(e(rng)));
  for (float v : {1.f, 0.99999f, 1.00001f, 0.f, -0.f, -1.f, inf, -inf, qnan, 1e-45f, 3.4e38f}) xs.push_back(v);
  auto near1 = uniform(0.5, 2.0, 100000);
  xs.insert(xs.end(), near1.begin(), near1.end());
  while (xs.size() % 16) xs.push_back(2.f);
  Report r = measure(Fn::Log, xs, all);
  INFO("worst " << r.worst << " ulp at " << r.at);
  CHECK(r.worst <= 1.0);
}

TEST_CASE("math: tanh ≤ 1.5 ulp, saturates to ±1", "[codegen][math]") {
  auto xs = uniform(-12, 12, 200000, {0.f, -0.f, 1e-30f, -1e-30f, 0.625f, -0.625f, 9.f, 50.f, -50.f, inf, -inf, qnan});
  auto small = uniform(-1, 1, 100000);
  xs.insert(xs.end(), small.begin(), small.end());
  Report r = measure(Fn::Tanh, xs, all);
  INFO("worst " << r.worst << " ulp at " << r.at);
  CHECK(r.worst <= 1.5);
}

TEST_CASE("math: sigmoid ≤ 2.5 ulp where the result is normal, saturates", "[codegen][math]") {
  auto xs = uniform(-87, 40, 200000, {0.f, -0.f, 17.f, 100.f, -100.f, inf, -inf, qnan});
  Report r = measure(Fn::Sigmoid, xs, [](float x) { return !(x < -87.f); });
  INFO("worst " << r.worst << " ulp at " << r.at);
  CHECK(r.worst <= 2.5);
  // Far left the result underflows to 0 (the true value is below 1e-38).
  MathKernel k(Fn::Sigmoid, 16);
  std::vector<float> in(16, -100.f), out(16);
  k.fn(in.data(), out.data(), 16);
  CHECK(out[0] == 0.f);
}

TEST_CASE("math: erf ≤ 2.5 ulp, absolute error < 1.5e-7", "[codegen][math]") {
  auto xs = uniform(-6, 6, 200000, {0.f, -0.f, 1e-3f, -1e-3f, 4.f, -4.f, 10.f, -10.f, inf, -inf, qnan});
  auto small = uniform(-0.01, 0.01, 50000);
  xs.insert(xs.end(), small.begin(), small.end());
  Report r = measure(Fn::Erf, xs, all);
  INFO("worst " << r.worst << " ulp at " << r.at);
  CHECK(r.worst <= 2.5);
  MathKernel k(Fn::Erf, 1);
  std::vector<float> out(xs.size());
  k.fn(xs.data(), out.data(), (int64_t)xs.size());
  double worstAbs = 0;
  for (size_t i = 0; i < xs.size(); ++i)
    if (std::isfinite(xs[i])) worstAbs = std::max(worstAbs, std::fabs(out[i] - std::erf((double)xs[i])));
  INFO("worst absolute error " << worstAbs);
  CHECK(worstAbs < 1.5e-7);
}
