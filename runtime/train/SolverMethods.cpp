// The gradient methods built on a small exact solver (Weighting.h: upgrad, aligned_mtl, nash_mtl,
// fairgrad) and ExcessMTL's AdaGrad-like excess risk (excess_mtl). The solvers are SolverMethods.h.
#include "runtime/train/SolverMethods.h"
#include "runtime/train/WeightingParts.h"

#include "spec/Error.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>

namespace mtlc::rt {

namespace {

// x with A·x = b for a small nonsingular A (n×n row-major), Gaussian elimination with partial
// pivoting.
std::vector<double> solveLinear(std::vector<double> A, std::vector<double> b, int64_t n) {
  auto a = [&](int64_t i, int64_t j) -> double& { return A[size_t(i * n + j)]; };
  for (int64_t c = 0; c < n; ++c) {
    int64_t p = c;
    for (int64_t r = c + 1; r < n; ++r)
      if (std::fabs(a(r, c)) > std::fabs(a(p, c))) p = r;
    if (p != c) {
      for (int64_t j = 0; j < n; ++j) std::swap(a(c, j), a(p, j));
      std::swap(b[size_t(c)], b[size_t(p)]);
    }
    if (a(c, c) == 0) continue;  // singular column: its unknown stays 0
    for (int64_t r = c + 1; r < n; ++r) {
      const double f = a(r, c) / a(c, c);
      if (f == 0) continue;
      for (int64_t j = c; j < n; ++j) a(r, j) -= f * a(c, j);
      b[size_t(r)] -= f * b[size_t(c)];
    }
  }
  std::vector<double> x(size_t(n), 0.0);
  for (int64_t r = n - 1; r >= 0; --r) {
    double s = b[size_t(r)];
    for (int64_t j = r + 1; j < n; ++j) s -= a(r, j) * x[size_t(j)];
    x[size_t(r)] = a(r, r) != 0 ? s / a(r, r) : 0.0;
  }
  return x;
}

// The unconstrained minimiser of ½·xᵀAx + bᵀx over the coordinates in `free` (the others 0).
std::vector<double> solveFree(const std::vector<double>& A, const std::vector<double>& b, int64_t n,
                              const std::vector<bool>& free) {
  std::vector<int64_t> idx;
  for (int64_t i = 0; i < n; ++i)
    if (free[size_t(i)]) idx.push_back(i);
  const int64_t m = int64_t(idx.size());
  std::vector<double> sub(size_t(m * m)), rhs(static_cast<size_t>(m));
  for (int64_t i = 0; i < m; ++i) {
    rhs[size_t(i)] = -b[size_t(idx[size_t(i)])];
    for (int64_t j = 0; j < m; ++j) sub[size_t(i * m + j)] = A[size_t(idx[size_t(i)] * n + idx[size_t(j)])];
  }
  const std::vector<double> z = solveLinear(std::move(sub), std::move(rhs), m);
  std::vector<double> out(size_t(n), 0.0);
  for (int64_t i = 0; i < m; ++i) out[size_t(idx[size_t(i)])] = z[size_t(i)];
  return out;
}

double maxAbs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}

}  // namespace

std::vector<double> nonNegativeQp(const std::vector<double>& A, const std::vector<double>& b, int64_t n) {
  std::vector<double> x(size_t(n), 0.0);
  std::vector<bool> free(size_t(n), false);
  double diag = 0;
  for (int64_t i = 0; i < n; ++i) diag = std::max(diag, std::fabs(A[size_t(i * n + i)]));
  const int64_t limit = 3 * n + 10;
  for (int64_t outer = 0; outer < limit; ++outer) {
    // The negative gradient; the bound coordinate most eager to grow joins the free set.
    std::vector<double> w(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      double s = b[size_t(i)];
      for (int64_t j = 0; j < n; ++j) s += A[size_t(i * n + j)] * x[size_t(j)];
      w[size_t(i)] = -s;
    }
    const double tol = 1e-13 * (diag * std::max(1.0, maxAbs(x)) + maxAbs(b));
    int64_t enter = -1;
    for (int64_t i = 0; i < n; ++i)
      if (!free[size_t(i)] && w[size_t(i)] > tol && (enter < 0 || w[size_t(i)] > w[size_t(enter)])) enter = i;
    if (enter < 0) break;
    free[size_t(enter)] = true;
    for (int64_t inner = 0; inner < limit; ++inner) {
      const std::vector<double> z = solveFree(A, b, n, free);
      bool feasible = true;
      double step = 1;
      for (int64_t i = 0; i < n; ++i)
        if (free[size_t(i)] && z[size_t(i)] <= 0) {
          feasible = false;
          const double d = x[size_t(i)] - z[size_t(i)];
          step = std::min(step, d > 0 ? x[size_t(i)] / d : 0.0);
        }
      if (feasible) {
        x = z;
        break;
      }
      // Walk towards z until the first free coordinate reaches 0; it (and any other at 0) leaves.
      for (int64_t i = 0; i < n; ++i) {
        if (!free[size_t(i)]) continue;
        x[size_t(i)] += step * (z[size_t(i)] - x[size_t(i)]);
        if (x[size_t(i)] <= 0 || (z[size_t(i)] <= 0 && x[size_t(i)] <= 1e-15 * std::max(1.0, maxAbs(x)))) {
          x[size_t(i)] = 0;
          free[size_t(i)] = false;
        }
      }
    }
  }
  return x;
}

std::vector<double> projectDualCone(const std::vector<double>& G, const std::vector<double>& u, int64_t T) {
  // v = u + x, x ≥ 0: vᵀGv = xᵀGx + 2·xᵀGu + const.
  std::vector<double> Gu(static_cast<size_t>(T), 0.0);
  for (int64_t i = 0; i < T; ++i)
    for (int64_t j = 0; j < T; ++j) Gu[size_t(i)] += G[size_t(i * T + j)] * u[size_t(j)];
  std::vector<double> v = nonNegativeQp(G, Gu, T);
  for (int64_t i = 0; i < T; ++i) v[size_t(i)] += u[size_t(i)];
  return v;
}

std::vector<double> upgradWeights(const std::vector<double>& gram, int64_t T, double normEps, double regEps) {
  double trace = 0;
  for (int64_t i = 0; i < T; ++i) trace += gram[size_t(i * T + i)];
  std::vector<double> G(size_t(T * T), 0.0);
  if (!(trace < normEps))
    for (size_t k = 0; k < G.size(); ++k) G[k] = gram[k] / trace;
  for (int64_t i = 0; i < T; ++i) G[size_t(i * T + i)] += regEps;
  std::vector<double> w(size_t(T), 0.0);
  for (int64_t i = 0; i < T; ++i) {
    std::vector<double> u(size_t(T), 0.0);
    u[size_t(i)] = 1.0 / double(T);
    const std::vector<double> v = projectDualCone(G, u, T);
    for (int64_t j = 0; j < T; ++j) w[size_t(j)] += v[size_t(j)];
  }
  return w;
}

void symmetricEigen(const std::vector<double>& A, int64_t n, std::vector<double>& values,
                    std::vector<double>& vectors) {
  std::vector<double> a = A, V(size_t(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i) V[size_t(i * n + i)] = 1;
  auto at = [&](std::vector<double>& m, int64_t i, int64_t j) -> double& { return m[size_t(i * n + j)]; };
  for (int sweep = 0; sweep < 100; ++sweep) {
    double off = 0, all = 0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) (i == j ? all : off) += at(a, i, j) * at(a, i, j);
    if (off <= 1e-32 * (all + off)) break;
    for (int64_t p = 0; p < n; ++p)
      for (int64_t q = p + 1; q < n; ++q) {
        const double apq = at(a, p, q);
        if (apq == 0) continue;
        // The rotation that zeroes a_pq: t = tan φ, cot 2φ = (a_qq − a_pp) / (2·a_pq).
        const double theta = (at(a, q, q) - at(a, p, p)) / (2 * apq);
        const double t = (theta >= 0 ? 1.0 : -1.0) / (std::fabs(theta) + std::sqrt(theta * theta + 1));
        const double c = 1 / std::sqrt(t * t + 1), s = t * c;
        for (int64_t k = 0; k < n; ++k) {
          const double kp = at(a, k, p), kq = at(a, k, q);
          at(a, k, p) = c * kp - s * kq;
          at(a, k, q) = s * kp + c * kq;
        }
        for (int64_t k = 0; k < n; ++k) {
          const double pk = at(a, p, k), qk = at(a, q, k);
          at(a, p, k) = c * pk - s * qk;
          at(a, q, k) = s * pk + c * qk;
        }
        for (int64_t k = 0; k < n; ++k) {
          const double kp = at(V, k, p), kq = at(V, k, q);
          at(V, k, p) = c * kp - s * kq;
          at(V, k, q) = s * kp + c * kq;
        }
      }
  }
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return at(a, x, x) < at(a, y, y); });
  values.assign(size_t(n), 0.0);
  vectors.assign(size_t(n * n), 0.0);
  for (int64_t k = 0; k < n; ++k) {
    values[size_t(k)] = at(a, order[size_t(k)], order[size_t(k)]);
    for (int64_t i = 0; i < n; ++i) vectors[size_t(i * n + k)] = at(V, i, order[size_t(k)]);
  }
}

std::vector<double> alignedWeights(const std::vector<double>& gram, int64_t T) {
  std::vector<double> lambda, V;
  symmetricEigen(gram, T, lambda, V);
  const double top = T > 0 ? lambda.back() : 0.0;
  const double tol = top * double(T) * double(FLT_EPSILON);
  double smallest = 0;
  for (int64_t k = 0; k < T; ++k)
    if (lambda[size_t(k)] > tol && top > 0) {
      smallest = lambda[size_t(k)];
      break;
    }
  if (!(smallest > 0)) return std::vector<double>(size_t(T), 1.0 / double(T));
  std::vector<double> w(size_t(T), 0.0);
  for (int64_t k = 0; k < T; ++k) {
    if (!(lambda[size_t(k)] > tol)) continue;
    double colSum = 0;  // Σ_i V_ik
    for (int64_t i = 0; i < T; ++i) colSum += V[size_t(i * T + k)];
    const double f = std::sqrt(smallest / lambda[size_t(k)]) * colSum;
    for (int64_t j = 0; j < T; ++j) w[size_t(j)] += f * V[size_t(j * T + k)];
  }
  return w;
}

namespace {

// Damped Newton for the y > 0 minimising ½·yᵀGy − Σ h(y_i), h' = y^(−1/α) (G n×n positive
// semidefinite with a positive diagonal, scaled to max G_ii = 1).
std::vector<double> fairNewton(const std::vector<double>& G, int64_t n, double alpha) {
  const double p = 1 / alpha;
  auto h = [&](double y) { return alpha == 1 ? std::log(y) : std::pow(y, 1 - p) / (1 - p); };
  auto f = [&](const std::vector<double>& y) {
    double s = 0;
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < n; ++j) s += 0.5 * y[size_t(i)] * G[size_t(i * n + j)] * y[size_t(j)];
      s -= h(y[size_t(i)]);
    }
    return s;
  };
  std::vector<double> y(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) y[size_t(i)] = std::pow(G[size_t(i * n + i)], -alpha / (alpha + 1));
  for (int iter = 0; iter < 200; ++iter) {
    std::vector<double> grad(static_cast<size_t>(n)), H = G;
    for (int64_t i = 0; i < n; ++i) {
      double s = 0;
      for (int64_t j = 0; j < n; ++j) s += G[size_t(i * n + j)] * y[size_t(j)];
      grad[size_t(i)] = s - std::pow(y[size_t(i)], -p);
      H[size_t(i * n + i)] += p * std::pow(y[size_t(i)], -p - 1);
    }
    std::vector<double> minus(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) minus[size_t(i)] = -grad[size_t(i)];
    const std::vector<double> d = solveLinear(H, minus, n);
    double decrement = 0;  // −∇f·d, the squared Newton decrement
    for (int64_t i = 0; i < n; ++i) decrement -= grad[size_t(i)] * d[size_t(i)];
    if (!(decrement > 1e-30)) break;
    double t = 1;
    auto moved = [&](double s) {
      std::vector<double> z = y;
      for (int64_t i = 0; i < n; ++i) z[size_t(i)] += s * d[size_t(i)];
      return z;
    };
    auto positive = [&](const std::vector<double>& z) {
      return std::all_of(z.begin(), z.end(), [](double v) { return v > 0; });
    };
    while (t > 1e-20 && !positive(moved(t))) t *= 0.5;
    if (decrement > 1e-12) {  // Armijo backtracking until the quadratic-convergence region
      const double f0 = f(y);
      while (t > 1e-20 && f(moved(t)) > f0 - 1e-4 * t * decrement) t *= 0.5;
    }
    y = moved(t);
  }
  return y;
}

}  // namespace

std::vector<double> fairWeights(const std::vector<double>& gram, int64_t T, double alpha) {
  std::vector<int64_t> active;
  double scale = 0;
  for (int64_t i = 0; i < T; ++i)
    if (gram[size_t(i * T + i)] > 0) {
      active.push_back(i);
      scale = std::max(scale, gram[size_t(i * T + i)]);
    }
  std::vector<double> x(size_t(T), 0.0);
  const int64_t n = int64_t(active.size());
  if (n == 0) return x;
  std::vector<double> G(size_t(n * n));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) G[size_t(i * n + j)] = gram[size_t(active[size_t(i)] * T + active[size_t(j)])] / scale;
  const std::vector<double> y = fairNewton(G, n, alpha);
  const double s = std::pow(scale, -alpha / (alpha + 1));  // G·x = x^(−1/α) for x = s·y
  for (int64_t i = 0; i < n; ++i) x[size_t(active[size_t(i)])] = s * y[size_t(i)];
  return x;
}

namespace {

using Solver = std::function<std::vector<double>(const std::vector<double>& gram, int64_t T)>;

// A method whose weights come from the Gram matrix of the task gradients (on the trainable shared
// parameters, or with rep_grad on the shared representation); the model gradient is Σ_t w_t·g_t
// (task_grads) or one train_step with loss weights w (rep_grads). Nash-MTL then clips the shared
// parameters' gradient to maxNorm, and may reuse its weights for `every` steps.
class GramMethod final : public Weighting {
 public:
  GramMethod(const ModelSpec& spec, std::string name, Solver solve, bool rep, double maxNorm, int64_t every)
      : spec_(spec), T_(int64_t(spec.tasks.size())), name_(std::move(name)), solve_(std::move(solve)), rep_(rep),
        maxNorm_(maxNorm), every_(std::max<int64_t>(every, 1)), shared_(sharedSpans(spec)),
        uniform_(size_t(T_), 1.0f / float(T_)), last_(uniform_) {}
  std::string describe() const override {
    return rep_ ? fmt::format("{} (on the {}-wide shared representation)", name_, spec_.repWidth)
                : fmt::format("{} (on the shared parameters' gradients)", name_);
  }
  bool needsTaskGrads() const override { return !rep_; }
  bool needsRepGrads() const override { return rep_; }
  std::vector<float> currentWeights() const override { return last_; }
  StepResult step(StepKernels& k, int64_t step) override {
    if (every_ > 1 && (step - 1) % every_ != 0 && solved_ > 0) {
      k.trainStep(last_.data());
    } else {
      const std::vector<double> alpha = solve_(taskGram(k, spec_, shared_, rep_, uniform_.data()), T_);
      last_.assign(alpha.begin(), alpha.end());
      solved_ = 1;
      if (rep_) k.trainStep(last_.data());
      else combineTaskGrads(k, last_, spec_.paramCount);
    }
    if (maxNorm_ > 0) clipGradNorm(k.grads(), shared_, maxNorm_);  // torch's clip_grad_norm_, shared part
    return {last_, weightedTotal(last_, k.losses())};
  }
  std::vector<WeightingState> state() override {
    if (every_ == 1) return {};
    return {{"mtl.weights", {T_}, last_.data()}, {"mtl.solved", {1}, &solved_}};
  }

 private:

  const ModelSpec& spec_;
  int64_t T_;
  std::string name_;
  Solver solve_;
  bool rep_;
  double maxNorm_;
  int64_t every_;
  std::vector<Span> shared_;
  std::vector<float> uniform_, last_;
  float solved_ = 0;  // 1 once weights were solved for (a checkpoint keeps them)
};

// ExcessMTL (He et al. 2024): per task an AdaGrad-like diagonal Hessian estimate H_t = √(Σ_steps
// g_t² + 1e-7) on the shared parameters; excess risk e_t = g_t·(g_t / H_t), relative to the task's
// first one; w ← w·exp(robust_step_size·e/e(0)), renormalised to Σ w = T; Σ_t w_t·g_t.
class ExcessMtl final : public Weighting {
 public:
  ExcessMtl(const ModelSpec& spec, double stepSize)
      : spec_(spec), T_(int64_t(spec.tasks.size())), stepSize_(stepSize), shared_(sharedSpans(spec)),
        w_(size_t(T_), 1.0f), initial_(size_t(T_), std::nanf("")) {
    for (auto [lo, hi] : shared_) dim_ += hi - lo;
    sumSq_.assign(size_t(T_ * dim_), 0.0f);
  }
  std::string describe() const override { return fmt::format("excess_mtl(robust_step_size={})", stepSize_); }
  bool needsTaskGrads() const override { return true; }
  std::vector<float> currentWeights() const override { return w_; }
  StepResult step(StepKernels& k, int64_t) override {
    k.taskGrads(w_.data());
    std::vector<double> ratio(size_t(T_), 0.0);
    for (int64_t t = 0; t < T_; ++t) {
      const double e = excessRisk(k.taskGrad(t), sumSq_.data() + t * dim_);
      float& e0 = initial_[size_t(t)];
      if (!std::isnan(e0)) ratio[size_t(t)] = e / double(e0);
      else if (e > 0) e0 = float(e);  // the task's first estimate: no update yet
    }
    double sum = 0;
    for (int64_t t = 0; t < T_; ++t) sum += w_[size_t(t)] = float(double(w_[size_t(t)]) * std::exp(stepSize_ * ratio[size_t(t)]));
    for (float& x : w_) x = float(double(x) / sum * double(T_));
    combineTaskGrads(k, w_, spec_.paramCount);
    return {w_, weightedTotal(w_, k.losses())};
  }
  std::vector<WeightingState> state() override {
    return {{"mtl.weights", {T_}, w_.data()}, {"mtl.initial_excess", {T_}, initial_.data()},
            {"mtl.grad_sq_sum", {T_, dim_}, sumSq_.data()}};
  }

 private:
  // Accumulates g² into sumSq over the shared spans; returns Σ g² / √(sumSq + 1e-7).
  double excessRisk(const float* g, float* sumSq) const {
    double e = 0;
    int64_t at = 0;
    for (auto [lo, hi] : shared_)
      for (int64_t p = lo; p < hi; ++p, ++at) {
        const float gp = g[p];
        sumSq[at] += gp * gp;
        e += double(gp) * double(gp) / std::sqrt(double(sumSq[at]) + 1e-7);
      }
    return e;
  }

  const ModelSpec& spec_;
  int64_t T_;
  double stepSize_;
  std::vector<Span> shared_;
  int64_t dim_ = 0;
  std::vector<float> w_, initial_, sumSq_;
};

}  // namespace

std::unique_ptr<Weighting> createSolverMethod(const ModelSpec& spec, uint64_t) {
  const WeightingKind w = spec.train.weighting;
  if (!spec.taskGradsStep && !(spec.repGradsStep && spec.train.repGrad))
    throwError("internal: weighting `{}` needs the `task_grads` entry point, which model `{}` was compiled without",
               vocab::name(w), spec.name);
  switch (w) {
    case WeightingKind::UPGrad: {
      const double normEps = weightingArg(spec, "norm_eps"), regEps = weightingArg(spec, "reg_eps");
      return std::make_unique<GramMethod>(
          spec, "upgrad", [=](const std::vector<double>& G, int64_t T) { return upgradWeights(G, T, normEps, regEps); },
          repGradRequested(spec, "upgrad"), 0.0, 1);
    }
    case WeightingKind::AlignedMtl:
      return std::make_unique<GramMethod>(spec, "aligned_mtl", alignedWeights, repGradRequested(spec, "aligned_mtl"), 0.0, 1);
    case WeightingKind::NashMtl: {
      const double maxNorm = weightingArg(spec, "max_norm");
      const int64_t every = int64_t(weightingArg(spec, "update_weights_every"));
      return std::make_unique<GramMethod>(
          spec, fmt::format("nash_mtl(update_weights_every={}, max_norm={})", every, maxNorm),
          [](const std::vector<double>& G, int64_t T) { return fairWeights(G, T, 1.0); }, repGradRequested(spec, "nash_mtl"),
          maxNorm, every);
    }
    case WeightingKind::FairGrad: {
      const double alpha = weightingArg(spec, "alpha");
      return std::make_unique<GramMethod>(
          spec, fmt::format("fairgrad(alpha={})", alpha),
          [=](const std::vector<double>& G, int64_t T) { return fairWeights(G, T, alpha); }, false, 0.0, 1);
    }
    case WeightingKind::ExcessMtl: return std::make_unique<ExcessMtl>(spec, weightingArg(spec, "robust_step_size"));
    default: return nullptr;
  }
}

}  // namespace mtlc::rt
