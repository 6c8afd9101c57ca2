#include "runtime/train/Optimizer.h"

#include "runtime/Error.h"
#include "runtime/parallel/ThreadPool.h"

#include <algorithm>
#include <cmath>

// One copy of a function per vector ISA, the best picked when the program loads (an ifunc): the
// loops vectorise for AVX-512 or AVX2 where the CPU has them, SSE2 elsewhere.
#if defined(__x86_64__) && defined(__ELF__) && !defined(MTLC_NO_VECTOR_CLONES)
#define MTLC_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define MTLC_VECTOR_CLONES
#endif

namespace mtlc::rt {

namespace {

// The loops with the settings as template parameters: no branch inside, and restrict pointers (the
// parameter, gradient and state arenas never overlap), so g++ -O2 vectorises them without runtime
// alias checks. They are inlined into the entry points below, which are built once per vector ISA
// (MTLC_VECTOR_CLONES): the runtime itself is compiled for baseline x86-64, whose SSE2 loops ran
// at a quarter of an AVX-512 core's rate and made the update half of a batch-1 step. Same
// operations, in the same order, as the rules in Optimizer.h; CMakeLists.txt builds this file
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

Optimizer::Optimizer(const OptimizerSpec& spec, int64_t paramCount)
    : spec_(spec), count_(paramCount), spans_{{0, paramCount}} {
  if (spec.kind == "sgd") {
    if (spec.momentum != 0) a_.resize(paramCount);
  } else if (spec.kind == "adam") {
    a_.resize(paramCount);
    b_.resize(paramCount);
  } else {
    throwError("unknown optimizer `{}` (known: sgd, adam)", spec.kind);
  }
}

namespace {

// Blocks of 16K floats (64 KiB per array) split across threads from 64K elements on: below that
// the fork and join cost more than the loop.
constexpr int64_t kBlock = 1 << 14, kParallelFrom = 1 << 16;

}  // namespace

void Optimizer::step(float* params, const float* grads, ThreadPool* pool) {
  ++steps_;
  stepTensor_ = float(steps_);
  struct Job {
    Optimizer* self;
    float* params;
    const float* grads;
    int64_t begin, end;
  };
  auto update = [](void* ctx, int64_t b0, int64_t b1) {
    const Job& j = *static_cast<const Job*>(ctx);
    Optimizer& o = *j.self;
    const int64_t begin = j.begin + b0 * kBlock, n = std::min(j.end, j.begin + b1 * kBlock) - begin;
    const OptimizerSpec& s = o.spec_;
    float* a = o.a_.data() ? o.a_.data() + begin : nullptr;
    if (s.kind == "sgd")
      sgdUpdate(j.params + begin, j.grads + begin, a, n, s.lr, s.momentum, s.weightDecay, o.steps_ == 1);
    else
      adamUpdate(j.params + begin, j.grads + begin, a, o.b_.data() + begin, n, s.lr, s.beta1,
                 s.beta2, s.eps, s.weightDecay, o.steps_);
  };
  for (auto [begin, end] : spans_) {
    Job job{this, params, grads, begin, end};
    const int64_t blocks = (end - begin + kBlock - 1) / kBlock;
    if (pool && end - begin >= kParallelFrom) pool->parallelFor(blocks, update, &job);
    else update(&job, 0, blocks);
  }
}

std::vector<std::pair<int64_t, int64_t>> trainableSpans(const ModelSpec& spec) {
  bool anyFrozen = false;
  for (const ParamSpec& p : spec.params) anyFrozen = anyFrozen || p.frozen;
  if (!anyFrozen) return {{0, spec.paramCount}};
  std::vector<std::pair<int64_t, int64_t>> spans;
  for (const ParamSpec& p : spec.params)
    if (!p.frozen && p.size > 0) spans.push_back({p.offset, p.offset + p.size});
  std::sort(spans.begin(), spans.end());
  std::vector<std::pair<int64_t, int64_t>> merged;
  for (auto s : spans) {
    if (!merged.empty() && s.first <= merged.back().second) merged.back().second = std::max(merged.back().second, s.second);
    else merged.push_back(s);
  }
  return merged;
}

std::vector<Optimizer::StateTensor> Optimizer::state() {
  std::vector<StateTensor> s{{"optim.step", &stepTensor_, 1}};
  if (spec_.kind == "sgd" && spec_.momentum != 0) s.push_back({"optim.momentum", a_.data(), count_});
  if (spec_.kind == "adam") {
    s.push_back({"optim.m", a_.data(), count_});
    s.push_back({"optim.v", b_.data(), count_});
  }
  return s;
}

double clipGradNorm(float* grads, const std::vector<std::pair<int64_t, int64_t>>& spans, double maxNorm) {
  double sq = 0;
  for (auto [begin, end] : spans)
    for (int64_t i = begin; i < end; ++i) sq += double(grads[i]) * double(grads[i]);
  const double norm = std::sqrt(sq);
  if (!std::isfinite(norm)) return norm;
  const double coef = maxNorm / (norm + 1e-6);
  if (coef < 1)
    for (auto [begin, end] : spans)
      for (int64_t i = begin; i < end; ++i) grads[i] = float(double(grads[i]) * coef);
  return norm;
}

}  // namespace mtlc::rt
