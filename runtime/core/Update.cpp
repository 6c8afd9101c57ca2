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
// alias checks. They are inlined into the entry point below, which are built once per vector ISA
// (MTLC_VECTOR_CLONES): the runtime itself is compiled for baseline x86-64, whose SSE2 loops ran
// at a quarter of an AVX-512 core's rate and made the update half of a batch-1 step. Same
// operations, in the same order, as the rules in train/Optimizer.h; core/CMakeLists.txt builds this file
// with -ffp-contract=off, so no clone fuses a multiply and an add that the others round twice.
template <bool Decay, bool Momentum, bool First, bool Nesterov>
[[gnu::always_inline]] inline void sgdLoop(float* __restrict p, const float* __restrict grad,
                                           float* __restrict buf, int64_t count, float lr, float mu, float wd) {
  for (int64_t i = 0; i < count; ++i) {
    float g = grad[i];
    if constexpr (Decay) g = g + wd * p[i];
    if constexpr (Momentum) {
      if constexpr (First) buf[i] = g;
      else buf[i] = mu * buf[i] + g;
      if constexpr (Nesterov) g = g + mu * buf[i];  // d_p.add(buf, alpha=momentum)
      else g = buf[i];
    }
    p[i] = p[i] - lr * g;
  }
}

template <bool Decay, bool Nesterov>
[[gnu::always_inline]] inline void sgdMomentum(float* p, const float* grad, float* buf, int64_t count, float lr,
                                               float mu, float wd, bool first) {
  if (first) sgdLoop<Decay, true, true, Nesterov>(p, grad, buf, count, lr, mu, wd);
  else sgdLoop<Decay, true, false, Nesterov>(p, grad, buf, count, lr, mu, wd);
}

template <bool Decay>
[[gnu::always_inline]] inline void sgdDecay(float* p, const float* grad, float* buf, int64_t count, float lr,
                                            float mu, float wd, bool first, bool nesterov) {
  if (mu == 0) sgdLoop<Decay, false, false, false>(p, grad, buf, count, lr, mu, wd);
  else if (nesterov) sgdMomentum<Decay, true>(p, grad, buf, count, lr, mu, wd, first);
  else sgdMomentum<Decay, false>(p, grad, buf, count, lr, mu, wd, first);
}

// Adam's loop with weight decay as template parameters, for the same reason as sgdLoop's: a
// branch inside kept g++ from vectorising it (and so did sqrtf's errno path until this file was
// built with -fno-math-errno: v is never negative). L2 adds wd·p to the gradient (Adam); decoupled
// decay scales the parameter by 1 − lr·wd before the step (AdamW's param.mul_(1 - lr * wd)).
template <bool L2, bool Decoupled>
[[gnu::always_inline]] inline void adamLoop(float* __restrict p, const float* __restrict grad, float* __restrict m,
                                            float* __restrict v, int64_t count, float stepSize, float bias2Sqrt,
                                            float beta1, float beta2, float eps, float wd, float oneMinusBeta1,
                                            float oneMinusBeta2, float decayFactor) {
  for (int64_t i = 0; i < count; ++i) {
    float g = grad[i];
    if constexpr (L2) g = g + wd * p[i];
    if constexpr (Decoupled) p[i] = p[i] * decayFactor;
    m[i] = m[i] * beta1 + oneMinusBeta1 * g;        // exp_avg.mul_(beta1).add_(grad, alpha=1-beta1)
    v[i] = v[i] * beta2 + oneMinusBeta2 * g * g;    // exp_avg_sq.mul_(beta2).addcmul_(g, g, 1-beta2)
    const float denom = std::sqrt(v[i]) / bias2Sqrt + eps;
    p[i] = p[i] - stepSize * (m[i] / denom);        // param.addcdiv_(exp_avg, denom, -step_size)
  }
}

// RMSprop (not centered): the square average, then the step, through a momentum buffer when
// momentum > 0 (torch's buffer starts at zero, unlike sgd's).
template <bool Decay, bool Momentum>
[[gnu::always_inline]] inline void rmspropLoop(float* __restrict p, const float* __restrict grad,
                                               float* __restrict sq, float* __restrict buf, int64_t count,
                                               float lr, float alpha, float oneMinusAlpha, float eps, float mu,
                                               float wd) {
  for (int64_t i = 0; i < count; ++i) {
    float g = grad[i];
    if constexpr (Decay) g = g + wd * p[i];
    sq[i] = sq[i] * alpha + oneMinusAlpha * g * g;  // square_avg.mul_(alpha).addcmul_(g, g, 1-alpha)
    const float avg = std::sqrt(sq[i]) + eps;       // square_avg.sqrt().add_(eps)
    if constexpr (Momentum) {
      buf[i] = buf[i] * mu + g / avg;               // buf.mul_(momentum).addcdiv_(grad, avg)
      p[i] = p[i] - lr * buf[i];                    // param.add_(buf, alpha=-lr)
    } else {
      p[i] = p[i] - lr * g / avg;                   // param.addcdiv_(grad, avg, value=-lr)
    }
  }
}

[[gnu::always_inline]] inline void sgdUpdate(float* p, const float* grad, float* buf, int64_t count, const UpdateRule& r, bool firstStep) {
  // torch casts the python-float hyperparameters to the tensor's dtype inside each kernel.
  const float lr = float(r.lr), mu = float(r.momentum), wd = float(r.weightDecay);
  if (wd != 0) sgdDecay<true>(p, grad, buf, count, lr, mu, wd, firstStep, r.nesterov);
  else sgdDecay<false>(p, grad, buf, count, lr, mu, wd, firstStep, r.nesterov);
}

[[gnu::always_inline]] inline void adamUpdate(float* __restrict p, const float* __restrict grad, float* __restrict m, float* __restrict v,
                int64_t count, const UpdateRule& r, bool decoupled, int64_t t) {
  // Bias corrections in double, as torch computes them in Python before calling the kernels.
  const double bias1 = 1.0 - std::pow(r.beta1, double(t));
  const double bias2 = 1.0 - std::pow(r.beta2, double(t));
  const float stepSize = float(r.lr / bias1);
  const float bias2Sqrt = float(std::sqrt(bias2));
  const float beta1 = float(r.beta1), beta2 = float(r.beta2), eps = float(r.eps), wd = float(r.weightDecay);
  const float oneMinusBeta1 = float(1.0 - r.beta1), oneMinusBeta2 = float(1.0 - r.beta2);
  const float decayFactor = float(1.0 - r.lr * r.weightDecay);
  if (wd == 0)
    adamLoop<false, false>(p, grad, m, v, count, stepSize, bias2Sqrt, beta1, beta2, eps, wd, oneMinusBeta1,
                           oneMinusBeta2, decayFactor);
  else if (decoupled)
    adamLoop<false, true>(p, grad, m, v, count, stepSize, bias2Sqrt, beta1, beta2, eps, wd, oneMinusBeta1,
                          oneMinusBeta2, decayFactor);
  else
    adamLoop<true, false>(p, grad, m, v, count, stepSize, bias2Sqrt, beta1, beta2, eps, wd, oneMinusBeta1,
                          oneMinusBeta2, decayFactor);
}

[[gnu::always_inline]] inline void rmspropUpdate(float* p, const float* grad, float* sq, float* buf, int64_t count, const UpdateRule& r) {
  const float lr = float(r.lr), alpha = float(r.alpha), oneMinusAlpha = float(1.0 - r.alpha), eps = float(r.eps),
              mu = float(r.momentum), wd = float(r.weightDecay);
  if (wd != 0) {
    if (mu > 0) rmspropLoop<true, true>(p, grad, sq, buf, count, lr, alpha, oneMinusAlpha, eps, mu, wd);
    else rmspropLoop<true, false>(p, grad, sq, buf, count, lr, alpha, oneMinusAlpha, eps, mu, wd);
  } else {
    if (mu > 0) rmspropLoop<false, true>(p, grad, sq, buf, count, lr, alpha, oneMinusAlpha, eps, mu, wd);
    else rmspropLoop<false, false>(p, grad, sq, buf, count, lr, alpha, oneMinusAlpha, eps, mu, wd);
  }
}

}  // namespace

StateLayout stateLayout(const UpdateRule& rule) {
  using K = vocab::OptimizerKind;
  StateLayout l;
  switch (rule.kind) {
    case K::Sgd:
      if (rule.momentum != 0) l = {1, {"optim.momentum", nullptr}};
      break;
    case K::Adam:
    case K::AdamW: l = {2, {"optim.m", "optim.v"}}; break;
    case K::RmsProp:
      l = rule.momentum > 0 ? StateLayout{2, {"optim.square_avg", "optim.momentum"}}
                            : StateLayout{1, {"optim.square_avg", nullptr}};
      break;
  }
  return l;
}

MTLC_VECTOR_CLONES
void update(const UpdateRule& rule, float* params, const float* grads, float* a, float* b, int64_t count,
            int64_t step) {
  using K = vocab::OptimizerKind;
  switch (rule.kind) {
    case K::Sgd: sgdUpdate(params, grads, a, count, rule, step == 1); break;
    case K::Adam: adamUpdate(params, grads, a, b, count, rule, false, step); break;
    case K::AdamW: adamUpdate(params, grads, a, b, count, rule, true, step); break;
    case K::RmsProp: rmspropUpdate(params, grads, a, b, count, rule); break;
  }
}

}  // namespace mtlc::core
