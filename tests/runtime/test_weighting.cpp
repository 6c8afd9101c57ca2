// The loss-weighting strategies (Weighting.h) against independent numbers.
//
// Every expected number below was printed by tests/runtime/weighting_reference.py, which writes
// each method from its paper with numpy (float64) and torch 1.13 (autograd, torch.optim) and does
// not use mtlc:   /usr/bin/python3 tests/runtime/weighting_reference.py
// The strategies are driven through a FakeKernels that hands them fixed losses and gradients.
#include "WeightingSpecs.h"

#include "runtime/io/Checkpoint.h"
#include "spec/Error.h"
#include "runtime/io/SafeTensors.h"
#include "runtime/train/Weighting.h"

#include <cmath>
#include <set>

using namespace mtlc::rt;
using namespace mtlc::rt::test;

namespace {

// Fixed numbers in place of the compiled kernels. trainStep "differentiates" Σ w_t·L_t as
// Σ w_t·taskGrad_t, which is what a real train_step computes from the same per-task gradients.
struct FakeKernels final : StepKernels {
  int64_t T, P;
  std::vector<float> L, tg, g;
  std::vector<std::vector<float>> rep;
  std::vector<int64_t> presentCount;
  int64_t batch = 1;
  std::vector<std::string> calls;
  std::vector<std::vector<float>> weightsGiven;
  FakeKernels(int64_t T, int64_t P) : T(T), P(P), L(size_t(T)), tg(size_t(T * P)), g(size_t(P)), rep(size_t(T)),
                                      presentCount(size_t(T), 1) {}
  void record(const char* c, const float* w) {
    calls.push_back(c);
    weightsGiven.emplace_back(w, w + T);
  }
  void trainStep(const float* w) override {
    record("train", w);
    std::fill(g.begin(), g.end(), 0.0f);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t p = 0; p < P; ++p) g[size_t(p)] += w[t] * tg[size_t(t * P + p)];
  }
  void taskGrads(const float* w) override { record("task_grads", w); }
  void repGrads(const float* w) override { record("rep_grads", w); }
  const float* losses() const override { return L.data(); }
  float* grads() override { return g.data(); }
  const float* taskGrad(int64_t t) const override { return tg.data() + t * P; }
  const float* repGrad(int64_t t) const override { return rep[size_t(t)].data(); }
  int64_t n() const override { return batch; }
  int64_t present(int64_t t) const override { return presentCount[size_t(t)]; }
};

void mtlcDummy(const mtlc_args*) {}

// A spec with T tasks and the given parameters (name, shape, the tasks whose loss reaches it),
// packed from offset 0.
ModelSpec specWith(int64_t T,
                   const std::vector<std::tuple<std::string, std::vector<int64_t>, std::vector<int>>>& params,
                   const std::string& weighting) {
  ModelSpec s = specWithTasks(T, weighting);
  for (const auto& [name, shape, tasks] : params) {
    ParamSpec p;
    p.name = name;
    p.shape = shape;
    p.size = 1;
    for (int64_t d : shape) p.size *= d;
    p.offset = s.paramCount;
    p.tasks = tasks;
    s.params.push_back(p);
    s.paramCount += p.size;
  }
  s.trainStep = mtlcDummy;
  s.taskGradsStep = mtlcDummy;
  return s;
}

std::vector<double> gramOf(const std::vector<std::vector<double>>& v) {
  const size_t T = v.size();
  std::vector<double> G(T * T);
  for (size_t i = 0; i < T; ++i)
    for (size_t j = 0; j < T; ++j)
      for (size_t k = 0; k < v[i].size(); ++k) G[i * T + j] += v[i][k] * v[j][k];
  return G;
}

const WeightingState& stateNamed(std::vector<WeightingState> s, const std::string& name) {
  static std::vector<WeightingState> keep;
  keep = std::move(s);
  for (const WeightingState& w : keep)
    if (w.name == name) return w;
  FAIL("no state " << name);
  return keep[0];
}

template <typename A, typename B>
void checkAll(const A& got, const B& want, double eps = 1e-6, double margin = 1e-7) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    INFO("element " << i);
    CHECK(double(got[i]) == Approx(double(want[i])).epsilon(eps).margin(margin));
  }
}

}  // namespace

// ---- MGDA ---------------------------------------------------------------------------------------

TEST_CASE("mgda: min-norm weights, closed form for two tasks, Frank-Wolfe beyond", "[weighting][mgda]") {
  // two tasks alpha: 0.571428571, 0.428571429 (closed form = exact)
  std::vector<double> g1{1.0, 0.5, -0.25}, g2{-0.5, 1.0, 0.75};
  checkAll(minNormWeights(gramOf({g1, g2}), 2), std::vector<double>{0.571428571, 0.428571429}, 1e-8);
  // two tasks, clamped alpha: 1, 0 (g1 = [1, 0] is itself the min-norm point)
  checkAll(minNormWeights(gramOf({{1.0, 0.0}, {2.0, 0.1}}), 2), std::vector<double>{1, 0}, 1e-12);
  // three tasks FW alpha: 0.224090265, 0.436989522, 0.338920214
  //             exact:    0.224090379, 0.436989498, 0.338920123
  std::vector<std::vector<double>> v3{{1.0, 0.2, -0.5, 0.3}, {-0.4, 0.9, 0.1, -0.2}, {0.3, -0.6, 0.8, 0.5}};
  std::vector<double> a3 = minNormWeights(gramOf(v3), 3);
  checkAll(a3, std::vector<double>{0.224090265, 0.436989522, 0.338920214}, 1e-8);
  checkAll(a3, std::vector<double>{0.224090379, 0.436989498, 0.338920123}, 0, 1e-6);
  // four tasks FW alpha: 0.246570777, 0.389257729, 0.364171494, 0
  //            exact:    0.246570794, 0.389257826, 0.36417138, 0
  std::vector<std::vector<double>> v4{{1.0, 0.2, -0.5, 0.3, 0.0}, {-0.4, 0.9, 0.1, -0.2, 0.6},
                                      {0.3, -0.6, 0.8, 0.5, -0.1}, {2.0, 1.5, 1.0, 1.2, 1.1}};
  std::vector<double> a4 = minNormWeights(gramOf(v4), 4);
  checkAll(a4, std::vector<double>{0.246570777, 0.389257729, 0.364171494, 0}, 1e-8, 1e-9);
  checkAll(a4, std::vector<double>{0.246570794, 0.389257826, 0.36417138, 0}, 0, 1e-6);
  // Degenerate cases.
  CHECK(minNormWeights({4.0}, 1) == std::vector<double>{1.0});
  CHECK(minNormWeights(std::vector<double>(9, 0.0), 3) == std::vector<double>(3, 1.0 / 3));
}

TEST_CASE("mgda strategy: MGDA-UB on the representation, or the shared parameters' gradients", "[weighting][mgda]") {
  SECTION("with rep_grads: alpha from the representation gradients, then train_step with alpha") {
    ModelSpec spec = specWith(2, {{"trunk.0.weight", {2}, {0, 1}}, {"a.0.weight", {1}, {0}}}, "mgda");
    spec.repGradsStep = mtlcDummy;
    spec.repWidth = 3;
    auto w = Weighting::create(spec, 1);
    CHECK(w->needsRepGrads());
    CHECK_FALSE(w->needsTaskGrads());
    FakeKernels k(2, 3);
    k.rep = {{1.0f, 0.5f, -0.25f}, {-0.5f, 1.0f, 0.75f}};  // n = 1, repWidth 3: the vectors above
    k.L = {2.0f, 3.0f};
    StepResult r = w->step(k, 1);
    CHECK(k.calls == std::vector<std::string>{"rep_grads", "train"});
    checkAll(k.weightsGiven[1], std::vector<double>{0.571428571, 0.428571429});
    checkAll(r.weights, std::vector<double>{0.571428571, 0.428571429});
    CHECK(r.total == Approx(0.571428571 * 2 + 0.428571429 * 3));
  }
  SECTION("without: alpha from the shared parameters' task gradients, all gradients combined with it") {
    // Shared: 3 elements holding g1 / g2 above; task-specific: one element per task.
    ModelSpec spec = specWith(2, {{"trunk.0.weight", {3}, {0, 1}}, {"a.0.weight", {1}, {0}}, {"b.0.weight", {1}, {1}}},
                              "mgda");
    auto w = Weighting::create(spec, 1);
    CHECK(w->needsTaskGrads());
    FakeKernels k(2, 5);
    k.tg = {1.0f, 0.5f, -0.25f, 4.0f, 0.0f, /**/ -0.5f, 1.0f, 0.75f, 0.0f, -2.0f};
    k.L = {1.0f, 1.0f};
    StepResult r = w->step(k, 1);
    CHECK(k.calls == std::vector<std::string>{"task_grads"});
    const double a = 0.571428571, b = 0.428571429;
    checkAll(r.weights, std::vector<double>{a, b});
    checkAll(k.g, std::vector<double>{a * 1 - b * 0.5, a * 0.5 + b * 1, -a * 0.25 + b * 0.75, a * 4, -b * 2});
    // A frozen shared parameter is left out of the min-norm problem: nothing shared remains.
    spec.params[0].frozen = true;
    auto frozen = Weighting::create(spec, 1);
    frozen->step(k, 1);
    checkAll(k.weightsGiven.back(), std::vector<double>{0.5, 0.5});
  }
}

// ---- PCGrad -------------------------------------------------------------------------------------

// Three tasks' gradients in R^4 with conflicts; task i visits the others in orders[i].
//   orders A = [[1, 2], [0, 2], [0, 1]]:
//     0.127777778, -0.338888889, 0.688888889, -0.566666667, -0.803333333, 0.29, 1.00666667,
//     -0.486666667, 0.616666667, 0.355555556, -0.144444444, -1.42777778
//   orders B = [[2, 1], [2, 0], [1, 0]]:
//     0.333333333, -0.333333333, 0.5, -0.666666667, -0.94, -0.12, 1.28, 0.06, 1.3, -0.1, -0.6, -1.2
//   weights 1, 0.5, 2; sum A: 0.959444444, 0.517222222, 0.903333333, -3.66555556
const std::vector<float> kPc{1.0f, -2.0f, 0.5f, 1.0f, -1.5f, 1.0f, 1.0f, -0.5f, 0.5f, 1.5f, -1.0f, -2.0f};
const std::vector<double> kPcA{0.127777778, -0.338888889, 0.688888889, -0.566666667, -0.803333333, 0.29,
                               1.00666667,  -0.486666667, 0.616666667, 0.355555556,  -0.144444444, -1.42777778};
const std::vector<double> kPcB{0.333333333, -0.333333333, 0.5, -0.666666667, -0.94, -0.12,
                               1.28,        0.06,         1.3, -0.1,         -0.6,  -1.2};

TEST_CASE("pcgrad: projection on the original gradients, and its order dependence", "[weighting][pcgrad]") {
  std::vector<float> a = pcgradProject(kPc.data(), 3, 4, {{1, 2}, {0, 2}, {0, 1}});
  std::vector<float> b = pcgradProject(kPc.data(), 3, 4, {{2, 1}, {2, 0}, {1, 0}});
  checkAll(a, kPcA, 1e-6, 1e-6);
  checkAll(b, kPcB, 1e-6, 1e-6);
  CHECK(std::fabs(a[0] - b[0]) > 0.1);  // the order matters
  // Two tasks: a conflicting pair ends up orthogonal to the other's original gradient.
  std::vector<float> two{1.0f, 0.0f, -1.0f, 1.0f};
  std::vector<float> p = pcgradProject(two.data(), 2, 2, {{1}, {0}});
  CHECK(p[0] * two[2] + p[1] * two[3] == Approx(0).margin(1e-7));
  CHECK(p[2] * two[0] + p[3] * two[1] == Approx(0).margin(1e-7));
}

TEST_CASE("pcgrad: seeded orders; the strategy projects shared gradients only", "[weighting][pcgrad]") {
  auto o = pcgradOrders(42, 7, 4);
  REQUIRE(o.size() == 4);
  for (int64_t i = 0; i < 4; ++i) {
    std::set<int64_t> others(o[size_t(i)].begin(), o[size_t(i)].end());
    std::set<int64_t> want{0, 1, 2, 3};
    want.erase(i);
    CHECK(others == want);
    CHECK(o[size_t(i)].size() == 3);
  }
  CHECK(pcgradOrders(42, 7, 4) == o);
  bool differs = false;
  for (int64_t step = 1; step <= 20; ++step) differs = differs || pcgradOrders(42, step, 4) != o;
  CHECK(differs);

  // Shared: the 4-vectors above; task-specific: two elements per task (only the owner's nonzero).
  ModelSpec spec = specWith(3, {{"trunk.0.weight", {4}, {0, 1, 2}}, {"h0.0.weight", {2}, {0}},
                                {"h1.0.weight", {2}, {1}}, {"h2.0.weight", {2}, {2}}}, "pcgrad");
  spec.tasks[0].weight = 1;
  spec.tasks[1].weight = 0.5;
  spec.tasks[2].weight = 2;
  auto w = Weighting::create(spec, 42);
  FakeKernels k(3, 10);
  for (int64_t t = 0; t < 3; ++t) {
    for (int64_t j = 0; j < 4; ++j) k.tg[size_t(t * 10 + j)] = kPc[size_t(t * 4 + j)];
    k.tg[size_t(t * 10 + 4 + 2 * t)] = float(t + 1);
    k.tg[size_t(t * 10 + 5 + 2 * t)] = -1.0f;
  }
  k.L = {1.0f, 2.0f, 3.0f};
  StepResult r = w->step(k, 5);
  checkAll(r.weights, std::vector<double>{1, 0.5, 2});
  CHECK(r.total == Approx(1 + 1 + 6));
  std::vector<float> proj = pcgradProject(kPc.data(), 3, 4, pcgradOrders(42, 5, 3));
  for (int j = 0; j < 4; ++j) CHECK(k.g[size_t(j)] == Approx(proj[size_t(j)] + 0.5 * proj[size_t(4 + j)] + 2 * proj[size_t(8 + j)]));
  checkAll(std::vector<float>(k.g.begin() + 4, k.g.end()), std::vector<double>{1, -1, 0.5 * 2, -0.5, 2 * 3, -2});
  // With orders A the combined shared gradient is the reference's weighted sum.
  std::vector<float> pa = pcgradProject(kPc.data(), 3, 4, {{1, 2}, {0, 2}, {0, 1}});
  std::vector<double> sumA(4);
  for (int j = 0; j < 4; ++j) sumA[size_t(j)] = pa[size_t(j)] + 0.5 * pa[size_t(4 + j)] + 2 * pa[size_t(8 + j)];
  checkAll(sumA, std::vector<double>{0.959444444, 0.517222222, 0.903333333, -3.66555556}, 1e-6, 1e-6);
}

// ---- DWA ----------------------------------------------------------------------------------------

TEST_CASE("dwa: T·softmax of the loss ratios; 1 for the first two epochs; state", "[weighting][dwa]") {
  // older [1.0, 2.0, 0.5], newer [0.8, 1.9, 0.55]:
  //   tau 2:   0.92600641, 0.998127633, 1.07586596
  //   tau 0.5: 0.719083438, 0.970661112, 1.31025545
  const std::vector<double> older{1.0, 2.0, 0.5}, newer{0.8, 1.9, 0.55};
  checkAll(dwaWeights(older, newer, 2.0), std::vector<double>{0.92600641, 0.998127633, 1.07586596}, 1e-8);
  checkAll(dwaWeights(older, newer, 0.5), std::vector<double>{0.719083438, 0.970661112, 1.31025545}, 1e-8);
  // A missing mean (no label in an epoch) gives that task r = 1.
  const double nan = std::nan("");
  checkAll(dwaWeights({nan, 1}, {1, 1}, 2), std::vector<double>{1, 1});

  ModelSpec spec = specWith(3, {{"x.0.weight", {1}, {0}}}, "dwa");
  spec.train.weightingParam = 2;
  auto w = Weighting::create(spec, 0);
  CHECK(w->describe() == "dwa(temperature=2)");
  FakeKernels k(3, 1);
  k.L = {1, 1, 1};
  checkAll(w->step(k, 1).weights, std::vector<double>{1, 1, 1});
  w->endEpoch(older);
  checkAll(w->step(k, 2).weights, std::vector<double>{1, 1, 1});
  w->endEpoch(newer);
  StepResult r = w->step(k, 3);
  checkAll(r.weights, std::vector<double>{0.92600641, 0.998127633, 1.07586596});
  checkAll(k.weightsGiven.back(), r.weights);
  CHECK(r.total == Approx(3.0).epsilon(1e-6));
  // The history is the checkpointed state; a fresh strategy restored from it continues alike.
  TempDir dir;
  saveCheckpoint(dir / "d.safetensors", spec, std::vector<float>(1).data(), nullptr, w.get());
  TensorFile f = readSafeTensors(dir / "d.safetensors");
  REQUIRE(f.find("mtl.loss_history") != nullptr);
  CHECK(f.find("mtl.loss_history")->shape == std::vector<int64_t>{2, 3});
  CHECK(f.metadata.at("weighting") == "dwa");
  auto again = Weighting::create(spec, 0);
  REQUIRE(loadWeightingState(f, spec, *again));
  checkAll(again->currentWeights(), r.weights);
  // Another task set does not take it.
  ModelSpec other = spec;
  other.tasks[2].name = "z";
  auto third = Weighting::create(other, 0);
  CHECK_FALSE(loadWeightingState(f, other, *third));
}

// ---- uncertainty ----------------------------------------------------------------------------------

TEST_CASE("uncertainty: weights ½·exp(−s), the objective logged, s learnt with the model's optimizer", "[weighting][uncertainty]") {
  // torch: s = Parameter(zeros(2)); Adam([s], lr=0.1); obj = (0.5 * (exp(-s) * L + s)).sum()
  //   L [0.9, 2.5]:  weights 0.5, 0.5            objective 1.70000005  s after -0.0999999717, 0.100000001
  //   L [0.7, 2.0]:  weights 0.552585423, 0.452418715  objective 1.2916472  s after -0.195137441, 0.194317773
  //   L [0.65, 1.5]: weights 0.607739031, 0.411698103  objective 1.01216769  s after -0.29254353, 0.275276273
  ModelSpec spec = specWith(2, {{"x.0.weight", {1}, {0}}}, "uncertainty");
  spec.train.optimizer = OptimizerSpec{OptimizerKind::Adam, 0.1};
  spec.train.optimizer.weightDecay = 0.5;  // not applied to s
  auto w = Weighting::create(spec, 0);
  FakeKernels k(2, 1);
  const std::vector<std::vector<float>> L{{0.9f, 2.5f}, {0.7f, 2.0f}, {0.65f, 1.5f}};
  const std::vector<std::vector<double>> weights{{0.5, 0.5}, {0.552585423, 0.452418715}, {0.607739031, 0.411698103}};
  const std::vector<double> objective{1.70000005, 1.2916472, 1.01216769};
  const std::vector<std::vector<double>> sAfter{{-0.0999999717, 0.100000001}, {-0.195137441, 0.194317773},
                                                {-0.29254353, 0.275276273}};
  TempDir dir;
  for (size_t i = 0; i < 3; ++i) {
    INFO("step " << i + 1);
    k.L = L[i];
    StepResult r = w->step(k, int64_t(i) + 1);
    checkAll(r.weights, weights[i]);
    checkAll(k.weightsGiven.back(), weights[i]);
    CHECK(r.total == Approx(objective[i]).epsilon(1e-6));
    const WeightingState& s = stateNamed(w->state(), "mtl.log_var");
    checkAll(std::vector<float>(s.data, s.data + 2), sAfter[i], 2e-6);
    if (i == 0) {
      // Save after the first step; a fresh strategy loaded from it takes the second step alike.
      saveCheckpoint(dir / "u.safetensors", spec, std::vector<float>(1).data(), nullptr, w.get());
    }
  }
  TensorFile f = readSafeTensors(dir / "u.safetensors");
  CHECK(f.find("mtl.optim.m") != nullptr);
  CHECK(f.find("mtl.optim.step")->data[0] == 1.0f);
  auto resumed = Weighting::create(spec, 0);
  REQUIRE(loadWeightingState(f, spec, *resumed));
  k.L = L[1];
  checkAll(resumed->step(k, 2).weights, weights[1]);
  const WeightingState& s = stateNamed(resumed->state(), "mtl.log_var");
  checkAll(std::vector<float>(s.data, s.data + 2), sAfter[1], 2e-6);
  // A task without labels in the batch leaves its s alone (sgd: no momentum, so exactly).
  spec.train.optimizer = OptimizerSpec{OptimizerKind::Sgd, 0.1};
  auto sgd = Weighting::create(spec, 0);
  k.presentCount = {0, 4};
  k.L = {0.0f, 2.0f};
  sgd->step(k, 1);
  const WeightingState& s2 = stateNamed(sgd->state(), "mtl.log_var");
  CHECK(s2.data[0] == 0.0f);
  CHECK(s2.data[1] == Approx(-0.1 * 0.5 * (1 - 2.0)));
}

// ---- GradNorm -----------------------------------------------------------------------------------

// Parameters: trunk.0.weight [2, 2] @0 (shared: W), trunk.0.bias [2] @4 (shared), then one head
// weight [1, 2] per task @6, @8, @10. Three tasks, alpha 1.5, two steps of fixed losses and task
// gradients (rows: tasks).
const std::vector<std::vector<float>> kGnLoss{{1.2f, 0.8f, 2.0f}, {1.0f, 0.75f, 1.2f}};
const std::vector<std::vector<float>> kGnGrad{
    {0.3f, -0.1f, 0.2f, 0.4f, 0.1f, -0.2f, 0.5f, 0.25f, 0, 0, 0, 0,
     -0.05f, 0.1f, 0.0f, 0.05f, 0.02f, 0.01f, 0, 0, -0.3f, 0.1f, 0, 0,
     0.6f, 0.4f, -0.5f, 0.3f, -0.2f, 0.3f, 0, 0, 0, 0, 0.2f, -0.4f},
    {0.25f, -0.05f, 0.1f, 0.3f, 0.05f, -0.1f, 0.4f, 0.2f, 0, 0, 0, 0,
     -0.04f, 0.12f, 0.01f, 0.04f, 0.01f, 0.02f, 0, 0, -0.25f, 0.05f, 0, 0,
     0.4f, 0.3f, -0.3f, 0.2f, -0.1f, 0.2f, 0, 0, 0, 0, 0.1f, -0.3f}};

struct GradNormExpect {
  std::vector<double> weights, after, modelGrad;
  double total;
};

void runGradNorm(const OptimizerSpec& o, const std::vector<GradNormExpect>& want) {
  ModelSpec spec = specWith(3, {{"trunk.0.weight", {2, 2}, {0, 1, 2}}, {"trunk.0.bias", {2}, {0, 1, 2}},
                                {"a.0.weight", {1, 2}, {0}}, {"b.0.weight", {1, 2}, {1}},
                                {"c.0.weight", {1, 2}, {2}}}, "gradnorm");
  spec.train.optimizer = o;
  spec.train.weightingParam = 1.5;
  auto w = Weighting::create(spec, 0);
  CHECK(w->describe() == "gradnorm(alpha=1.5) on trunk.0.weight");
  FakeKernels k(3, 12);
  for (size_t i = 0; i < want.size(); ++i) {
    INFO("step " << i + 1);
    k.L = kGnLoss[i];
    k.tg = kGnGrad[i];
    StepResult r = w->step(k, int64_t(i) + 1);
    CHECK(k.calls.back() == "task_grads");
    checkAll(r.weights, want[i].weights);
    CHECK(r.total == Approx(want[i].total).epsilon(1e-6));
    checkAll(k.g, want[i].modelGrad, 2e-6, 1e-7);
    checkAll(w->currentWeights(), want[i].after, 2e-6);
    double sum = 0;
    for (float x : w->currentWeights()) sum += x;
    CHECK(sum == Approx(3.0));
  }
}

TEST_CASE("gradnorm: one weight update per step on fixed task gradients (sgd and adam)", "[weighting][gradnorm]") {
  // sgd lr 0.1
  //   step 1: weights 1, 1, 1  total 4  w after 0.989857435, 1.06004155, 0.950101018
  //     model grad 0.850000024, 0.400000006, -0.300000012, 0.75, -0.0799999982, 0.110000014, 0.5, 0.25,
  //                -0.300000012, 0.100000001, 0.200000003, -0.400000006
  //   step 2: weights 0.989857435, 1.06004155, 0.950101018  total 2.92500982
  //     w after 1.03313625, 1.07611477, 0.890749037
  //     model grad 0.585103095, 0.362742424, -0.175444141, 0.529379129, -0.0349168144, 0.112235285,
  //                0.395942986, 0.197971493, -0.265010387, 0.0530020781, 0.0950101018, -0.285030305
  const std::vector<double> g1{0.850000024, 0.400000006, -0.300000012, 0.75, -0.0799999982, 0.110000014,
                               0.5, 0.25, -0.300000012, 0.100000001, 0.200000003, -0.400000006};
  runGradNorm(OptimizerSpec{OptimizerKind::Sgd, 0.1},
              {{{1, 1, 1}, {0.989857435, 1.06004155, 0.950101018}, g1, 4},
               {{0.989857435, 1.06004155, 0.950101018},
                {1.03313625, 1.07611477, 0.890749037},
                {0.585103095, 0.362742424, -0.175444141, 0.529379129, -0.0349168144, 0.112235285, 0.395942986,
                 0.197971493, -0.265010387, 0.0530020781, 0.0950101018, -0.285030305},
                2.92500982}});
  // adam lr 0.05
  //   step 1: weights 1, 1, 1  total 4  w after 0.966101706, 1.06779659, 0.966101706
  //   step 2: weights 0.966101706, 1.06779659, 0.966101706  total 2.92627119
  //     w after 0.962384045, 1.1190443, 0.918571532
  //     model grad 0.585254252, 0.369661033, -0.182542399, 0.525762737, -0.0376271233, 0.117966101,
  //                0.386440694, 0.193220347, -0.266949147, 0.0533898287, 0.0966101736, -0.289830536
  runGradNorm(OptimizerSpec{OptimizerKind::Adam, 0.05},
              {{{1, 1, 1}, {0.966101706, 1.06779659, 0.966101706}, g1, 4},
               {{0.966101706, 1.06779659, 0.966101706},
                {0.962384045, 1.1190443, 0.918571532},
                {0.585254252, 0.369661033, -0.182542399, 0.525762737, -0.0376271233, 0.117966101, 0.386440694,
                 0.193220347, -0.266949147, 0.0533898287, 0.0966101736, -0.289830536},
                2.92627119}});
}

TEST_CASE("gradnorm: W is the last weight every task's loss reaches, not the last shared one", "[weighting][gradnorm]") {
  // `shared a = x -> dense -> relu; shared b = a -> dense -> relu; task p reads b, task q reads a`:
  // q's loss never reaches b, so measuring on b.0.weight would give G_q = 0 and a w_q that only
  // rises (reference: 1.02815723, 1.05710733, 1.08687258) although q learns fastest.
  //   W = a.0.weight, sgd lr 0.1, alpha 1.5:
  //   step 1: weights 1, 1  G 0.377491742, 0.450000018  w after 1.04152513, 0.958474874
  //   step 2: weights 1.04152513, 0.958474874  G 0.393167138, 0.431313723  w after 1.08320141, 0.916798651
  //   step 3: weights 1.08320141, 0.916798651  G 0.408899575, 0.41255942  w after 1.12502933, 0.874970794
  ModelSpec spec = specWith(2, {{"a.0.weight", {2, 2}, {0, 1}}, {"a.0.bias", {2}, {0, 1}},
                                {"b.0.weight", {2, 2}, {0}}, {"b.0.bias", {2}, {0}},
                                {"p.0.weight", {1, 2}, {0}}, {"q.0.weight", {1, 2}, {1}}}, "gradnorm");
  spec.tasks[0].name = "p";
  spec.tasks[1].name = "q";
  spec.train.optimizer = OptimizerSpec{OptimizerKind::Sgd, 0.1};
  spec.train.weightingParam = 1.5;
  auto w = Weighting::create(spec, 0);
  CHECK(w->describe() == "gradnorm(alpha=1.5) on a.0.weight");
  FakeKernels k(2, 16);
  k.tg = {0.2f, -0.1f, 0.3f, 0.05f, 0.1f, -0.05f, 0.4f, 0.2f, -0.3f, 0.1f, 0.05f, 0.1f, 0.5f, -0.2f, 0, 0,
          -0.3f, 0.25f, 0.1f, 0.2f, 0.15f, 0.1f, 0, 0, 0, 0, 0, 0, 0, 0, 0.3f, 0.6f};
  const std::vector<std::vector<float>> L{{1.0f, 1.0f}, {0.95f, 0.6f}, {0.9f, 0.3f}};
  const std::vector<std::vector<double>> before{{1, 1}, {1.04152513, 0.958474874}, {1.08320141, 0.916798651}};
  const std::vector<std::vector<double>> after{
      {1.04152513, 0.958474874}, {1.08320141, 0.916798651}, {1.12502933, 0.874970794}};
  for (size_t i = 0; i < L.size(); ++i) {
    INFO("step " << i + 1);
    k.L = L[i];
    checkAll(w->step(k, int64_t(i) + 1).weights, before[i], 2e-6);
    checkAll(w->currentWeights(), after[i], 2e-6);
    CHECK(w->currentWeights()[1] < float(before[i][1]));  // q learns fastest: its weight falls
  }
  // No `*.weight` reached by every task: refused, naming the last shared one and its tasks.
  ModelSpec three = specWith(3, {{"a.0.weight", {1}, {0, 1}}, {"b.0.weight", {1}, {0, 1}}, {"c.0.weight", {1}, {2}}},
                             "gradnorm");
  CHECK_THROWS_WITH(Weighting::create(three, 0),
                    "weighting `gradnorm` measures every task's gradient on one weight that all of them reach, but in "
                    "model `m` no parameter named `*.weight` is reached by all 3 tasks' losses (the last shared one, "
                    "`b.0.weight`, only by t0, t1); let every task read one shared block, or choose another weighting");
}

// An MMoE table as the compiler lays it out: two experts every task reaches through its gate, then
// each task's own gate (reached by that task only), then the towers.
ModelSpec mmoeSpec(const std::string& weighting) {
  return specWith(2, {{"e.0.0.0.weight", {2}, {0, 1}}, {"e.0.1.0.weight", {2}, {0, 1}},
                      {"e.0.gate.y1.weight", {2}, {0}}, {"e.0.gate.y2.weight", {2}, {1}},
                      {"y1.0.weight", {1}, {0}}, {"y2.0.weight", {1}, {1}}},
                  weighting);
}

// Task gradients over that table: on the experts g1 = [1, 0.5, -0.25, 0] and g2 = [-0.5, 1, 0.75, 0]
// (conflicting: g1·g2 = -0.1875), large on each task's own gate and tower.
void mmoeGrads(FakeKernels& k) {
  k.tg = {1.0f, 0.5f, -0.25f, 0.0f, 3.0f, -2.0f, 0.0f, 0.0f, 0.7f, 0.0f,
          -0.5f, 1.0f, 0.75f, 0.0f, 0.0f, 0.0f, 2.0f, 2.0f, 0.0f, -0.4f};
  k.L = {1.0f, 1.0f};
}

TEST_CASE("mmoe: gradnorm measures on an expert; gates are task-specific for pcgrad and mgda", "[weighting]") {
  CHECK_THAT(Weighting::create(mmoeSpec("gradnorm"), 0)->describe(), Catch::EndsWith(" on e.0.1.0.weight"));
  SECTION("mgda: the min-norm weights of the expert gradients alone (the two-task MGDA case above)") {
    ModelSpec spec = mmoeSpec("mgda");
    auto w = Weighting::create(spec, 0);
    FakeKernels k(2, 10);
    mmoeGrads(k);
    StepResult r = w->step(k, 1);
    checkAll(r.weights, std::vector<double>{0.571428571, 0.428571429});
  }
  SECTION("pcgrad: experts projected, each gate keeps its own task's gradient") {
    ModelSpec spec = mmoeSpec("pcgrad");
    auto w = Weighting::create(spec, 0);
    FakeKernels k(2, 10);
    mmoeGrads(k);
    w->step(k, 1);
    const std::vector<float> g{1.0f, 0.5f, -0.25f, 0.0f, -0.5f, 1.0f, 0.75f, 0.0f};
    const std::vector<float> pc = pcgradProject(g.data(), 2, 4, {{1}, {0}});
    for (int j = 0; j < 4; ++j) CHECK(k.g[size_t(j)] == Approx(pc[size_t(j)] + pc[size_t(4 + j)]).margin(1e-7));
    CHECK(pc[0] != Approx(g[0]));  // the experts' gradients conflict, so projection changes them
    checkAll(std::vector<float>(k.g.begin() + 4, k.g.end()), std::vector<double>{3, -2, 2, 2, 0.7, -0.4});
  }
}

TEST_CASE("weightings: names, entry points, what they log", "[weighting]") {
  ModelSpec spec = specWith(2, {{"a.0.weight", {1}, {0}}}, "fixed");
  spec.tasks[1].weight = 0.25;
  FakeKernels k(2, 1);
  k.L = {2.0f, 4.0f};
  StepResult r = Weighting::create(spec, 0)->step(k, 1);
  CHECK(r.weights == std::vector<float>{1.0f, 0.25f});
  CHECK(r.total == 3.0);
  spec.train.weighting = WeightingKind::Uniform;
  CHECK(Weighting::create(spec, 0)->step(k, 1).weights == std::vector<float>{0.5f, 0.5f});
  spec.train.weighting = WeightingKind::GradNorm;
  CHECK_THROWS_WITH(Weighting::create(spec, 0),
                    Catch::Contains("has no parameter named `*.weight` that two or more tasks' losses reach"));
  spec.taskGradsStep = nullptr;
  CHECK_THROWS_WITH(Weighting::create(spec, 0), "internal: weighting `gradnorm` needs the `task_grads` entry point, "
                                                "which model `m` was compiled without");
  spec.train.weighting = WeightingKind::Mgda;
  CHECK_THROWS_WITH(Weighting::create(spec, 0), Catch::Contains("needs the `task_grads` entry point"));
  spec.repGradsStep = mtlcDummy;
  spec.repWidth = 4;
  CHECK_NOTHROW(Weighting::create(spec, 0));
}

// ---- gradB (#26): upgrad, aligned_mtl, nash_mtl, fairgrad, excess_mtl -----------------------------
// The solvers themselves: test_solver_methods.cpp. Here: the kernels each strategy calls, the
// gradient it leaves, what it logs, a task without labels, and Nash-MTL's clipping.

TEST_CASE("solver methods: task_grads, Σ w_t·g_t, the shared gradient only clipped by nash_mtl", "[weighting]") {
  // Shared: 2 elements; task-specific: one each. g1 = (3, 0), g2 = (0, 4): orthogonal.
  ModelSpec spec = specWith(2, {{"trunk.0.weight", {2}, {0, 1}}, {"a.0.weight", {1}, {0}}, {"b.0.weight", {1}, {1}}},
                            "nash_mtl");
  FakeKernels k(2, 4);
  k.tg = {3.0f, 0.0f, 1.0f, 0.0f, /**/ 0.0f, 4.0f, 0.0f, 2.0f};
  k.L = {1.0f, 2.0f};
  // Nash-MTL: α_i·‖g_i‖² = 1/α_i, so α = (1/3, 1/4); the shared part α·g = (1, 1), norm √2 > 1.
  StepResult r = Weighting::create(spec, 1)->step(k, 1);
  CHECK(k.calls == std::vector<std::string>{"task_grads"});
  checkAll(r.weights, std::vector<double>{1.0 / 3, 0.25});
  const double clip = 1 / (std::sqrt(2.0) + 1e-6);
  checkAll(k.g, std::vector<double>{clip, clip, 1.0 / 3, 0.5});
  CHECK(r.total == Approx(1.0 / 3 + 0.5));
  // FairGrad(α = 1): the same equation, no clipping.
  spec.train.weighting = WeightingKind::FairGrad;
  r = Weighting::create(spec, 1)->step(k, 1);
  checkAll(k.g, std::vector<double>{1, 1, 1.0 / 3, 0.5});
  // Aligned-MTL: λ = (9, 16), w_j = √(λ_min/λ_j) = (1, 3/4).
  spec.train.weighting = WeightingKind::AlignedMtl;
  r = Weighting::create(spec, 1)->step(k, 1);
  checkAll(r.weights, std::vector<double>{1, 0.75});
  // UPGrad: no conflict, 1/T each.
  spec.train.weighting = WeightingKind::UPGrad;
  r = Weighting::create(spec, 1)->step(k, 1);
  checkAll(r.weights, std::vector<double>{0.5, 0.5});
  checkAll(k.g, std::vector<double>{1.5, 2, 0.5, 1});
}

TEST_CASE("solver methods: a task without labels (zero gradient) gets no NaN", "[weighting]") {
  ModelSpec spec = specWith(3, {{"trunk.0.weight", {2}, {0, 1, 2}}, {"a.0.weight", {1}, {0}}}, "upgrad");
  FakeKernels k(3, 3);
  k.tg = {1.0f, -0.5f, 1.0f, /**/ 0.0f, 0.0f, 0.0f, /**/ -0.5f, 1.0f, 0.0f};
  k.L = {1.0f, 0.0f, 2.0f};
  k.presentCount = {4, 0, 4};
  for (const char* name : {"upgrad", "aligned_mtl", "nash_mtl", "fairgrad", "excess_mtl"}) {
    INFO(name);
    spec.train.weighting = weightingNamed(name);
    auto w = Weighting::create(spec, 1);
    for (int64_t s = 1; s <= 3; ++s) {
      StepResult r = w->step(k, s);
      for (float x : r.weights) CHECK(std::isfinite(x));
      for (float x : k.g) CHECK(std::isfinite(x));
      CHECK(std::isfinite(r.total));
    }
  }
}

// Every method with a rep_grad argument treats a model without the rep_grads entry point alike: an
// error naming the method (sema refuses such a program first; this is for specs built without it).
// mgda, without the argument, falls back to the shared parameters' gradients by design.
TEST_CASE("rep_grad=true without a shared representation is an error for every method", "[weighting]") {
  for (const char* method : {"imtl", "cagrad", "upgrad", "aligned_mtl", "nash_mtl"}) {
    INFO(method);
    ModelSpec spec = specWith(2, {{"trunk.0.weight", {2}, {0, 1}}, {"a.0.weight", {1}, {0}}}, method);
    CHECK_FALSE(Weighting::create(spec, 1)->needsRepGrads());
    spec.train.repGrad = true;
    CHECK_THROWS_WITH(Weighting::create(spec, 1),
                      Catch::Contains(std::string("`") + method + "(rep_grad=true)` needs one shared"));
    spec.repGradsStep = mtlcDummy;
    spec.repWidth = 2;
    auto w = Weighting::create(spec, 1);
    CHECK(w->needsRepGrads());
    CHECK_FALSE(w->needsTaskGrads());
  }
  ModelSpec mgda = specWith(2, {{"trunk.0.weight", {2}, {0, 1}}, {"a.0.weight", {1}, {0}}}, "mgda");
  mgda.train.repGrad = true;
  auto w = Weighting::create(mgda, 1);
  CHECK(w->needsTaskGrads());
  CHECK(w->describe() == "mgda (on the shared parameters' gradients)");
}

TEST_CASE("solver methods: rep_grad, update_weights_every, and what needs what", "[weighting]") {
  ModelSpec spec = specWith(2, {{"trunk.0.weight", {2}, {0, 1}}, {"a.0.weight", {1}, {0}}}, "aligned_mtl");
  spec.train.repGrad = true;
  CHECK_THROWS_WITH(Weighting::create(spec, 1), Catch::Contains("`aligned_mtl(rep_grad=true)` needs one shared"));
  spec.repGradsStep = mtlcDummy;
  spec.repWidth = 2;
  auto w = Weighting::create(spec, 1);
  CHECK(w->needsRepGrads());
  CHECK_FALSE(w->needsTaskGrads());
  CHECK(w->describe() == "aligned_mtl (on the 2-wide shared representation)");
  FakeKernels k(2, 3);
  k.rep = {{2.0f, 0.0f}, {0.0f, 1.0f}};
  StepResult r = w->step(k, 1);
  CHECK(k.calls == std::vector<std::string>{"rep_grads", "train"});
  checkAll(r.weights, std::vector<double>{0.5, 1});
  checkAll(k.weightsGiven[1], std::vector<double>{0.5, 1});
  // Nash-MTL reusing its weights: the step in between is one train_step with the last α.
  spec.train.repGrad = false;
  spec.train.weighting = WeightingKind::NashMtl;
  spec.train.weightingArgs = {2, 0, 0};  // update_weights_every=2, max_norm=0 (no clipping), rep_grad
  w = Weighting::create(spec, 1);
  k.calls.clear();
  k.tg = {2.0f, 0.0f, 0.0f, /**/ 0.0f, 1.0f, 0.0f};
  w->step(k, 1);
  r = w->step(k, 2);
  CHECK(k.calls == std::vector<std::string>{"task_grads", "train"});
  checkAll(r.weights, std::vector<double>{0.5, 1});
  CHECK(stateNamed(w->state(), "mtl.weights").data[1] == 1.0f);
  w->step(k, 3);
  CHECK(k.calls.back() == "task_grads");
}

TEST_CASE("excess_mtl: AdaGrad-like excess risks, relative to the first, raise the weights", "[weighting][excess_mtl]") {
  ModelSpec spec = specWith(2, {{"trunk.0.weight", {2}, {0, 1}}}, "excess_mtl");
  spec.train.weightingArgs = {0.5};
  auto w = Weighting::create(spec, 1);
  FakeKernels k(2, 2);
  k.tg = {3.0f, 0.0f, /**/ 1.0f, 1.0f};
  k.L = {1.0f, 1.0f};
  // Step 1: the first estimates e(0) = Σ g²/√(g² + 1e-7); weights stay 1.
  StepResult r = w->step(k, 1);
  checkAll(r.weights, std::vector<double>{1, 1});
  const double e10 = 9 / std::sqrt(9 + 1e-7), e20 = 2 / std::sqrt(1 + 1e-7);
  // Step 2 with g1 = (3, 0) again and g2 = (0, 2): sums of squares (18, 0) and (1, 5).
  k.tg = {3.0f, 0.0f, /**/ 0.0f, 2.0f};
  r = w->step(k, 2);
  const double e1 = 9 / std::sqrt(18 + 1e-7), e2 = 4 / std::sqrt(5 + 1e-7);
  const double w1 = std::exp(0.5 * e1 / e10), w2 = std::exp(0.5 * e2 / e20);
  checkAll(r.weights, std::vector<double>{2 * w1 / (w1 + w2), 2 * w2 / (w1 + w2)});
  checkAll(k.g, std::vector<double>{3 * r.weights[0], 2 * r.weights[1]});
  const WeightingState& sq = stateNamed(w->state(), "mtl.grad_sq_sum");
  CHECK(sq.shape == std::vector<int64_t>{2, 2});
  CHECK(sq.data[3] == 5.0f);
}
