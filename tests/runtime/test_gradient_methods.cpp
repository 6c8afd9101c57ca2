// The gradient methods of GradientMethods.cpp (imtl, cagrad, gradvac, graddrop, db_mtl, moco):
// their solvers against known solutions, and every method on a batch where a task has no label.
// The step-by-step parity with PyTorch is tests/pytorch/weighting_grada.py.
#include "TestUtil.h"

#include "runtime/core/Rng.h"
#include "runtime/train/WeightingParts.h"

#include <cmath>
#include <random>

using namespace mtlc::rt;
using namespace mtlc::rt::test;

namespace {

std::vector<double> gram(const std::vector<std::vector<double>>& v) {
  const size_t T = v.size();
  std::vector<double> G(T * T, 0.0);
  for (size_t i = 0; i < T; ++i)
    for (size_t j = 0; j < T; ++j)
      for (size_t d = 0; d < v[i].size(); ++d) G[i * T + j] += v[i][d] * v[j][d];
  return G;
}

double dualObjective(const std::vector<double>& G, const std::vector<double>& w, double cPrime) {
  const size_t T = w.size();
  double lin = 0, quad = 0;
  for (size_t i = 0; i < T; ++i)
    for (size_t j = 0; j < T; ++j) lin += w[i] * G[i * T + j] / double(T), quad += w[i] * G[i * T + j] * w[j];
  return lin + cPrime * std::sqrt(quad);
}

std::vector<std::vector<double>> randomVectors(int64_t T, int64_t dim, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal;
  std::vector<std::vector<double>> v(static_cast<size_t>(T), std::vector<double>(static_cast<size_t>(dim)));
  for (auto& row : v)
    for (double& x : row) x = normal(rng);
  return v;
}

// Kernels that hand out fixed per-task gradients and losses; task `absent` has no label.
struct Fixed3 final : StepKernels {
  std::vector<float> L{0.8f, 0.0f, 1.3f}, tg, g;
  int64_t P, absent = 1;
  explicit Fixed3(int64_t P) : tg(size_t(3 * P)), g(size_t(P)), P(P) {
    std::mt19937 rng(5);
    std::normal_distribution<float> normal;
    for (int64_t t = 0; t < 3; ++t)
      for (int64_t p = 0; p < P; ++p) tg[size_t(t * P + p)] = t == absent ? 0.0f : normal(rng);
  }
  void trainStep(const float* w) override {
    for (int64_t p = 0; p < P; ++p) g[size_t(p)] = w[0] * tg[size_t(p)] + w[1] * tg[size_t(P + p)] + w[2] * tg[size_t(2 * P + p)];
  }
  void taskGrads(const float*) override {}
  void repGrads(const float*) override {}
  const float* losses() const override { return L.data(); }
  float* grads() override { return g.data(); }
  const float* taskGrad(int64_t t) const override { return tg.data() + t * P; }
  const float* repGrad(int64_t) const override { return nullptr; }
  int64_t n() const override { return 4; }
  int64_t present(int64_t t) const override { return t == absent ? 0 : 4; }
};

}  // namespace

TEST_CASE("imtl: equal projections on every unit gradient; absent tasks get 0", "[weighting][imtl]") {
  // g1 = (1, 0), g2 = (0, 2): d = a1·g1 + a2·g2 with d·u1 = d·u2 → a1 = 2·a2 → (2/3, 1/3).
  std::vector<double> a = imtlWeights(gram({{1, 0}, {0, 2}}), 2, {true, true});
  CHECK(a[0] == Approx(2.0 / 3).epsilon(1e-12));
  CHECK(a[1] == Approx(1.0 / 3).epsilon(1e-12));
  const auto v = randomVectors(4, 6, 3);
  a = imtlWeights(gram(v), 4, {true, true, true, true});
  std::vector<double> d(6, 0.0), proj;
  double sum = 0;
  for (size_t t = 0; t < 4; ++t) {
    sum += a[t];
    for (size_t k = 0; k < 6; ++k) d[k] += a[t] * v[t][k];
  }
  for (const auto& g : v) {
    double dot = 0, nn = 0;
    for (size_t k = 0; k < 6; ++k) dot += d[k] * g[k], nn += g[k] * g[k];
    proj.push_back(dot / std::sqrt(nn));
  }
  CHECK(sum == Approx(1).epsilon(1e-12));
  for (double p : proj) CHECK(p == Approx(proj[0]).epsilon(1e-9));
  a = imtlWeights(gram({{1, 0}, {0, 0}, {0, 2}}), 3, {true, false, true});
  CHECK(a[1] == 0);
  CHECK(a[0] == Approx(2.0 / 3).epsilon(1e-12));
  CHECK(imtlWeights(gram({{1, 0}, {0, 0}}), 2, {true, false}) == std::vector<double>{1, 0});
}

TEST_CASE("cagrad: the dual solved exactly, checked by hand and against a dense grid", "[weighting][cagrad]") {
  // g1 ⟂ g2, unit: w = (½, ½) by symmetry, g0 = (½, ½), λ = c·‖g0‖/‖g_w‖ = c,
  // coef_t = (½ + c·½)/(1 + c²).
  const std::vector<double> coef = cagradCoefficients(gram({{1, 0}, {0, 1}}), 2, {true, true}, 0.4);
  CHECK(coef[0] == Approx(0.7 / 1.16).epsilon(1e-12));
  CHECK(coef[1] == Approx(0.7 / 1.16).epsilon(1e-12));
  // c' = 0: a vertex, the task of least g_t·g0.
  const std::vector<double> G1 = gram({{1, 0}, {-0.5, 2}});
  CHECK(cagradDual(G1, 2, {true, true}, 0.0) == std::vector<double>{1, 0});
  for (unsigned seed : {1u, 2u, 3u, 4u, 5u}) {
    const auto v = randomVectors(3, 5, seed);
    const std::vector<double> G = gram(v);
    const double cPrime = 0.4 * std::sqrt(dualObjective(G, {1.0 / 3, 1.0 / 3, 1.0 / 3}, 0.0));  // c·‖g0‖
    const std::vector<double> w = cagradDual(G, 3, {true, true, true}, cPrime);
    double best = 1e300;
    std::vector<double> at;
    const int N = 400;
    for (int i = 0; i <= N; ++i)
      for (int j = 0; i + j <= N; ++j) {
        const std::vector<double> x{double(i) / N, double(j) / N, double(N - i - j) / N};
        const double f = dualObjective(G, x, cPrime);
        if (f < best) best = f, at = x;
      }
    CHECK(w[0] + w[1] + w[2] == Approx(1).epsilon(1e-12));
    CHECK(dualObjective(G, w, cPrime) <= best + 1e-12);
    for (size_t t = 0; t < 3; ++t) CHECK(std::fabs(w[t] - at[t]) < 0.02);
  }
  // An absent task (zero gradient) is left out of the dual.
  const std::vector<double> w = cagradDual(gram({{1, 0}, {0, 0}, {0, 1}}), 3, {true, false, true}, 0.3);
  CHECK(w[1] == 0);
}

TEST_CASE("graddrop: the documented uniforms, the same for the same seed and step", "[weighting][graddrop]") {
  const std::vector<double> a = graddropUniforms(7, 3, 100), b = graddropUniforms(7, 3, 100);
  CHECK(a == b);
  CHECK(a != graddropUniforms(7, 4, 100));
  for (double u : a) CHECK((u >= 0 && u < 1));
  Rng rng(mix64(mix64(7) ^ 3) ^ 0x4744u);
  CHECK(a[0] == double(rng() >> 11) * 0x1.0p-53);
}

TEST_CASE("gradient methods: a task without labels gives finite gradients and weights", "[weighting]") {
  for (const char* name : {"imtl", "cagrad", "gradvac", "graddrop", "db_mtl", "moco"}) {
    INFO(name);
    ModelSpec spec;
    spec.name = "m";
    for (int t = 0; t < 3; ++t) spec.tasks.push_back(TaskSpec{});
    ParamSpec trunk, head;
    trunk.name = "trunk.weight", trunk.shape = {6}, trunk.size = 6, trunk.offset = 0, trunk.tasks = {0, 1, 2};
    head.name = "head.weight", head.shape = {2}, head.size = 2, head.offset = 6, head.tasks = {0};
    spec.params = {trunk, head};
    spec.paramCount = 8;
    spec.train.weighting = weightingNamed(name);
    spec.trainStep = spec.taskGradsStep = [](const mtlc_args*) {};
    auto w = Weighting::create(spec, 11);
    Fixed3 k(8);
    for (int64_t s = 1; s <= 3; ++s) {
      const StepResult r = w->step(k, s);
      for (float x : r.weights) CHECK(std::isfinite(x));
      CHECK(std::isfinite(r.total));
      for (float x : k.g) CHECK(std::isfinite(x));
    }
    for (const WeightingState& st : w->state())
      for (int64_t i = 0; i < st.size(); ++i) CHECK(std::isfinite(st.data[i]));
  }
}
