// The small exact solvers of the gradient methods in SolverMethods.cpp (upgrad, aligned_mtl,
// nash_mtl, fairgrad), exposed for tests. Matrices are T×T, row-major, in double; a Gram matrix
// G_ij = g_i·g_j of the task gradients.
#pragma once

#include <cstdint>
#include <vector>

namespace mtlc::rt {

// The x ≥ 0 minimising ½·xᵀAx + bᵀx for a symmetric positive definite A (n×n): Lawson–Hanson's
// active set on the normal equations (exact up to the linear solves; at most 3n+10 outer steps).
std::vector<double> nonNegativeQp(const std::vector<double>& A, const std::vector<double>& b, int64_t n);

// UPGrad's projection of Jᵀu onto the dual cone of J's rows, as its weights (Quinton & Rey 2024,
// Proposition 1): the v ≥ u minimising vᵀGv (G positive definite).
std::vector<double> projectDualCone(const std::vector<double>& G, const std::vector<double>& u, int64_t T);

// UPGrad's weights: G ← G / trace(G) (the zero matrix when trace < normEps), + regEps·I; then
// w = Σ_i projectDualCone(G, e_i/T).
std::vector<double> upgradWeights(const std::vector<double>& gram, int64_t T, double normEps, double regEps);

// Eigen-decomposition of a symmetric n×n matrix by cyclic Jacobi rotations: `values` ascending,
// `vectors` row-major with eigenvector k in column k.
void symmetricEigen(const std::vector<double>& A, int64_t n, std::vector<double>& values,
                    std::vector<double>& vectors);

// Aligned-MTL's weights (Senushkin et al. 2023, as LibMTL): G = V·diag(λ)·Vᵀ; the eigenpairs with
// λ > λ_max·T·2⁻²³ (float32's epsilon) are kept (rank R); B = √λ_R · V_R·diag(λ_R^−½)·V_Rᵀ with λ_R
// the smallest kept; w_j = Σ_i B_ij. All gradients zero (R = 0): w = 1/T.
std::vector<double> alignedWeights(const std::vector<double>& gram, int64_t T);

// The α-fair allocation (FairGrad, Ban & Ji 2024; Nash-MTL is α = 1): x > 0 with G·x = x^(−1/α)
// (elementwise) over the tasks with G_ii > 0, x_i = 0 for the others (a zero gradient). It is the
// minimiser of the strictly convex ½·xᵀGx − Σ_i h(x_i), h' = x^(−1/α); found by damped Newton on
// G / max_i G_ii, rescaled.
std::vector<double> fairWeights(const std::vector<double>& gram, int64_t T, double alpha);

}  // namespace mtlc::rt
