// LayerNorm over all per-sample elements (biased variance, eps) and its data and γ gradients,
// against double loops. Inputs have a non-zero mean so centring matters.
// Tolerance: 1e-4 relative + 1e-5 absolute (float elementwise work after double statistics).
#include "Harness.h"

#include <cmath>

using namespace mtlc;
using namespace mtlc::test;

namespace {

void checkLayerNorm(std::vector<int64_t> dims, int64_t n, double eps) {
  Harness h(8);
  Node *x = h.input(dims);
  Node *gamma = h.param(dims), *beta = h.param(dims);
  Node *dy = h.input(dims);
  Node *y = h.b.layerNorm(x, gamma, beta, eps);
  Node *dx = h.b.layerNormBwdData(x, gamma, dy, eps);
  Node *dgamma = h.b.layerNormBwdGamma(x, dy, eps);
  h.fillUniform(x, 1, 3);
  h.fillUniform(gamma, 0.5, 1.5);
  h.fillUniform(beta);
  h.fillUniform(dy);
  h.run(n);

  const int64_t E = x->type.elements();
  auto X = values(h, x), G = values(h, gamma), B = values(h, beta), DY = values(h, dy);
  std::vector<double> Y(n * E), DX(n * E), DG(E, 0.0);
  for (int64_t s = 0; s < n; ++s) {
    const double *xs = &X[s * E], *dys = &DY[s * E];
    double mean = 0, var = 0;
    for (int64_t e = 0; e < E; ++e) mean += xs[e];
    mean /= E;
    for (int64_t e = 0; e < E; ++e) var += (xs[e] - mean) * (xs[e] - mean);
    var /= E;
    double rstd = 1 / std::sqrt(var + eps);
    double meanG = 0, meanGX = 0;
    for (int64_t e = 0; e < E; ++e) {
      double xhat = (xs[e] - mean) * rstd, g = dys[e] * G[e];
      Y[s * E + e] = xhat * G[e] + B[e];
      DG[e] += dys[e] * xhat;
      meanG += g / E;
      meanGX += g * xhat / E;
    }
    for (int64_t e = 0; e < E; ++e) {
      double xhat = (xs[e] - mean) * rstd;
      DX[s * E + e] = rstd * (dys[e] * G[e] - meanG - xhat * meanGX);
    }
  }
  requireClose(h.read(y), Y, 1e-4, 1e-5, "layernorm");
  requireClose(h.read(dx), DX, 1e-4, 1e-5, "layernorm_bwd_data");
  requireClose(h.read(dgamma), DG, 1e-4, 1e-5, "layernorm_bwd_gamma");
}

}  // namespace

TEST_CASE("layernorm forward and gradients over a vector", "[codegen][norm]") {
  checkLayerNorm({37}, 5, 1e-5);
}

TEST_CASE("layernorm over a 3-D sample, eps from the node", "[codegen][norm]") {
  checkLayerNorm({3, 4, 5}, 8, 1e-3);
}
