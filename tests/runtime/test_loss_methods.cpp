// rlw, gls, stch and famo (LossMethods.cpp) on fixed losses, against numbers worked out by hand
// from Weighting.h's formulas; tests/pytorch/weighting_loss.py checks them end to end in PyTorch.
#include "WeightingSpecs.h"

#include "runtime/train/Weighting.h"

#include <cmath>

using namespace mtlc::rt;
using namespace mtlc::rt::test;

namespace {

// Losses set by the test; every kernel call is recorded with its weights. measureStep is
// StepKernels' default (a trainStep), so it is recorded as "train" too.
struct LossKernels final : StepKernels {
  std::vector<float> L, g{0.0f};
  std::vector<int64_t> presentCount;
  std::vector<std::vector<float>> given;
  explicit LossKernels(std::vector<float> losses) : L(std::move(losses)), presentCount(L.size(), 1) {}
  void trainStep(const float* w) override { given.emplace_back(w, w + L.size()); }
  void taskGrads(const float*) override { FAIL("task_grads"); }
  void repGrads(const float*) override { FAIL("rep_grads"); }
  const float* losses() const override { return L.data(); }
  float* grads() override { return g.data(); }
  const float* taskGrad(int64_t) const override { return nullptr; }
  const float* repGrad(int64_t) const override { return nullptr; }
  int64_t n() const override { return 4; }
  int64_t present(int64_t t) const override { return presentCount[size_t(t)]; }
};

ModelSpec specOf(int64_t T, const std::string& weighting, std::vector<double> args = {}) {
  ModelSpec s = specWithTasks(T, weighting);
  s.train.weightingArgs = std::move(args);
  return s;
}

void checkWeights(const std::vector<float>& got, const std::vector<double>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    INFO("task " << i);
    CHECK(double(got[i]) == Approx(want[i]).epsilon(1e-6).margin(1e-9));
  }
}

}  // namespace

TEST_CASE("rlw: softmax of the seeded normal draw, one per step", "[weighting][rlw]") {
  const std::vector<double> a = rlwWeights(7, 1, 3), b = rlwWeights(7, 2, 3);
  CHECK(a == rlwWeights(7, 1, 3));  // a function of (seed, step)
  CHECK(a != b);
  CHECK(a != rlwWeights(8, 1, 3));
  CHECK(a[0] + a[1] + a[2] == Approx(1.0));
  auto w = Weighting::create(specOf(3, "rlw"), 7);
  LossKernels k({1.0f, 2.0f, 3.0f});
  const StepResult r = w->step(k, 2);
  REQUIRE(k.given.size() == 1);  // one train_step
  checkWeights(k.given[0], b);
  CHECK(r.total == Approx(b[0] + 2 * b[1] + 3 * b[2]).epsilon(1e-6));
}

TEST_CASE("gls: w_i = G/(|P|·L_i) over the present tasks; an absent one gets 0", "[weighting][gls]") {
  auto w = Weighting::create(specOf(3, "gls"), 0);
  LossKernels k({0.5f, 2.0f, 0.0f});
  k.presentCount[2] = 0;
  const StepResult r = w->step(k, 1);
  REQUIRE(k.given.size() == 2);  // the measuring call (weights 1), then the weighted one
  checkWeights(k.given[0], {1, 1, 1});
  checkWeights(r.weights, {1.0, 0.25, 0.0});  // G = (0.5·2)^½ = 1
  checkWeights(k.given[1], {1.0, 0.25, 0.0});
  CHECK(r.total == Approx(1.0));
  // No task present at all: weights 0, total 0, nothing non-finite.
  LossKernels none({0.0f, 0.0f, 0.0f});
  none.presentCount = {0, 0, 0};
  const StepResult z = w->step(none, 2);
  checkWeights(z.weights, {0, 0, 0});
  CHECK(z.total == 0.0);
}

TEST_CASE("stch: log losses while warming up, then the smooth maximum over the nadir point", "[weighting][stch]") {
  auto w = Weighting::create(specOf(2, "stch", {1.0, 0.0}), 0);  // mu 1, warmup_epochs 0
  CHECK(w->describe() == "stch(mu=1, warmup_epochs=0)");
  // Epoch 1 (the only warm-up epoch) sums the nadir point: n = mean of {1, 3}, {2, 2} = {2, 2}.
  LossKernels k({1.0f, 2.0f});
  StepResult r = w->step(k, 1);
  checkWeights(r.weights, {1.0, 0.5});
  CHECK(r.total == Approx(std::log(2.0)));
  k.L = {3.0f, 2.0f};
  w->step(k, 2);
  w->endEpoch({2.0, 2.0});
  // u = log(L/n) = {0, log 2}; softmax {1/3, 2/3}; w_i = T·softmax_i/L_i.
  k.L = {2.0f, 4.0f};
  r = w->step(k, 3);
  checkWeights(r.weights, {1.0 / 3, 1.0 / 3});
  CHECK(r.total == Approx(2 * std::log(3.0)));
  // An absent task is left out of the softmax.
  k.presentCount[1] = 0;
  k.L = {2.0f, 0.0f};
  r = w->step(k, 4);
  checkWeights(r.weights, {1.0, 0.0});  // T·1/L_0
}

TEST_CASE("famo: weights (z_i/L_i)/c, logits learnt after the update from the loss decrease", "[weighting][famo]") {
  auto w = Weighting::create(specOf(3, "famo"), 0);  // lr 0.025, weight_decay 1e-3
  CHECK(w->describe() == "famo(lr=0.025, weight_decay=0.001)");
  LossKernels k({1.0f, 1.0f, 0.0f});
  k.presentCount[2] = 0;  // absent: weight 0, not the 1e-8 denominator swamping the others
  StepResult r = w->step(k, 1);
  checkWeights(r.weights, {0.5, 0.5, 0.0});
  // After the update task 0's loss halved, task 1's stayed: δ = {log 2, 0, 0}, and the gradient
  // z_j·(δ_j − zᵀδ) = {+, −, −}: Adam's first step moves each logit by lr against its sign (the
  // decay acts on logits that are still 0), so task 0, which improved, loses weight.
  k.L = {0.5f, 1.0f, 0.0f};
  w->afterUpdate(k, 1);
  REQUIRE(k.given.size() == 3);  // measure, weighted step, the rerun
  const std::vector<float> z = w->currentWeights();
  const double e0 = std::exp(-0.025), e1 = std::exp(0.025);
  checkWeights(z, {e0 / (e0 + 2 * e1), e1 / (e0 + 2 * e1), e1 / (e0 + 2 * e1)});
  k.L = {1.0f, 1.0f, 0.0f};
  r = w->step(k, 2);
  checkWeights(r.weights, {e0 / (e0 + e1), e1 / (e0 + e1), 0.0});
}
