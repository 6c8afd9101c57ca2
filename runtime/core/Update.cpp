#include "runtime/core/Update.h"

#include <cmath>

// One copy of a function per vector ISA, the best picked when the program loads (an ifunc): the
// loops vectorise for AVX-512 or AVX2 where the CPU has them, SSE2 elsewhere.
#if defined(__x86_64__) && defined(__ELF__) && !defined(MTLC_NO_VECTOR_CLONES)
#define MTLC_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define MTLC_VECTOR_CLONES
#endif

namespace mtlc::core {

namespace {

// The loops with the settings as template parameters: no branch inside, and restrict pointers (the
// parameter, gradient and state arenas never overlap), so g++ -O2 vectorises them without runtime
// alias checks. They are inlined into the entry points below, which are built once per vector ISA
// (MTLC_VECTOR_CLONES): the runtime itself is compiled for baseline x86-64, whose SSE2 loops ran
// at a quarter of an AVX-512 core's rate and made the update half of a batch-1 step. Same
// operations, in the same order, as the rules in train/Optimizer.h; core/CMakeLists.txt builds this file
// with -ffp-contract=off, so no clone fuses a multiply and an add that the others round twice.
template <bool Decay, bool Momentum, bool First>
[[gnu::always_inline]] inline void sgdLoop(float* __restrict p, const float* __restrict grad,
                                           float* __restrict buf, int64_t count, float lr, float mu, float wd) {
  for (int64_t i = 0; i < count; ++i) {
    float g = grad[i];
    if constexpr (Decay) g = g + wd * p[i];
    if constexpr (Momentum) {
      if constexpr (First) buf[i] = g;
      else buf[i] = mu * buf[i] + g;
      g = buf[i];
    }
    p[i] = p[i] - lr * g;
  }
}

template <bool Decay>
[[gnu::always_inline]] inline void sgdDecay(float* p, const float* grad, float* buf, int64_t count, float lr,
                                            float mu, float wd, bool first) {
  if (mu == 0) sgdLoop<Decay, false, false>(p, grad, buf, count, lr, mu, wd);
  else if (first) sgdLoop<Decay, true, true>(p, grad, buf, count, lr, mu, wd);
  else sgdLoop<Decay, true, false>(p, grad, buf, count, lr, mu, wd);
}

// Adam's loop with weight decay as a template parameter, for the same reason as sgdLoop's: a
// branch inside kept g++ from vectorising it (and so did sqrtf's errno path until this file was
// built with -fno-math-errno: v is never negative).
template <bool Decay>
[[gnu::always_inline]] inline void adamLoop(float* __restrict p, const float* __restrict grad, float* __restrict m,
                                            float* __restrict v, int64_t count, float stepSize, float bias2Sqrt,
                                            float beta1, float beta2, float eps, float wd, float oneMinusBeta1,
                                            float oneMinusBeta2) {
  for (int64_t i = 0; i < count; ++i) {
    float g = grad[i];
    if constexpr (Decay) g = g + wd * p[i];
    m[i] = m[i] * beta1 + oneMinusBeta1 * g;        // exp_avg.mul_(beta1).add_(grad, alpha=1-beta1)
    v[i] = v[i] * beta2 + oneMinusBeta2 * g * g;    // exp_avg_sq.mul_(beta2).addcmul_(g, g, 1-beta2)
    const float denom = std::sqrt(v[i]) / bias2Sqrt + eps;
    p[i] = p[i] - stepSize * (m[i] / denom);        // param.addcdiv_(exp_avg, denom, -step_size)
  }
}

}  // namespace

MTLC_VECTOR_CLONES
void sgdUpdate(float* p, const float* grad, float* buf, int64_t count, double lrD, double momentumD,
               double weightDecayD, bool firstStep) {
  // torch casts the python-float hyperparameters to the tensor's dtype inside each kernel.
  const float lr = float(lrD), mu = float(momentumD), wd = float(weightDecayD);
  if (wd != 0) sgdDecay<true>(p, grad, buf, count, lr, mu, wd, firstStep);
  else sgdDecay<false>(p, grad, buf, count, lr, mu, wd, firstStep);
}

MTLC_VECTOR_CLONES
void adamUpdate(float* __restrict p, const float* __restrict grad, float* __restrict m, float* __restrict v,
                int64_t count, double lr, double beta1D, double beta2D, double epsD, double weightDecayD,
                int64_t t) {
  // Bias corrections in double, as torch computes them in Python before calling the kernels.
  const double bias1 = 1.0 - std::pow(beta1D, double(t));
  const double bias2 = 1.0 - std::pow(beta2D, double(t));
  const float stepSize = float(lr / bias1);
  const float bias2Sqrt = float(std::sqrt(bias2));
  const float beta1 = float(beta1D), beta2 = float(beta2D), eps = float(epsD), wd = float(weightDecayD);
  const float oneMinusBeta1 = float(1.0 - beta1D), oneMinusBeta2 = float(1.0 - beta2D);
  if (wd != 0)
    adamLoop<true>(p, grad, m, v, count, stepSize, bias2Sqrt, beta1, beta2, eps, wd, oneMinusBeta1, oneMinusBeta2);
  else
    adamLoop<false>(p, grad, m, v, count, stepSize, bias2Sqrt, beta1, beta2, eps, wd, oneMinusBeta1, oneMinusBeta2);
}

}  // namespace mtlc::core
