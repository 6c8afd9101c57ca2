// The expert-mixture ops: softmax over a per-sample vector and its gradient, the weighted sum of
// expert outputs with a per-sample gate or a fixed row of a weight matrix, and the gradients with
// respect to the weights and to each input — against double-precision loops (PyTorch's
// definitions), at n below maxBatch.
// Tolerances: softmax 1e-5 relative + 1e-6 absolute (float expf, double normaliser); everything
// else 1e-5 relative + 1e-5 absolute (float sums of up to a few dozen products of values in [-1,1)).
#include "Harness.h"

#include <algorithm>
#include <cmath>

using namespace mtlc;
using namespace mtlc::test;

TEST_CASE("softmax over a per-sample vector and its gradient", "[codegen][mixture]") {
  const int64_t n = 5, K = 7;
  Harness h(8);
  Node *x = h.input({K});
  Node *dy = h.input({K});
  Node *y = h.b.softmax(x);
  Node *dx = h.b.softmaxBwd(y, dy);
  h.fillUniform(x, -5, 5);
  h.fillUniform(dy);
  float *p = h.data(x);
  p[0] = 50, p[1] = -50, p[2] = 80;  // sample 0: large logits (exp would overflow unshifted)
  for (int64_t c = 0; c < K; ++c) p[K + c] = 1000;  // sample 1: all equal and huge -> uniform
  h.run(n);

  auto X = values(h, x), DY = values(h, dy);
  std::vector<double> Y(n * K);
  for (int64_t s = 0; s < n; ++s) {
    const double *xs = &X[s * K];
    double m = *std::max_element(xs, xs + K), sum = 0;
    for (int64_t c = 0; c < K; ++c) sum += std::exp(xs[c] - m);
    for (int64_t c = 0; c < K; ++c) Y[s * K + c] = std::exp(xs[c] - m) / sum;
  }
  requireClose(h.read(y), Y, 1e-5, 1e-6, "softmax");
  for (int64_t c = 0; c < K; ++c) CHECK(h.read(y)[K + c] == Approx(1.0 / K));

  // The backward op's reference reads the y the kernel produced (its actual operand).
  auto YK = h.read(y);
  std::vector<double> DX(n * K);
  for (int64_t s = 0; s < n; ++s) {
    double dot = 0;
    for (int64_t c = 0; c < K; ++c) dot += YK[s * K + c] * DY[s * K + c];
    for (int64_t c = 0; c < K; ++c) DX[s * K + c] = YK[s * K + c] * (DY[s * K + c] - dot);
  }
  requireClose(h.read(dx), DX, 1e-5, 1e-6, "softmax_bwd");
}

TEST_CASE("softmax of a single-element vector is 1, its gradient 0", "[codegen][mixture]") {
  Harness h(4);
  Node *x = h.input({1});
  Node *dy = h.input({1});
  Node *y = h.b.softmax(x);
  Node *dx = h.b.softmaxBwd(y, dy);
  h.fillUniform(x, -3, 3);
  h.fillUniform(dy);
  h.run(3);
  requireClose(h.read(y), {1, 1, 1}, 0, 0, "softmax [1]");
  requireClose(h.read(dx), {0, 0, 0}, 0, 1e-7, "softmax_bwd [1]");
}

namespace {

// Mix, MixBwdWeights and MixBwdInput with E inputs of per-sample shape xDims; a per-sample gate
// when R == 0, else an [R,E] weight matrix read at `row`.
void checkMix(int64_t E, std::vector<int64_t> xDims, int64_t R, int64_t row, int64_t n) {
  INFO("E = " << E << ", R = " << R << ", row = " << row << ", n = " << n);
  const bool gate = R == 0;
  Harness h(8);
  Node *w = gate ? h.input({E}) : h.param({R, E});
  std::vector<Node *> xs;
  for (int64_t e = 0; e < E; ++e) xs.push_back(h.input(xDims));
  Node *dy = h.input(xDims);
  Node *y = h.b.mix(w, xs, row);
  Node *dw = h.b.mixBwdWeights(dy, xs, w->type, gate ? 0 : row);
  std::vector<Node *> dxs;
  for (int64_t e = 0; e < E; ++e) dxs.push_back(h.b.mixBwdInput(w, dy, e, gate ? 0 : row));
  h.fillUniform(w);
  for (Node *x : xs) h.fillUniform(x);
  h.fillUniform(dy);
  h.run(n);

  const int64_t D = xs[0]->type.elements();
  auto W = values(h, w), DY = values(h, dy);
  std::vector<std::vector<double>> X;
  for (Node *x : xs) X.push_back(values(h, x));
  auto weight = [&](int64_t s, int64_t e) { return gate ? W[s * E + e] : W[row * E + e]; };

  std::vector<double> Y(n * D, 0.0);
  for (int64_t s = 0; s < n; ++s)
    for (int64_t j = 0; j < D; ++j)
      for (int64_t e = 0; e < E; ++e) Y[s * D + j] += weight(s, e) * X[e][s * D + j];
  requireClose(h.read(y), Y, 1e-5, 1e-5, "mix");

  std::vector<double> DW(gate ? n * E : R * E, 0.0);
  for (int64_t s = 0; s < n; ++s)
    for (int64_t e = 0; e < E; ++e)
      for (int64_t j = 0; j < D; ++j)
        DW[gate ? s * E + e : row * E + e] += DY[s * D + j] * X[e][s * D + j];
  requireClose(h.read(dw), DW, 1e-5, 1e-5, "mix_bwd_weights");

  for (int64_t e = 0; e < E; ++e) {
    std::vector<double> DX(n * D);
    for (int64_t s = 0; s < n; ++s)
      for (int64_t j = 0; j < D; ++j) DX[s * D + j] = weight(s, e) * DY[s * D + j];
    requireClose(h.read(dxs[e]), DX, 1e-5, 1e-5, "mix_bwd_input k=" + std::to_string(e));
  }
}

}  // namespace

TEST_CASE("mix with a per-sample gate and its gradients", "[codegen][mixture]") {
  checkMix(3, {2, 5}, 0, 0, 6);   // multi-dimensional expert outputs
  checkMix(1, {4}, 0, 0, 7);      // a single expert
  checkMix(9, {13}, 0, 0, 5);     // more inputs than the kernel's inline operand capacity
}

TEST_CASE("mix with a row of a weight matrix (cross-stitch) and its gradients",
          "[codegen][mixture]") {
  checkMix(4, {6}, 3, 2, 5);      // last row; rows 0 and 1 of the gradient must be written as 0
  checkMix(2, {3, 3}, 2, 0, 6);   // first row
}
