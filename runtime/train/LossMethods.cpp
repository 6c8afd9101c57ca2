// The loss-level methods from LibMTL (issue #26): rlw, gls, stch, famo. Their weights come from the
// task losses alone (no task gradients); Weighting.h's table specifies each.
#include "runtime/train/Weighting.h"
#include "runtime/train/WeightingParts.h"

#include "spec/Error.h"
#include "runtime/core/Rng.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace mtlc::rt {

std::vector<double> rlwWeights(uint64_t seed, int64_t step, int64_t T) {
  Rng rng(mix64(mix64(seed) ^ uint64_t(step)) ^ 0x524Cu);
  std::vector<double> z(static_cast<size_t>(T));
  for (double& x : z) x = standardNormal(rng);
  const double mx = *std::max_element(z.begin(), z.end());
  double sum = 0;
  for (double& x : z) sum += x = std::exp(x - mx);
  for (double& x : z) x /= sum;
  return z;
}

namespace {

class Rlw final : public Weighting {
 public:
  Rlw(const ModelSpec& spec, uint64_t seed)
      : T_(int64_t(spec.tasks.size())), seed_(seed), last_(size_t(T_), 1.0f / float(T_)) {}
  std::string describe() const override { return "rlw"; }
  std::vector<float> currentWeights() const override { return last_; }
  StepResult step(StepKernels& k, int64_t step) override {
    const std::vector<double> w = rlwWeights(seed_, step, T_);
    last_.assign(w.begin(), w.end());
    k.trainStep(last_.data());
    return {last_, weightedTotal(last_, k.losses())};
  }

 private:
  int64_t T_;
  uint64_t seed_;
  std::vector<float> last_;
};

class Gls final : public Weighting {
 public:
  explicit Gls(const ModelSpec& spec) : T_(int64_t(spec.tasks.size())), last_(size_t(T_), 1.0f / float(T_)) {}
  std::string describe() const override { return "gls"; }
  std::vector<float> currentWeights() const override { return last_; }
  StepResult step(StepKernels& k, int64_t) override {
    const std::vector<bool> in = measureLosses(k, T_, /*positive=*/true);
    const float* L = k.losses();
    double logSum = 0;
    int64_t count = 0;
    for (int64_t t = 0; t < T_; ++t)
      if (in[size_t(t)]) logSum += std::log(double(L[t])), ++count;
    const double G = count ? std::exp(logSum / double(count)) : 0.0;
    for (int64_t t = 0; t < T_; ++t)
      last_[size_t(t)] = in[size_t(t)] ? float(G / (double(count) * double(L[t]))) : 0.0f;
    k.trainStep(last_.data());
    return {last_, G};
  }

 private:
  int64_t T_;
  std::vector<float> last_;
};

class Stch final : public Weighting {
 public:
  explicit Stch(const ModelSpec& spec)
      : T_(int64_t(spec.tasks.size())), mu_(weightingArg(spec, "mu")),
        warmup_(int64_t(weightingArg(spec, "warmup_epochs"))), nadirSum_(size_t(T_), 0.0f),
        nadirSteps_(size_t(T_), 0.0f), last_(size_t(T_), 1.0f / float(T_)) {}
  std::string describe() const override { return fmt::format("stch(mu={}, warmup_epochs={})", mu_, warmup_); }
  std::vector<float> currentWeights() const override { return last_; }
  StepResult step(StepKernels& k, int64_t) override {
    const std::vector<bool> in = measureLosses(k, T_, /*positive=*/true);
    const double total = int64_t(epochs_) <= warmup_ ? warmupWeights(in, k.losses()) : smoothWeights(in, k.losses());
    k.trainStep(last_.data());
    return {last_, total};
  }
  void endEpoch(const std::vector<double>&) override { epochs_ += 1; }
  std::vector<WeightingState> state() override {
    return {{"mtl.epochs", {1}, &epochs_}, {"mtl.nadir_sum", {T_}, nadirSum_.data()},
            {"mtl.nadir_steps", {T_}, nadirSteps_.data()}};
  }

 private:
  // Epochs 1…W+1: Σ_P log(L_i + 1e-20); the last of them sums the nadir point's losses.
  double warmupWeights(const std::vector<bool>& in, const float* L) {
    double objective = 0;
    for (int64_t t = 0; t < T_; ++t) {
      const size_t i = size_t(t);
      last_[i] = in[i] ? float(1.0 / (double(L[t]) + 1e-20)) : 0.0f;
      if (!in[i]) continue;
      objective += std::log(double(L[t]) + 1e-20);
      if (int64_t(epochs_) == warmup_) nadirSum_[i] += L[t], nadirSteps_[i] += 1;
    }
    return objective;
  }
  // Later: T·μ·log Σ_P exp(u_i/μ), u_i = log(L_i/n_i + 1e-20).
  double smoothWeights(const std::vector<bool>& in, const float* L) {
    const double inf = std::numeric_limits<double>::infinity();
    std::vector<double> u(static_cast<size_t>(T_), -inf), nadir(u.size(), 1.0);
    for (int64_t t = 0; t < T_; ++t) {
      const size_t i = size_t(t);
      if (nadirSteps_[i] > 0) nadir[i] = double(nadirSum_[i]) / double(nadirSteps_[i]);
      if (in[i]) u[i] = std::log(double(L[t]) / nadir[i] + 1e-20) / mu_;
    }
    const double mx = *std::max_element(u.begin(), u.end());
    if (mx == -inf) {  // no task in P: nothing to learn from this batch
      std::fill(last_.begin(), last_.end(), 0.0f);
      return 0;
    }
    double z = 0;
    for (double x : u) z += x == -inf ? 0.0 : std::exp(x - mx);
    for (int64_t t = 0; t < T_; ++t) {
      const size_t i = size_t(t);
      const double soft = in[i] ? std::exp(u[i] - mx) / z : 0.0;
      last_[i] = float(double(T_) * soft / (double(L[t]) + 1e-20 * nadir[i]));
    }
    return double(T_) * mu_ * (mx + std::log(z));
  }

  int64_t T_;
  double mu_;
  int64_t warmup_;
  float epochs_ = 0;  // complete epochs seen
  std::vector<float> nadirSum_, nadirSteps_, last_;
};

class Famo final : public Weighting {
 public:
  explicit Famo(const ModelSpec& spec)
      : T_(int64_t(spec.tasks.size())), lr_(weightingArg(spec, "lr")), decay_(weightingArg(spec, "weight_decay")),
        logits_(size_t(T_), 0.0f), prev_(size_t(T_)), in_(size_t(T_)), opt_(logitOptimizer(lr_, decay_), T_) {}
  std::string describe() const override { return fmt::format("famo(lr={}, weight_decay={})", lr_, decay_); }
  std::vector<float> currentWeights() const override {
    const std::vector<double> z = softmax();
    return std::vector<float>(z.begin(), z.end());
  }
  StepResult step(StepKernels& k, int64_t) override {
    in_ = measureLosses(k, T_, /*positive=*/false);
    const float* L = k.losses();
    const std::vector<double> z = softmax();
    double c = 0;
    for (int64_t t = 0; t < T_; ++t) {
      prev_[size_t(t)] = L[t];
      if (in_[size_t(t)]) c += z[size_t(t)] / (double(L[t]) + 1e-8);
    }
    std::vector<float> w(static_cast<size_t>(T_), 0.0f);
    for (int64_t t = 0; t < T_; ++t)
      if (in_[size_t(t)]) w[size_t(t)] = float(z[size_t(t)] / (double(L[t]) + 1e-8) / c);
    k.trainStep(w.data());
    return {w, weightedTotal(w, k.losses())};
  }
  void afterUpdate(StepKernels& k, int64_t) override {
    const std::vector<float> ones(static_cast<size_t>(T_), 1.0f);
    k.measureStep(ones.data());
    const std::vector<double> z = softmax();
    std::vector<double> delta(static_cast<size_t>(T_), 0.0);
    double zDelta = 0;
    for (int64_t t = 0; t < T_; ++t) {
      const size_t i = size_t(t);
      if (in_[i]) delta[i] = std::log(double(prev_[i]) + 1e-8) - std::log(double(k.losses()[t]) + 1e-8);
      zDelta += z[i] * delta[i];
    }
    std::vector<float> grad(static_cast<size_t>(T_));
    for (size_t i = 0; i < grad.size(); ++i) grad[i] = float(z[i] * (delta[i] - zDelta));
    opt_.step(logits_.data(), grad.data());
  }
  std::vector<WeightingState> state() override {
    std::vector<WeightingState> s{{"mtl.logits", {T_}, logits_.data()}};
    appendOptimizerState(s, opt_);
    return s;
  }
  void stateLoaded() override { restoreSteps(opt_); }

 private:
  static OptimizerSpec logitOptimizer(double lr, double decay) {
    OptimizerSpec o;  // torch.optim.Adam's defaults otherwise
    o.kind = OptimizerKind::Adam;
    o.lr = lr;
    o.weightDecay = decay;
    return o;
  }
  std::vector<double> softmax() const {
    const double mx = double(*std::max_element(logits_.begin(), logits_.end()));
    std::vector<double> z(logits_.size());
    double sum = 0;
    for (size_t i = 0; i < z.size(); ++i) sum += z[i] = std::exp(double(logits_[i]) - mx);
    for (double& x : z) x /= sum;
    return z;
  }
  int64_t T_;
  double lr_, decay_;
  std::vector<float> logits_, prev_;
  std::vector<bool> in_;  // this step's P, for afterUpdate
  Optimizer opt_;
};

}  // namespace

std::unique_ptr<Weighting> createLossMethod(const ModelSpec& spec, uint64_t seed) {
  switch (spec.train.weighting) {
    case WeightingKind::Rlw: return std::make_unique<Rlw>(spec, seed);
    case WeightingKind::Gls: return std::make_unique<Gls>(spec);
    case WeightingKind::Stch: return std::make_unique<Stch>(spec);
    case WeightingKind::Famo: return std::make_unique<Famo>(spec);
    default: break;
  }
  throwError("internal: weighting `{}` is not a loss-level method", vocab::name(spec.train.weighting));
}

}  // namespace mtlc::rt
