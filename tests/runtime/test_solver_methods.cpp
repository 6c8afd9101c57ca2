// The exact solvers of upgrad, aligned_mtl, nash_mtl and fairgrad (runtime/train/SolverMethods.h)
// against known solutions: a brute-force KKT enumeration for UPGrad's QP, closed forms for the
// eigen-decomposition, Aligned-MTL's and the α-fair weights, and the defining equations.
#include "TestUtil.h"

#include "runtime/train/SolverMethods.h"

#include <cmath>
#include <random>

using namespace mtlc::rt;

namespace {

// A random T×T Gram matrix of T vectors in R^dim (positive definite when dim ≥ T), with some
// conflicting pairs.
std::vector<double> randomGram(std::mt19937& rng, int64_t T, int64_t dim) {
  std::normal_distribution<double> normal;
  std::vector<double> v(size_t(T * dim)), G(size_t(T * T), 0.0);
  for (double& x : v) x = normal(rng);
  for (int64_t i = 0; i < T; ++i)
    for (int64_t j = 0; j < T; ++j)
      for (int64_t k = 0; k < dim; ++k) G[size_t(i * T + j)] += v[size_t(i * dim + k)] * v[size_t(j * dim + k)];
  return G;
}

double at(const std::vector<double>& M, int64_t n, int64_t i, int64_t j) { return M[size_t(i * n + j)]; }

// The v ≥ u minimising vᵀGv by enumerating every set F of coordinates above their bound: v_F
// solves G_FF·v_F = −G_FB·u_B (Cramer-free Gaussian elimination), v_B = u_B; the KKT point has
// v_F ≥ u_F and (G·v)_B ≥ 0. Returns the best such v.
std::vector<double> bruteForceProjection(const std::vector<double>& G, const std::vector<double>& u, int64_t T) {
  std::vector<double> best;
  double bestValue = INFINITY;
  for (int64_t mask = 0; mask < (int64_t(1) << T); ++mask) {
    std::vector<int64_t> F;
    for (int64_t i = 0; i < T; ++i)
      if (mask >> i & 1) F.push_back(i);
    const int64_t m = int64_t(F.size());
    std::vector<double> A(size_t(m * (m + 1)));  // [G_FF | rhs]
    for (int64_t r = 0; r < m; ++r) {
      double rhs = 0;
      for (int64_t j = 0; j < T; ++j)
        if (!(mask >> j & 1)) rhs -= at(G, T, F[size_t(r)], j) * u[size_t(j)];
      for (int64_t c = 0; c < m; ++c) A[size_t(r * (m + 1) + c)] = at(G, T, F[size_t(r)], F[size_t(c)]);
      A[size_t(r * (m + 1) + m)] = rhs;
    }
    for (int64_t c = 0; c < m; ++c)  // Gauss–Jordan (G_FF is positive definite: no pivoting)
      for (int64_t r = 0; r < m; ++r) {
        if (r == c) continue;
        const double f = A[size_t(r * (m + 1) + c)] / A[size_t(c * (m + 1) + c)];
        for (int64_t k = 0; k <= m; ++k) A[size_t(r * (m + 1) + k)] -= f * A[size_t(c * (m + 1) + k)];
      }
    std::vector<double> v = u;
    for (int64_t r = 0; r < m; ++r) v[size_t(F[size_t(r)])] = A[size_t(r * (m + 1) + m)] / A[size_t(r * (m + 1) + r)];
    bool kkt = true;
    for (int64_t i = 0; i < T; ++i) {
      double Gv = 0;
      for (int64_t j = 0; j < T; ++j) Gv += at(G, T, i, j) * v[size_t(j)];
      if (mask >> i & 1) kkt &= v[size_t(i)] >= u[size_t(i)] - 1e-12;
      else kkt &= Gv >= -1e-12;
    }
    if (!kkt) continue;
    double value = 0;
    for (int64_t i = 0; i < T; ++i)
      for (int64_t j = 0; j < T; ++j) value += v[size_t(i)] * at(G, T, i, j) * v[size_t(j)];
    if (value < bestValue) bestValue = value, best = v;
  }
  return best;
}

void checkClose(const std::vector<double>& got, const std::vector<double>& want, double eps) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    INFO("element " << i);
    CHECK(got[i] == Approx(want[i]).epsilon(eps).margin(eps));
  }
}

}  // namespace

TEST_CASE("upgrad: the dual-cone projection equals a brute-force KKT enumeration", "[weighting][upgrad]") {
  std::mt19937 rng(26);
  std::uniform_real_distribution<double> unit(-0.5, 1.0);
  for (int64_t T = 1; T <= 8; ++T)
    for (int trial = 0; trial < 40; ++trial) {
      INFO("T " << T << " trial " << trial);
      const std::vector<double> G = randomGram(rng, T, T + 2 + trial % 5);
      std::vector<double> u(static_cast<size_t>(T));
      for (double& x : u) x = unit(rng);
      checkClose(projectDualCone(G, u, T), bruteForceProjection(G, u, T), 1e-9);
    }
}

TEST_CASE("upgrad: weights 1/T without conflict; the two-task closed form with one", "[weighting][upgrad]") {
  // Pairwise non-negative products: every e_i/T already lies in the dual cone.
  checkClose(upgradWeights({4, 1, 0, 1, 2, 0.5, 0, 0.5, 1}, 3, 1e-4, 1e-4), {1.0 / 3, 1.0 / 3, 1.0 / 3}, 1e-12);
  // G = [[a, c], [c, b]] (normalised by its trace, + ε·I) with c < 0: projecting e_1/2 raises
  // v_2 to −c/(2b) so that (G·v)_2 = 0; likewise for e_2/2.
  const double eps = 1e-4, tr = 4 + 1;
  const double a = 4 / tr + eps, b = 1 / tr + eps, c = -1 / tr;
  checkClose(upgradWeights({4, -1, -1, 1}, 2, 1e-4, eps), {0.5 - c / (2 * a), 0.5 - c / (2 * b)}, 1e-12);
  // A trace below norm_eps: the regularised zero matrix, so every task keeps 1/T.
  checkClose(upgradWeights({1e-6, 0, 0, 1e-6}, 2, 1e-4, 1e-4), {0.5, 0.5}, 1e-12);
}

TEST_CASE("aligned_mtl: Jacobi eigen-decomposition", "[weighting][aligned_mtl]") {
  std::vector<double> lambda, V;
  symmetricEigen({2, 1, 1, 2}, 2, lambda, V);
  checkClose(lambda, {1, 3}, 1e-14);
  std::mt19937 rng(5);
  for (int64_t n = 1; n <= 9; ++n) {
    INFO("n " << n);
    const std::vector<double> A = randomGram(rng, n, n + 1);
    symmetricEigen(A, n, lambda, V);
    for (int64_t k = 1; k < n; ++k) CHECK(lambda[size_t(k - 1)] <= lambda[size_t(k)]);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < n; ++k) {
        double AV = 0, VtV = 0;
        for (int64_t j = 0; j < n; ++j) {
          AV += at(A, n, i, j) * at(V, n, j, k);
          VtV += at(V, n, j, i) * at(V, n, j, k);
        }
        CHECK(AV == Approx(lambda[size_t(k)] * at(V, n, i, k)).margin(1e-10));
        CHECK(VtV == Approx(i == k ? 1.0 : 0.0).margin(1e-12));
      }
  }
}

TEST_CASE("aligned_mtl: w = √λ_min·V·diag(λ^−½)·Vᵀ·1 on the kept eigenpairs", "[weighting][aligned_mtl]") {
  // Orthogonal gradients: V = I, w_j = √(λ_min/λ_j).
  checkClose(alignedWeights({4, 0, 0, 0, 1, 0, 0, 0, 9}, 3), {0.5, 1, 1.0 / 3}, 1e-12);
  // Rotated by 45°: G = Q·diag(1, 4)·Qᵀ, Q = [[c, −c], [c, c]]; B = Q·diag(1, ½)·Qᵀ, w = B·1.
  const double c = std::sqrt(0.5);
  const double g00 = c * c * 1 + c * c * 4, g01 = c * c * 1 - c * c * 4;
  const double b00 = c * c * 1 + c * c * 0.5, b01 = c * c * 1 - c * c * 0.5;
  checkClose(alignedWeights({g00, g01, g01, g00}, 2), {b00 + b01, b00 + b01}, 1e-12);
  // A zero gradient (a task without labels) is outside the kept rank: weight 0; all zero: 1/T.
  checkClose(alignedWeights({4, 0, 0, 0, 0, 0, 0, 0, 1}, 3), {0.5, 0, 1}, 1e-12);
  checkClose(alignedWeights({0, 0, 0, 0}, 2), {0.5, 0.5}, 0);
}

TEST_CASE("nash_mtl and fairgrad: G·x = x^(−1/α), x > 0", "[weighting][nash_mtl][fairgrad]") {
  // Orthogonal gradients: x_i = G_ii^(−α/(α+1)).
  for (double alpha : {0.5, 1.0, 2.0}) {
    INFO("alpha " << alpha);
    checkClose(fairWeights({4, 0, 0, 0.25}, 2, alpha), {std::pow(4, -alpha / (alpha + 1)), std::pow(0.25, -alpha / (alpha + 1))},
               1e-12);
  }
  // Two equal gradients g: x_1 = x_2 = x with 2x·‖g‖² = 1/x (α = 1).
  checkClose(fairWeights({2, 2, 2, 2}, 2, 1.0), {0.5, 0.5}, 1e-12);
  std::mt19937 rng(11);
  for (int64_t T = 1; T <= 8; ++T)
    for (double alpha : {0.5, 1.0, 3.0}) {
      INFO("T " << T << " alpha " << alpha);
      std::vector<double> G = randomGram(rng, T, T + 3);
      for (double& g : G) g *= 1e-3;  // scale plays no part
      const std::vector<double> x = fairWeights(G, T, alpha);
      for (int64_t i = 0; i < T; ++i) {
        double Gx = 0;
        for (int64_t j = 0; j < T; ++j) Gx += at(G, T, i, j) * x[size_t(j)];
        CHECK(x[size_t(i)] > 0);
        CHECK(Gx == Approx(std::pow(x[size_t(i)], -1 / alpha)).epsilon(1e-10));
      }
    }
  // A task with a zero gradient gets 0; the others solve their own system.
  const std::vector<double> x = fairWeights({1, 0, 0.5, 0, 0, 0, 0.5, 0, 1}, 3, 1.0);
  CHECK(x[1] == 0);
  checkClose({x[0], x[2]}, fairWeights({1, 0.5, 0.5, 1}, 2, 1.0), 1e-14);
  checkClose(fairWeights({0, 0, 0, 0}, 2, 1.0), {0, 0}, 0);
}
