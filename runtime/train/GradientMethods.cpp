// The gradient methods of issue #26 (imtl, cagrad, gradvac, graddrop, db_mtl, moco): their
// specification is the table of Weighting.h, their solvers are exposed in WeightingParts.h.
#include "runtime/train/Weighting.h"
#include "runtime/train/WeightingParts.h"

#include "spec/Error.h"
#include "runtime/core/Rng.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace mtlc::rt {

namespace {

// Solves A·x = b (n×n, row-major) by Gaussian elimination with partial pivoting; false when a
// pivot is below 1e-12 of the largest entry (a singular system).
bool solveLinear(std::vector<double> A, std::vector<double>& b, int64_t n) {
  double scale = 0;
  for (double v : A) scale = std::max(scale, std::fabs(v));
  if (!(scale > 0)) return false;
  auto a = [&](int64_t i, int64_t j) -> double& { return A[size_t(i * n + j)]; };
  for (int64_t c = 0; c < n; ++c) {
    int64_t piv = c;
    for (int64_t r = c + 1; r < n; ++r)
      if (std::fabs(a(r, c)) > std::fabs(a(piv, c))) piv = r;
    if (!(std::fabs(a(piv, c)) > 1e-12 * scale)) return false;
    if (piv != c) {
      for (int64_t j = 0; j < n; ++j) std::swap(a(c, j), a(piv, j));
      std::swap(b[size_t(c)], b[size_t(piv)]);
    }
    for (int64_t r = c + 1; r < n; ++r) {
      const double f = a(r, c) / a(c, c);
      for (int64_t j = c; j < n; ++j) a(r, j) -= f * a(c, j);
      b[size_t(r)] -= f * b[size_t(c)];
    }
  }
  for (int64_t r = n - 1; r >= 0; --r) {
    double s = b[size_t(r)];
    for (int64_t j = r + 1; j < n; ++j) s -= a(r, j) * b[size_t(j)];
    b[size_t(r)] = s / a(r, r);
  }
  return true;
}

std::vector<int64_t> indicesOf(const std::vector<bool>& in) {
  std::vector<int64_t> idx;
  for (size_t t = 0; t < in.size(); ++t)
    if (in[t]) idx.push_back(int64_t(t));
  return idx;
}

// CAGrad's dual objective F(w) = wᵀ·G·b + c'·√(wᵀ·G·w), b = 1/T.
double cagradObjective(const std::vector<double>& G, int64_t T, const std::vector<double>& w, double cPrime) {
  double lin = 0, quad = 0;
  for (int64_t i = 0; i < T; ++i)
    for (int64_t j = 0; j < T; ++j) {
      lin += w[size_t(i)] * G[size_t(i * T + j)] / double(T);
      quad += w[size_t(i)] * G[size_t(i * T + j)] * w[size_t(j)];
    }
  return lin + cPrime * std::sqrt(std::max(quad, 0.0));
}

// The stationary points of F in the relative interior of the face S (see cagradDual).
void cagradFaceCandidates(const std::vector<double>& G, int64_t T, const std::vector<int64_t>& S, double cPrime,
                          std::vector<std::vector<double>>& out) {
  const int64_t m = int64_t(S.size());
  std::vector<double> GS(size_t(m * m)), a(static_cast<size_t>(m), 0.0);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < m; ++j) GS[size_t(i * m + j)] = G[size_t(S[size_t(i)] * T + S[size_t(j)])];
    for (int64_t j = 0; j < T; ++j) a[size_t(i)] += G[size_t(S[size_t(i)] * T + j)] / double(T);
  }
  std::vector<double> p(static_cast<size_t>(m), 1.0), q = a;
  if (!solveLinear(GS, p, m) || !solveLinear(GS, q, m)) return;
  double A2 = 0, B = 0, C = -cPrime * cPrime;
  for (int64_t i = 0; i < m; ++i) A2 += p[size_t(i)], B += q[size_t(i)], C += a[size_t(i)] * q[size_t(i)];
  const double disc = B * B - A2 * C;
  if (!(A2 != 0) || disc < 0) return;
  for (double sign : {-1.0, 1.0}) {
    const double mu = (B + sign * std::sqrt(disc)) / A2;
    std::vector<double> v(static_cast<size_t>(m));
    double sum = 0;
    bool ok = true;
    for (int64_t i = 0; i < m; ++i) {
      v[size_t(i)] = (mu * p[size_t(i)] - q[size_t(i)]) / cPrime;
      ok &= v[size_t(i)] >= 0;
      sum += v[size_t(i)];
    }
    if (!ok || !(sum > 0)) continue;
    std::vector<double> w(static_cast<size_t>(T), 0.0);
    for (int64_t i = 0; i < m; ++i) w[size_t(S[size_t(i)])] = v[size_t(i)] / sum;
    out.push_back(std::move(w));
  }
}

}  // namespace

// ---- solvers (WeightingParts.h) -----------------------------------------------------------------

std::vector<double> imtlWeights(const std::vector<double>& G, int64_t T, const std::vector<bool>& in) {
  const std::vector<int64_t> idx = indicesOf(in);
  const int64_t m = int64_t(idx.size());
  std::vector<double> alpha(static_cast<size_t>(T), 0.0);
  if (m == 0) return alpha;
  if (m == 1) {
    alpha[size_t(idx[0])] = 1;
    return alpha;
  }
  auto g = [&](int64_t i, int64_t j) { return G[size_t(idx[size_t(i)] * T + idx[size_t(j)])]; };
  std::vector<double> norm(static_cast<size_t>(m));
  for (int64_t i = 0; i < m; ++i) norm[size_t(i)] = std::sqrt(g(i, i));
  // g_i·(u_1 − u_k) over the present tasks (1 = the first of them).
  auto gDotUDiff = [&](int64_t i, int64_t k) { return g(i, 0) / norm[0] - g(i, k) / norm[size_t(k)]; };
  const int64_t n = m - 1;
  std::vector<double> Mt(size_t(n * n)), r(static_cast<size_t>(n));
  for (int64_t k = 1; k < m; ++k) {
    r[size_t(k - 1)] = gDotUDiff(0, k);
    for (int64_t j = 1; j < m; ++j)  // M = D·Uᵀ, M_jk = (g_1 − g_j)·(u_1 − u_k); stored transposed
      Mt[size_t((k - 1) * n + (j - 1))] = gDotUDiff(0, k) - gDotUDiff(j, k);
  }
  if (!solveLinear(Mt, r, n)) {  // degenerate (parallel gradients): equal weights
    for (int64_t i : idx) alpha[size_t(i)] = 1.0 / double(m);
    return alpha;
  }
  double rest = 1;
  for (int64_t j = 1; j < m; ++j) rest -= alpha[size_t(idx[size_t(j)])] = r[size_t(j - 1)];
  alpha[size_t(idx[0])] = rest;
  return alpha;
}

std::vector<double> cagradDual(const std::vector<double>& G, int64_t T, const std::vector<bool>& in, double cPrime) {
  const std::vector<int64_t> idx = indicesOf(in);
  std::vector<std::vector<double>> candidates;
  for (int64_t t : idx) {
    std::vector<double> e(static_cast<size_t>(T), 0.0);
    e[size_t(t)] = 1;
    candidates.push_back(std::move(e));
  }
  const int64_t m = int64_t(idx.size());
  if (cPrime > 0)
    for (uint64_t mask = 1; mask < (uint64_t(1) << m); ++mask) {
      if (__builtin_popcountll(mask) < 2) continue;
      std::vector<int64_t> S;
      for (int64_t i = 0; i < m; ++i)
        if (mask >> i & 1) S.push_back(idx[size_t(i)]);
      cagradFaceCandidates(G, T, S, cPrime, candidates);
    }
  std::vector<double> best(static_cast<size_t>(T), 0.0);
  double bestValue = std::numeric_limits<double>::infinity();
  for (const std::vector<double>& w : candidates) {
    const double f = cagradObjective(G, T, w, cPrime);
    if (f < bestValue) bestValue = f, best = w;
  }
  return best;
}

std::vector<double> cagradCoefficients(const std::vector<double>& G, int64_t T, const std::vector<bool>& in, double c) {
  double g0 = 0;  // ‖g0‖², g0 = (1/T)·Σ g_i
  for (double v : G) g0 += v / double(T * T);
  const double cPrime = c * std::sqrt(std::max(g0, 0.0));
  const std::vector<double> w = cagradDual(G, T, in, cPrime);
  double gw = 0;
  for (int64_t i = 0; i < T; ++i)
    for (int64_t j = 0; j < T; ++j) gw += w[size_t(i)] * G[size_t(i * T + j)] * w[size_t(j)];
  const double lambda = gw > 0 ? cPrime / std::sqrt(gw) : 0.0;
  std::vector<double> coef(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) coef[size_t(t)] = (1.0 / double(T) + lambda * w[size_t(t)]) / (1 + c * c);
  return coef;
}

std::vector<double> graddropUniforms(uint64_t seed, int64_t step, int64_t count) {
  Rng rng(mix64(mix64(seed) ^ uint64_t(step)) ^ 0x4744u);
  std::vector<double> u(static_cast<size_t>(count));
  for (double& x : u) x = double(rng() >> 11) * 0x1.0p-53;
  return u;
}

namespace {

// The per-task gradients of the trainable shared parameters, gathered as T rows of `dim` doubles,
// and the way back: the shared part of k.grads() from one such row.
class SharedView {
 public:
  explicit SharedView(const ModelSpec& spec) : spans_(sharedSpans(spec)) {
    for (auto [lo, hi] : spans_) dim_ += hi - lo;
  }
  int64_t dim() const { return dim_; }
  const std::vector<Span>& spans() const { return spans_; }
  std::vector<double> gather(StepKernels& k, int64_t T) const {
    std::vector<double> g(size_t(T * dim_));
    for (int64_t t = 0; t < T; ++t) {
      double* dst = g.data() + t * dim_;
      for (auto [lo, hi] : spans_)
        for (int64_t p = lo; p < hi; ++p) *dst++ = double(k.taskGrad(t)[p]);
    }
    return g;
  }
  void scatter(float* grads, const double* v) const {
    for (auto [lo, hi] : spans_)
      for (int64_t p = lo; p < hi; ++p) grads[p] = float(*v++);
  }

 private:
  std::vector<Span> spans_;
  int64_t dim_ = 0;
};

double dot(const double* a, const double* b, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// A linear method's coefficients applied: one train_step with them (rep_grad) or Σ c_t·g_t.
void applyCoefficients(StepKernels& k, const std::vector<float>& c, bool rep, int64_t P) {
  if (rep) k.trainStep(c.data());
  else combineTaskGrads(k, c, P);
}

std::string repSuffix(bool rep, const ModelSpec& spec) {
  return rep ? fmt::format(" on the {}-wide shared representation", spec.repWidth) : "";
}

class Imtl final : public Weighting {
 public:
  explicit Imtl(const ModelSpec& spec)
      : spec_(spec), T_(int64_t(spec.tasks.size())), rep_(repGradRequested(spec, "imtl")), shared_(sharedSpans(spec)),
        scale_(size_t(T_), 0.0f), last_(size_t(T_), 1.0f / float(T_)), opt_(ownOptimizer(spec), T_) {}
  std::string describe() const override { return "imtl" + repSuffix(rep_, spec_); }
  bool needsTaskGrads() const override { return !rep_; }
  bool needsRepGrads() const override { return rep_; }
  std::vector<float> currentWeights() const override { return last_; }
  StepResult step(StepKernels& k, int64_t) override {
    const std::vector<float> ones(static_cast<size_t>(T_), 1.0f);
    std::vector<double> G = taskGram(k, spec_, shared_, rep_, ones.data());
    std::vector<double> e(static_cast<size_t>(T_));
    std::vector<bool> in(static_cast<size_t>(T_));
    for (int64_t t = 0; t < T_; ++t) e[size_t(t)] = std::exp(double(scale_[size_t(t)]));
    for (int64_t i = 0; i < T_; ++i) {
      in[size_t(i)] = k.present(i) > 0 && G[size_t(i * T_ + i)] > 0;
      for (int64_t j = 0; j < T_; ++j) G[size_t(i * T_ + j)] *= e[size_t(i)] * e[size_t(j)];  // of e^{s}·L
    }
    const std::vector<double> alpha = imtlWeights(G, T_, in);
    std::vector<float> c(static_cast<size_t>(T_)), ds(static_cast<size_t>(T_), 0.0f);
    for (int64_t t = 0; t < T_; ++t) c[size_t(t)] = float(alpha[size_t(t)] * e[size_t(t)]);
    applyCoefficients(k, c, rep_, spec_.paramCount);
    const float* L = k.losses();
    for (int64_t t = 0; t < T_; ++t)
      if (k.present(t) > 0) ds[size_t(t)] = float(e[size_t(t)] * double(L[t]) - 1.0);  // ∂(e^s·L − s)/∂s
    opt_.step(scale_.data(), ds.data());
    last_ = c;
    return {c, weightedTotal(c, L)};
  }
  std::vector<WeightingState> state() override {
    std::vector<WeightingState> s{{"mtl.loss_scale", {T_}, scale_.data()}};
    appendOptimizerState(s, opt_);
    return s;
  }
  void stateLoaded() override { restoreSteps(opt_); }

 private:
  const ModelSpec& spec_;
  int64_t T_;
  bool rep_;
  std::vector<Span> shared_;
  std::vector<float> scale_, last_;
  Optimizer opt_;
};

class CAGrad final : public Weighting {
 public:
  explicit CAGrad(const ModelSpec& spec)
      : spec_(spec), T_(int64_t(spec.tasks.size())), c_(weightingArg(spec, "c")), rep_(repGradRequested(spec, "cagrad")),
        shared_(sharedSpans(spec)), last_(size_t(T_), 1.0f / float(T_)) {
    if (T_ > 16)
      throwError("weighting `cagrad` solves its dual exactly on every face of the simplex, for at most 16 "
                 "tasks; model `{}` has {}",
                 spec.name, T_);
  }
  std::string describe() const override { return fmt::format("cagrad(c={}){}", c_, repSuffix(rep_, spec_)); }
  bool needsTaskGrads() const override { return !rep_; }
  bool needsRepGrads() const override { return rep_; }
  std::vector<float> currentWeights() const override { return last_; }
  StepResult step(StepKernels& k, int64_t) override {
    const std::vector<float> ones(static_cast<size_t>(T_), 1.0f);
    const std::vector<double> G = taskGram(k, spec_, shared_, rep_, ones.data());
    std::vector<bool> in(static_cast<size_t>(T_));
    for (int64_t t = 0; t < T_; ++t) in[size_t(t)] = k.present(t) > 0 && G[size_t(t * T_ + t)] > 0;
    const std::vector<double> coef = cagradCoefficients(G, T_, in, c_);
    std::vector<float> c(coef.begin(), coef.end());
    applyCoefficients(k, c, rep_, spec_.paramCount);
    last_ = c;
    return {c, weightedTotal(c, k.losses())};
  }

 private:
  const ModelSpec& spec_;
  int64_t T_;
  double c_;
  bool rep_;
  std::vector<Span> shared_;
  std::vector<float> last_;
};

// The non-linear methods: task_grads with weights 1, every parameter Σ_t w_t·g_t (the task-specific
// ones keep it), then the shared part replaced by the method's own.
class SharedSurgery : public Weighting {
 public:
  explicit SharedSurgery(const ModelSpec& spec)
      : spec_(spec), T_(int64_t(spec.tasks.size())), view_(spec), ones_(size_t(T_), 1.0f) {}
  bool needsTaskGrads() const override { return true; }
  std::vector<float> currentWeights() const override { return ones_; }

 protected:
  // Runs task_grads; k.grads() = Σ_t g_t; returns the shared rows.
  std::vector<double> begin(StepKernels& k) {
    k.taskGrads(ones_.data());
    combineTaskGrads(k, ones_, spec_.paramCount);
    return view_.gather(k, T_);
  }
  const ModelSpec& spec_;
  int64_t T_;
  SharedView view_;
  std::vector<float> ones_;
};

class GradVac final : public SharedSurgery {
 public:
  GradVac(const ModelSpec& spec, uint64_t seed)
      : SharedSurgery(spec), beta_(weightingArg(spec, "beta")), seed_(seed), rho_(size_t(T_ * T_), 0.0f) {}
  std::string describe() const override { return fmt::format("gradvac(beta={})", beta_); }
  StepResult step(StepKernels& k, int64_t step) override {
    const std::vector<double> g = begin(k);
    const int64_t D = view_.dim();
    std::vector<double> pc = g, norm(static_cast<size_t>(T_));
    std::vector<bool> in(static_cast<size_t>(T_));
    for (int64_t t = 0; t < T_; ++t) {
      norm[size_t(t)] = std::sqrt(dot(&g[size_t(t * D)], &g[size_t(t * D)], D));
      in[size_t(t)] = k.present(t) > 0 && norm[size_t(t)] > 0;
    }
    const std::vector<std::vector<int64_t>> orders = pcgradOrders(seed_, step, T_);
    for (int64_t i = 0; i < T_; ++i) {
      double* pi = &pc[size_t(i * D)];
      for (int64_t j : orders[size_t(i)]) {
        if (!in[size_t(i)] || !in[size_t(j)]) continue;
        const double* gj = &g[size_t(j * D)];
        const double ni = std::sqrt(dot(pi, pi, D)), nj = norm[size_t(j)];
        const double r = dot(pi, gj, D) / (ni * nj + 1e-8);
        float& target = rho_[size_t(i * T_ + j)];
        const double rt = target;
        if (r < rt) {
          const double w = ni * (rt * std::sqrt(std::max(0.0, 1 - r * r)) - r * std::sqrt(std::max(0.0, 1 - rt * rt))) /
                           (nj * std::sqrt(std::max(0.0, 1 - rt * rt)) + 1e-8);
          for (int64_t d = 0; d < D; ++d) pi[d] += w * gj[d];
        }
        target = float((1 - beta_) * rt + beta_ * r);
      }
    }
    std::vector<double> sum(static_cast<size_t>(D), 0.0);
    for (int64_t t = 0; t < T_; ++t)
      for (int64_t d = 0; d < D; ++d) sum[size_t(d)] += pc[size_t(t * D + d)];
    view_.scatter(k.grads(), sum.data());
    return {ones_, weightedTotal(ones_, k.losses())};
  }
  std::vector<WeightingState> state() override { return {{"mtl.rho", {T_, T_}, rho_.data()}}; }

 private:
  double beta_;
  uint64_t seed_;
  std::vector<float> rho_;  // [T, T]: φ̂_ij, the target similarity of task i's gradient to task j's
};

class GradDrop final : public SharedSurgery {
 public:
  GradDrop(const ModelSpec& spec, uint64_t seed) : SharedSurgery(spec), leak_(weightingArg(spec, "leak")), seed_(seed) {}
  std::string describe() const override { return leak_ > 0 ? fmt::format("graddrop(leak={})", leak_) : "graddrop"; }
  StepResult step(StepKernels& k, int64_t step) override {
    const std::vector<double> g = begin(k);
    const int64_t D = view_.dim();
    const std::vector<double> U = graddropUniforms(seed_, step, D);
    std::vector<double> out(static_cast<size_t>(D), 0.0);
    for (int64_t d = 0; d < D; ++d) {
      double s = 0, a = 0;
      for (int64_t t = 0; t < T_; ++t) s += g[size_t(t * D + d)], a += std::fabs(g[size_t(t * D + d)]);
      const double P = a > 0 ? 0.5 * (1 + s / a) : 0.5;  // sign purity
      const double u = U[size_t(d)];
      for (int64_t t = 0; t < T_; ++t) {
        const double x = g[size_t(t * D + d)];
        const bool keep = (P > u && x > 0) || (P < u && x < 0);
        out[size_t(d)] += x * (leak_ + (1 - leak_) * (keep ? 1.0 : 0.0));
      }
    }
    view_.scatter(k.grads(), out.data());
    return {ones_, weightedTotal(ones_, k.losses())};
  }

 private:
  double leak_;
  uint64_t seed_;
};

class DbMtl final : public SharedSurgery {
 public:
  explicit DbMtl(const ModelSpec& spec)
      : SharedSurgery(spec), beta_(weightingArg(spec, "beta")), sigma_(weightingArg(spec, "beta_sigma")),
        buffer_(size_t(T_ * view_.dim()), 0.0f), last_(size_t(T_), 1.0f) {}
  std::string describe() const override { return fmt::format("db_mtl(beta={}, beta_sigma={})", beta_, sigma_); }
  std::vector<float> currentWeights() const override { return last_; }
  StepResult step(StepKernels& k, int64_t step) override {
    k.taskGrads(ones_.data());
    const float* L = k.losses();
    std::vector<float> inv(static_cast<size_t>(T_), 0.0f);  // ∇ log(L_t + 1e-8) = g_t / (L_t + 1e-8)
    for (int64_t t = 0; t < T_; ++t)
      if (k.present(t) > 0) inv[size_t(t)] = float(1.0 / (double(L[t]) + 1e-8));
    combineTaskGrads(k, inv, spec_.paramCount);
    const std::vector<double> g = view_.gather(k, T_);
    const int64_t D = view_.dim();
    const double b = beta_ / std::pow(double(step), sigma_);
    std::vector<double> norm(static_cast<size_t>(T_), 0.0);
    for (int64_t t = 0; t < T_; ++t) {
      float* h = &buffer_[size_t(t * D)];
      if (k.present(t) > 0)
        for (int64_t d = 0; d < D; ++d) {
          const double gl = g[size_t(t * D + d)] * double(inv[size_t(t)]);
          h[d] = float(gl + b * (double(h[d]) - gl));
        }
      for (int64_t d = 0; d < D; ++d) norm[size_t(t)] += double(h[d]) * double(h[d]);
      norm[size_t(t)] = std::sqrt(norm[size_t(t)]);
    }
    const double top = *std::max_element(norm.begin(), norm.end());
    std::vector<double> out(static_cast<size_t>(D), 0.0);
    for (int64_t t = 0; t < T_; ++t) {
      const double alpha = norm[size_t(t)] > 0 ? top / (norm[size_t(t)] + 1e-8) : 0.0;
      last_[size_t(t)] = float(alpha);
      for (int64_t d = 0; d < D; ++d) out[size_t(d)] += alpha * double(buffer_[size_t(t * D + d)]);
    }
    view_.scatter(k.grads(), out.data());
    return {last_, weightedTotal(last_, L)};
  }
  std::vector<WeightingState> state() override {
    return {{"mtl.grad_buffer", {T_, view_.dim()}, buffer_.data()}, {"mtl.alpha", {T_}, last_.data()}};
  }

 private:
  double beta_, sigma_;
  std::vector<float> buffer_;  // [T, dim]: ĝ_t, the moving average of ∇ log L_t on the shared parameters
  std::vector<float> last_;
};

class MoCo final : public SharedSurgery {
 public:
  explicit MoCo(const ModelSpec& spec)
      : SharedSurgery(spec), beta_(weightingArg(spec, "beta")), betaSigma_(weightingArg(spec, "beta_sigma")),
        gamma_(weightingArg(spec, "gamma")), gammaSigma_(weightingArg(spec, "gamma_sigma")),
        rho_(weightingArg(spec, "rho")), y_(size_t(T_ * view_.dim()), 0.0f), lambda_(size_t(T_), 1.0f / float(T_)) {}
  std::string describe() const override {
    return fmt::format("moco(beta={}, beta_sigma={}, gamma={}, gamma_sigma={}, rho={})", beta_, betaSigma_, gamma_,
                       gammaSigma_, rho_);
  }
  std::vector<float> currentWeights() const override { return lambda_; }
  StepResult step(StepKernels& k, int64_t step) override {
    k.taskGrads(ones_.data());
    const float* L = k.losses();
    const std::vector<double> g = view_.gather(k, T_);
    const int64_t D = view_.dim();
    const double b = beta_ / std::pow(double(step), betaSigma_), c = gamma_ / std::pow(double(step), gammaSigma_);
    for (int64_t t = 0; t < T_; ++t) {
      if (k.present(t) == 0) continue;  // y_t keeps its last value
      const double* gt = &g[size_t(t * D)];
      const double scale = double(L[t]) / (std::sqrt(dot(gt, gt, D)) + 1e-8);
      float* y = &y_[size_t(t * D)];
      for (int64_t d = 0; d < D; ++d) y[d] = float(double(y[d]) - b * (double(y[d]) - scale * gt[d]));
    }
    std::vector<double> z(static_cast<size_t>(T_));  // λ − γ_k·(Y·Yᵀ + ρI)·λ, then its softmax
    for (int64_t i = 0; i < T_; ++i) {
      double s = rho_ * double(lambda_[size_t(i)]);
      for (int64_t j = 0; j < T_; ++j) {
        double yy = 0;
        for (int64_t d = 0; d < D; ++d) yy += double(y_[size_t(i * D + d)]) * double(y_[size_t(j * D + d)]);
        s += yy * double(lambda_[size_t(j)]);
      }
      z[size_t(i)] = double(lambda_[size_t(i)]) - c * s;
    }
    const double top = *std::max_element(z.begin(), z.end());
    double sum = 0;
    for (double& v : z) sum += v = std::exp(v - top);
    for (int64_t t = 0; t < T_; ++t) lambda_[size_t(t)] = float(z[size_t(t)] / sum);
    combineTaskGrads(k, lambda_, spec_.paramCount);
    std::vector<double> out(static_cast<size_t>(D), 0.0);
    for (int64_t t = 0; t < T_; ++t)
      for (int64_t d = 0; d < D; ++d) out[size_t(d)] += double(lambda_[size_t(t)]) * double(y_[size_t(t * D + d)]);
    view_.scatter(k.grads(), out.data());
    return {lambda_, weightedTotal(lambda_, L)};
  }
  std::vector<WeightingState> state() override {
    return {{"mtl.y", {T_, view_.dim()}, y_.data()}, {"mtl.lambda", {T_}, lambda_.data()}};
  }

 private:
  double beta_, betaSigma_, gamma_, gammaSigma_, rho_;
  std::vector<float> y_;       // [T, dim]: the tracked gradients
  std::vector<float> lambda_;  // [T]
};

}  // namespace

std::unique_ptr<Weighting> createGradientMethod(const ModelSpec& spec, uint64_t seed) {
  const WeightingKind w = spec.train.weighting;
  const bool rep = spec.train.repGrad && spec.repGradsStep && spec.repWidth > 0;
  if (!rep && !spec.taskGradsStep)
    throwError("internal: weighting `{}` needs the `task_grads` entry point, which model `{}` was compiled without",
               vocab::name(w), spec.name);
  switch (w) {
    case WeightingKind::Imtl: return std::make_unique<Imtl>(spec);
    case WeightingKind::CAGrad: return std::make_unique<CAGrad>(spec);
    case WeightingKind::GradVac: return std::make_unique<GradVac>(spec, seed);
    case WeightingKind::GradDrop: return std::make_unique<GradDrop>(spec, seed);
    case WeightingKind::DbMtl: return std::make_unique<DbMtl>(spec);
    case WeightingKind::MoCo: return std::make_unique<MoCo>(spec);
    default: break;
  }
  throwError("internal: weighting `{}` is not a gradient method of GradientMethods.cpp", vocab::name(w));
}

}  // namespace mtlc::rt
