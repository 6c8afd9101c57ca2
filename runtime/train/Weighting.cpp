#include "runtime/train/Weighting.h"
#include "runtime/train/WeightingParts.h"

#include "spec/Error.h"
#include "runtime/core/Rng.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string_view>

namespace mtlc::rt {

int64_t WeightingState::size() const {
  int64_t s = 1;
  for (int64_t d : shape) s *= d;
  return s;
}

// ---- the maths ----------------------------------------------------------------------------------

std::vector<double> minNormWeights(const std::vector<double>& G, int64_t T) {
  if (T <= 0) return {};
  if (T == 1) return {1.0};
  auto g = [&](int64_t i, int64_t j) { return G[size_t(i * T + j)]; };
  double trace = 0;
  for (int64_t i = 0; i < T; ++i) trace += g(i, i);
  if (!(trace > 0)) return std::vector<double>(size_t(T), 1.0 / double(T));  // all gradients zero
  // min over γ ∈ [0, 1] of ‖γ·a + (1 − γ)·b‖², from aa = a·a, ab = a·b, bb = b·b.
  auto pair = [](double aa, double ab, double bb) {
    const double den = aa + bb - 2 * ab;
    if (!(den > 0)) return 0.5;
    return std::clamp((bb - ab) / den, 0.0, 1.0);
  };
  std::vector<double> alpha(size_t(T), 0.0);
  // The best pair (first one on ties).
  double best = std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < T; ++i)
    for (int64_t j = i + 1; j < T; ++j) {
      const double c = pair(g(i, i), g(i, j), g(j, j));
      const double cost = c * c * g(i, i) + 2 * c * (1 - c) * g(i, j) + (1 - c) * (1 - c) * g(j, j);
      if (cost < best) {
        best = cost;
        std::fill(alpha.begin(), alpha.end(), 0.0);
        alpha[size_t(i)] = c;
        alpha[size_t(j)] = 1 - c;
      }
    }
  if (T == 2) return alpha;
  std::vector<double> Ga(static_cast<size_t>(T));
  for (int iter = 0; iter < 250; ++iter) {
    for (int64_t i = 0; i < T; ++i) {
      double s = 0;
      for (int64_t j = 0; j < T; ++j) s += g(i, j) * alpha[size_t(j)];
      Ga[size_t(i)] = s;
    }
    const int64_t t = int64_t(std::min_element(Ga.begin(), Ga.end()) - Ga.begin());
    double vv = 0;
    for (int64_t i = 0; i < T; ++i) vv += alpha[size_t(i)] * Ga[size_t(i)];
    const double vt = Ga[size_t(t)], tt = g(t, t);
    double gamma;
    if (vt >= vv) gamma = 1;        // no vertex improves on the current point
    else if (vt >= tt) gamma = 0;   // the vertex itself is best
    else gamma = (tt - vt) / (vv + tt - 2 * vt);
    std::vector<double> next(static_cast<size_t>(T));
    double change = 0;
    for (int64_t i = 0; i < T; ++i) {
      next[size_t(i)] = gamma * alpha[size_t(i)] + (i == t ? 1 - gamma : 0.0);
      change += std::fabs(next[size_t(i)] - alpha[size_t(i)]);
    }
    alpha = std::move(next);
    if (change < 1e-6) break;
  }
  return alpha;
}

std::vector<float> pcgradProject(const float* g, int64_t T, int64_t dim,
                                 const std::vector<std::vector<int64_t>>& orders) {
  std::vector<float> out(g, g + T * dim);
  std::vector<double> norm2(size_t(T), 0.0);
  for (int64_t j = 0; j < T; ++j)
    for (int64_t k = 0; k < dim; ++k) norm2[size_t(j)] += double(g[j * dim + k]) * double(g[j * dim + k]);
  for (int64_t i = 0; i < T; ++i) {
    float* gi = out.data() + i * dim;
    for (int64_t j : orders.at(size_t(i))) {
      if (j == i || norm2[size_t(j)] <= 0) continue;
      const float* gj = g + j * dim;
      double dot = 0;
      for (int64_t k = 0; k < dim; ++k) dot += double(gi[k]) * double(gj[k]);
      if (dot >= 0) continue;
      const double c = dot / norm2[size_t(j)];
      for (int64_t k = 0; k < dim; ++k) gi[k] = float(double(gi[k]) - c * double(gj[k]));
    }
  }
  return out;
}

std::vector<std::vector<int64_t>> pcgradOrders(uint64_t seed, int64_t step, int64_t T) {
  Rng rng(mix64(mix64(seed) ^ uint64_t(step)) ^ 0x5043u);
  auto shuffle = [&](std::vector<int64_t>& v) {
    for (int64_t i = int64_t(v.size()) - 1; i > 0; --i) std::swap(v[size_t(i)], v[uniformBelow(rng, uint64_t(i) + 1)]);
  };
  std::vector<int64_t> tasks(static_cast<size_t>(T));
  std::iota(tasks.begin(), tasks.end(), 0);
  shuffle(tasks);
  std::vector<std::vector<int64_t>> orders(static_cast<size_t>(T));
  for (int64_t i : tasks) {
    std::vector<int64_t> others;
    for (int64_t j = 0; j < T; ++j)
      if (j != i) others.push_back(j);
    shuffle(others);
    orders[size_t(i)] = std::move(others);
  }
  return orders;
}

std::vector<double> dwaWeights(const std::vector<double>& older, const std::vector<double>& newer,
                               double temperature) {
  const size_t T = newer.size();
  std::vector<double> r(T, 1.0);
  for (size_t i = 0; i < T; ++i)
    if (std::isfinite(older[i]) && std::isfinite(newer[i]) && older[i] > 0) r[i] = newer[i] / older[i];
  const double mx = *std::max_element(r.begin(), r.end());
  double z = 0;
  std::vector<double> w(T);
  for (size_t i = 0; i < T; ++i) z += w[i] = std::exp((r[i] - mx) / temperature);
  for (double& x : w) x = double(T) * x / z;
  return w;
}

// ---- strategies ---------------------------------------------------------------------------------

// ---- parts the strategies share (WeightingParts.h) ------------------------------------------------

std::vector<Span> sharedSpans(const ModelSpec& spec) {
  // In the table's order, not the arena's: the methods' random draws (graddrop) and sums follow
  // the parameters as declared, whatever the arena's layout (lowering moves sibling weights).
  std::vector<Span> s;
  for (const ParamSpec& p : spec.params)
    if (p.shared() && p.learnable() && p.size > 0) s.push_back({p.offset, p.offset + p.size});
  return s;
}

double dotOver(const std::vector<Span>& spans, const float* a, const float* b) {
  double s = 0;
  for (auto [lo, hi] : spans)
    for (int64_t k = lo; k < hi; ++k) s += double(a[k]) * double(b[k]);
  return s;
}

void combineTaskGrads(StepKernels& k, const std::vector<float>& w, int64_t P) {
  float* g = k.grads();
  std::fill(g, g + P, 0.0f);
  for (size_t t = 0; t < w.size(); ++t) {
    const float* gt = k.taskGrad(int64_t(t));
    const float wt = w[t];
    for (int64_t p = 0; p < P; ++p) g[p] += wt * gt[p];
  }
}

double weightedTotal(const std::vector<float>& w, const float* losses) {
  double s = 0;
  for (size_t t = 0; t < w.size(); ++t) s += double(w[t]) * double(losses[t]);
  return s;
}

OptimizerSpec ownOptimizer(const ModelSpec& spec) {
  OptimizerSpec o = spec.train.optimizer;
  o.weightDecay = 0;
  return o;
}

void appendOptimizerState(std::vector<WeightingState>& out, Optimizer& opt) {
  for (const Optimizer::StateTensor& s : opt.state()) out.push_back({"mtl." + s.name, {s.size}, s.data});
}

void restoreSteps(Optimizer& opt) {
  for (const Optimizer::StateTensor& s : opt.state())
    if (s.name == "optim.step") opt.setSteps(int64_t(s.data[0]));
}

std::vector<double> taskGram(StepKernels& k, const ModelSpec& spec, const std::vector<Span>& shared, bool rep,
                             const float* lossWeights) {
  const int64_t T = int64_t(spec.tasks.size());
  std::vector<Span> spans = shared;
  if (rep) {
    k.repGrads(lossWeights);
    spans = {{0, k.n() * spec.repWidth}};
  } else {
    k.taskGrads(lossWeights);
  }
  auto g = [&](int64_t t) { return rep ? k.repGrad(t) : k.taskGrad(t); };
  std::vector<double> G(size_t(T * T));
  for (int64_t i = 0; i < T; ++i)
    for (int64_t j = i; j < T; ++j) G[size_t(i * T + j)] = G[size_t(j * T + i)] = dotOver(spans, g(i), g(j));
  return G;
}

bool repGradRequested(const ModelSpec& spec, const char* method) {
  if (!spec.train.repGrad) return false;
  if (spec.repGradsStep && spec.repWidth > 0) return true;
  throwError("weighting `{}(rep_grad=true)` needs one shared representation that every task's head reads, "
             "which model `{}` does not have; drop rep_grad to work on the shared parameters' gradients",
             method, spec.name);
}

double weightingArg(const ModelSpec& spec, const char* name) {
  const vocab::Entry& row = vocab::row(spec.train.weighting);
  for (int i = 0; i < vocab::kMaxArgs && row.args[i].name; ++i)
    if (std::string_view(row.args[i].name) == name)
      return size_t(i) < spec.train.weightingArgs.size() ? spec.train.weightingArgs[size_t(i)] : row.args[i].def;
  throwError("internal: weighting `{}` has no argument `{}`", row.name, name);
}

std::vector<bool> measureLosses(StepKernels& k, int64_t T, bool positive) {
  const std::vector<float> ones(static_cast<size_t>(T), 1.0f);
  k.measureStep(ones.data());
  std::vector<bool> in(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) in[size_t(t)] = k.present(t) > 0 && (!positive || k.losses()[t] > 0);
  return in;
}

namespace {

class Fixed final : public Weighting {
 public:
  Fixed(WeightingKind kind, std::vector<float> w) : kind_(kind), w_(std::move(w)) {}
  std::string describe() const override { return vocab::name(kind_); }
  StepResult step(StepKernels& k, int64_t) override {
    k.trainStep(w_.data());
    return {w_, weightedTotal(w_, k.losses())};
  }
  std::vector<float> currentWeights() const override { return w_; }

 private:
  WeightingKind kind_;
  std::vector<float> w_;
};

class Uncertainty final : public Weighting {
 public:
  explicit Uncertainty(const ModelSpec& spec)
      : T_(int64_t(spec.tasks.size())), logVar_(size_t(T_), 0.0f), opt_(ownOptimizer(spec), T_) {}
  std::string describe() const override { return vocab::name(WeightingKind::Uncertainty); }
  std::vector<float> currentWeights() const override {
    std::vector<float> w(static_cast<size_t>(T_));
    for (int64_t t = 0; t < T_; ++t) w[size_t(t)] = float(0.5 * std::exp(-double(logVar_[size_t(t)])));
    return w;
  }
  StepResult step(StepKernels& k, int64_t) override {
    const std::vector<float> w = currentWeights();
    k.trainStep(w.data());
    const float* L = k.losses();
    double objective = 0;
    std::vector<float> grad(static_cast<size_t>(T_));
    for (int64_t t = 0; t < T_; ++t) {
      const double s = logVar_[size_t(t)], e = std::exp(-s);
      objective += 0.5 * (e * double(L[t]) + s);
      grad[size_t(t)] = k.present(t) > 0 ? float(0.5 * (1.0 - e * double(L[t]))) : 0.0f;
    }
    opt_.step(logVar_.data(), grad.data());
    return {w, objective};
  }
  std::vector<WeightingState> state() override {
    std::vector<WeightingState> s{{"mtl.log_var", {T_}, logVar_.data()}};
    appendOptimizerState(s, opt_);
    return s;
  }
  void stateLoaded() override { restoreSteps(opt_); }

 private:
  int64_t T_;
  std::vector<float> logVar_;
  Optimizer opt_;
};

class Dwa final : public Weighting {
 public:
  Dwa(const ModelSpec& spec, double temperature)
      : T_(int64_t(spec.tasks.size())), tau_(temperature), history_(size_t(2 * T_), std::nanf("")) {}
  std::string describe() const override { return fmt::format("dwa(temperature={})", tau_); }
  std::vector<float> currentWeights() const override {
    if (epochs_ < 2) return std::vector<float>(size_t(T_), 1.0f);
    std::vector<double> older(history_.begin(), history_.begin() + T_), newer(history_.begin() + T_, history_.end());
    std::vector<double> w = dwaWeights(older, newer, tau_);
    return std::vector<float>(w.begin(), w.end());
  }
  StepResult step(StepKernels& k, int64_t) override {
    const std::vector<float> w = currentWeights();
    k.trainStep(w.data());
    return {w, weightedTotal(w, k.losses())};
  }
  void endEpoch(const std::vector<double>& means) override {
    for (int64_t t = 0; t < T_; ++t) {
      history_[size_t(t)] = history_[size_t(T_ + t)];
      history_[size_t(T_ + t)] = float(means[size_t(t)]);
    }
    epochs_ = epochs_ + 1;
  }
  std::vector<WeightingState> state() override {
    return {{"mtl.loss_history", {2, T_}, history_.data()}, {"mtl.epochs", {1}, &epochs_}};
  }

 private:
  int64_t T_;
  double tau_;
  std::vector<float> history_;  // [2, T]: epoch e−2, then e−1
  float epochs_ = 0;            // complete epochs seen
};

bool endsWith(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// GradNorm's W: the last parameter named `*.weight` (table order) that every task's loss reaches.
// A tensor some task never reaches would give that task G_i = 0 whatever it learns, and its
// weight would only ever rise.
const ParamSpec& gradNormLayer(const ModelSpec& spec) {
  const int64_t T = int64_t(spec.tasks.size());
  const ParamSpec* W = nullptr;
  for (const ParamSpec& p : spec.params)
    if (p.reachedByAll(T) && endsWith(p.name, ".weight")) W = &p;
  if (W) return *W;
  const ParamSpec* lastShared = nullptr;
  for (const ParamSpec& p : spec.params)
    if (p.shared() && endsWith(p.name, ".weight")) lastShared = &p;
  if (!lastShared)
    throwError("weighting `gradnorm` measures every task's gradient on one shared weight, but model `{}` has "
               "no parameter named `*.weight` that two or more tasks' losses reach",
               spec.name);
  std::vector<std::string> reaching;
  for (int t : lastShared->tasks) reaching.push_back(spec.tasks[size_t(t)].name);
  throwError("weighting `gradnorm` measures every task's gradient on one weight that all of them reach, but in "
             "model `{}` no parameter named `*.weight` is reached by all {} tasks' losses (the last shared one, "
             "`{}`, only by {}); let every task read one shared block, or choose another weighting",
             spec.name, T, lastShared->name, fmt::join(reaching, ", "));
}

class GradNorm final : public Weighting {
 public:
  GradNorm(const ModelSpec& spec, double alpha)
      : spec_(spec), T_(int64_t(spec.tasks.size())), alpha_(alpha), W_(&gradNormLayer(spec)),
        w_(size_t(T_), 1.0f), initial_(size_t(T_), std::nanf("")), opt_(ownOptimizer(spec), T_) {}
  std::string describe() const override {
    return fmt::format("gradnorm(alpha={}) on {}", alpha_, W_->name);
  }
  bool needsTaskGrads() const override { return true; }
  std::vector<float> currentWeights() const override { return w_; }
  StepResult step(StepKernels& k, int64_t) override {
    const std::vector<float> w = w_;
    k.taskGrads(w.data());
    const float* L = k.losses();
    std::vector<double> norm(static_cast<size_t>(T_)), G(static_cast<size_t>(T_)), Lt(size_t(T_), 1.0);
    for (int64_t t = 0; t < T_; ++t) {
      const float* g = k.taskGrad(t) + W_->offset;
      double s = 0;
      for (int64_t i = 0; i < W_->size; ++i) s += double(g[i]) * double(g[i]);
      norm[size_t(t)] = std::sqrt(s);
      G[size_t(t)] = double(w[size_t(t)]) * norm[size_t(t)];
      if (std::isnan(initial_[size_t(t)]) && k.present(t) > 0 && L[t] > 0) initial_[size_t(t)] = L[t];
      if (!std::isnan(initial_[size_t(t)]) && k.present(t) > 0)
        Lt[size_t(t)] = double(L[t]) / double(initial_[size_t(t)]);
    }
    const double meanG = std::accumulate(G.begin(), G.end(), 0.0) / double(T_);
    const double meanL = std::accumulate(Lt.begin(), Lt.end(), 0.0) / double(T_);
    std::vector<float> gradW(static_cast<size_t>(T_));
    for (int64_t t = 0; t < T_; ++t) {
      const double r = meanL > 0 ? Lt[size_t(t)] / meanL : 1.0;
      const double target = meanG * std::pow(r, alpha_);
      const double d = G[size_t(t)] - target;
      gradW[size_t(t)] = float((d > 0 ? 1.0 : d < 0 ? -1.0 : 0.0) * norm[size_t(t)]);
    }
    combineTaskGrads(k, w, spec_.paramCount);
    opt_.step(w_.data(), gradW.data());
    double sum = 0;
    for (float& x : w_) sum += x = std::max(x, 1e-4f);
    for (float& x : w_) x = float(double(x) * double(T_) / sum);
    return {w, weightedTotal(w, L)};
  }
  std::vector<WeightingState> state() override {
    std::vector<WeightingState> s{{"mtl.weights", {T_}, w_.data()}, {"mtl.initial_loss", {T_}, initial_.data()}};
    appendOptimizerState(s, opt_);
    return s;
  }
  void stateLoaded() override { restoreSteps(opt_); }

 private:
  const ModelSpec& spec_;
  int64_t T_;
  double alpha_;
  const ParamSpec* W_ = nullptr;
  std::vector<float> w_, initial_;
  Optimizer opt_;
};

class PCGrad final : public Weighting {
 public:
  PCGrad(const ModelSpec& spec, uint64_t seed)
      : spec_(spec), T_(int64_t(spec.tasks.size())), seed_(seed), shared_(sharedSpans(spec)) {
    for (const TaskSpec& t : spec.tasks) w_.push_back(float(t.weight));
    for (auto [lo, hi] : shared_) dim_ += hi - lo;
  }
  std::string describe() const override { return vocab::name(WeightingKind::PCGrad); }
  bool needsTaskGrads() const override { return true; }
  std::vector<float> currentWeights() const override { return w_; }
  StepResult step(StepKernels& k, int64_t step) override {
    k.taskGrads(w_.data());
    combineTaskGrads(k, w_, spec_.paramCount);  // right for the task-specific parameters
    if (dim_ > 0 && T_ > 1) {
      std::vector<float> g(size_t(T_ * dim_));
      for (int64_t t = 0; t < T_; ++t) {
        float* dst = g.data() + t * dim_;
        for (auto [lo, hi] : shared_) dst = std::copy(k.taskGrad(t) + lo, k.taskGrad(t) + hi, dst);
      }
      const std::vector<float> pc = pcgradProject(g.data(), T_, dim_, pcgradOrders(seed_, step, T_));
      float* out = k.grads();
      int64_t at = 0;
      for (auto [lo, hi] : shared_) {
        for (int64_t p = lo; p < hi; ++p, ++at) {
          float s = 0;
          for (int64_t t = 0; t < T_; ++t) s += w_[size_t(t)] * pc[size_t(t * dim_ + at)];
          out[p] = s;
        }
      }
    }
    return {w_, weightedTotal(w_, k.losses())};
  }

 private:
  const ModelSpec& spec_;
  int64_t T_;
  uint64_t seed_;
  std::vector<Span> shared_;
  int64_t dim_ = 0;
  std::vector<float> w_;
};

class Mgda final : public Weighting {
 public:
  explicit Mgda(const ModelSpec& spec)
      : spec_(spec), T_(int64_t(spec.tasks.size())), rep_(spec.repGradsStep && spec.repWidth > 0),
        shared_(sharedSpans(spec)), uniform_(size_t(T_), 1.0f / float(T_)), last_(uniform_) {}
  std::string describe() const override {
    return rep_ ? fmt::format("mgda (MGDA-UB on the {}-wide shared representation)", spec_.repWidth)
                : "mgda (on the shared parameters' gradients)";
  }
  bool needsTaskGrads() const override { return !rep_; }
  bool needsRepGrads() const override { return rep_; }
  std::vector<float> currentWeights() const override { return last_; }
  StepResult step(StepKernels& k, int64_t) override {
    const std::vector<double> alpha = minNormWeights(taskGram(k, spec_, shared_, rep_, uniform_.data()), T_);
    std::vector<float> w(alpha.begin(), alpha.end());
    if (rep_) k.trainStep(w.data());
    else combineTaskGrads(k, w, spec_.paramCount);
    last_ = w;
    return {w, weightedTotal(w, k.losses())};
  }

 private:
  const ModelSpec& spec_;
  int64_t T_;
  bool rep_;
  std::vector<Span> shared_;
  std::vector<float> uniform_, last_;
};

}  // namespace

std::unique_ptr<Weighting> Weighting::create(const ModelSpec& spec, uint64_t seed) {
  const WeightingKind w = spec.train.weighting;
  const int64_t T = int64_t(spec.tasks.size());
  auto require = [&](mtlc_entry_fn fn, const char* entry) {
    if (!fn)
      throwError("internal: weighting `{}` needs the `{}` entry point, which model `{}` was compiled without",
                 vocab::name(w), entry, spec.name);
  };
  switch (w) {
    case WeightingKind::Fixed: {
      std::vector<float> weights;
      for (const TaskSpec& t : spec.tasks) weights.push_back(float(t.weight));
      return std::make_unique<Fixed>(w, std::move(weights));
    }
    case WeightingKind::Uniform:
      return std::make_unique<Fixed>(w, std::vector<float>(size_t(T), 1.0f / float(T)));
    case WeightingKind::Uncertainty: return std::make_unique<Uncertainty>(spec);
    case WeightingKind::Dwa:
      return std::make_unique<Dwa>(spec, spec.train.weightingParam > 0 ? spec.train.weightingParam : 2.0);
    case WeightingKind::GradNorm:
      require(spec.taskGradsStep, "task_grads");
      return std::make_unique<GradNorm>(spec, spec.train.weightingParam);
    case WeightingKind::PCGrad:
      require(spec.taskGradsStep, "task_grads");
      return std::make_unique<PCGrad>(spec, seed);
    case WeightingKind::Mgda:
      if (!(spec.repGradsStep && spec.repWidth > 0)) require(spec.taskGradsStep, "task_grads");
      return std::make_unique<Mgda>(spec);
    case WeightingKind::Rlw:
    case WeightingKind::Gls:
    case WeightingKind::Stch:
    case WeightingKind::Famo: return createLossMethod(spec, seed);
    case WeightingKind::Imtl:
    case WeightingKind::CAGrad:
    case WeightingKind::GradVac:
    case WeightingKind::GradDrop:
    case WeightingKind::DbMtl:
    case WeightingKind::MoCo: return createGradientMethod(spec, seed);
    case WeightingKind::UPGrad:
    case WeightingKind::AlignedMtl:
    case WeightingKind::NashMtl:
    case WeightingKind::FairGrad:
    case WeightingKind::ExcessMtl: return createSolverMethod(spec, seed);
  }
  throwError("internal: weighting kind {} has no strategy", int(w));
}

}  // namespace mtlc::rt
