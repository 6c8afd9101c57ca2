// Activations and their gradients, Add/Mul, constants, bias broadcast/reduction and dropout,
// against double-precision formulas (PyTorch's definitions). Tolerances: 1e-5 relative + 1e-6
// absolute for transcendental ops (float libm), exact-ish (1e-6) for arithmetic.
#include "Harness.h"

#include <cmath>
#include <functional>

using namespace mtlc;
using namespace mtlc::test;

namespace {

double sigmoid(double x) { return 1 / (1 + std::exp(-x)); }
double normalCdf(double x) { return 0.5 * (1 + std::erf(x / std::sqrt(2.0))); }
double normalPdf(double x) { return std::exp(-0.5 * x * x) / std::sqrt(2 * M_PI); }
// DSelect-k's smooth step and its derivative, u = x/γ (Hazimeh et al. 2021, eq. 1).
double smoothStep(double x, double gamma) {
  double u = x / gamma;
  return u <= -0.5 ? 0 : u >= 0.5 ? 1 : -2 * u * u * u + 1.5 * u + 0.5;
}
double smoothStepSlope(double x, double gamma) {
  double u = x / gamma;
  return u <= -0.5 || u >= 0.5 ? 0 : (1.5 - 6 * u * u) / gamma;
}

// Runs op(x) (forward ops) over a batched [4,5] input with values in [lo, hi).
void checkUnary(OpKind op, double f, double lo, double hi, std::function<double(double)> ref) {
  INFO(ir::mnemonic(op));
  Harness h(8);
  Node *x = h.input({4, 5});
  Node *y = h.b.unary(op, x, f);
  h.fillUniform(x, lo, hi);
  float *p = h.data(x);
  p[0] = (float)lo, p[1] = (float)hi, p[2] = 0;  // the ends of the range and zero
  h.run(7);
  auto X = values(h, x);
  std::vector<double> want;
  for (int64_t i = 0; i < 7 * 20; ++i) want.push_back(ref(X[i]));
  requireClose(h.read(y), want, 1e-5, 1e-6, ir::mnemonic(op));
}

// Runs a backward op (saved, dy) -> dx with `saved` in [lo, hi) and dy in [-1, 1).
void checkBackward(OpKind op, double f, double lo, double hi,
                   std::function<double(double saved, double dy)> ref) {
  INFO(ir::mnemonic(op));
  Harness h(8);
  Node *saved = h.input({3, 7});
  Node *dy = h.input({3, 7});
  Node *dx = h.b.unaryBwd(op, saved, dy, f);
  h.fillUniform(saved, lo, hi);
  h.fillUniform(dy);
  h.data(saved)[0] = 0;
  h.run(5);
  auto S = values(h, saved), DY = values(h, dy);
  std::vector<double> want;
  for (int64_t i = 0; i < 5 * 21; ++i) want.push_back(ref(S[i], DY[i]));
  requireClose(h.read(dx), want, 1e-5, 1e-6, ir::mnemonic(op));
}

}  // namespace

TEST_CASE("activations forward", "[codegen][elementwise]") {
  checkUnary(OpKind::Relu, 0, -2, 2, [](double x) { return x < 0 ? 0 : x; });
  checkUnary(OpKind::LeakyRelu, 0.1, -2, 2, [](double x) { return x > 0 ? x : 0.1 * x; });
  checkUnary(OpKind::Sigmoid, 0, -30, 30, sigmoid);
  checkUnary(OpKind::Tanh, 0, -4, 4, [](double x) { return std::tanh(x); });
  checkUnary(OpKind::Tanh, 0, -0.01, 0.01, [](double x) { return std::tanh(x); });  // near 0
  checkUnary(OpKind::Gelu, 0, -4, 4, [](double x) { return x * normalCdf(x); });
  for (double gamma : {1.0, 0.3, -1.0, 2.5})
    checkUnary(OpKind::SmoothStep, gamma, -2, 2, [=](double x) { return smoothStep(x, gamma); });
}

TEST_CASE("activations backward", "[codegen][elementwise]") {
  checkBackward(OpKind::ReluBwd, 0, -1, 1, [](double x, double g) { return x > 0 ? g : 0; });
  checkBackward(OpKind::LeakyReluBwd, 0.2, -1, 1,
                [](double x, double g) { return x > 0 ? g : 0.2 * g; });
  checkBackward(OpKind::SigmoidBwd, 0, 0, 1, [](double y, double g) { return g * y * (1 - y); });
  checkBackward(OpKind::TanhBwd, 0, -1, 1, [](double y, double g) { return g * (1 - y * y); });
  checkBackward(OpKind::GeluBwd, 0, -4, 4, [](double x, double g) {
    return g * (normalCdf(x) + x * normalPdf(x));
  });
  for (double gamma : {1.0, 0.3, -1.0, 2.5})
    checkBackward(OpKind::SmoothStepBwd, gamma, -2, 2,
                  [=](double x, double g) { return g * smoothStepSlope(x, gamma); });
}

TEST_CASE("add, mul and constants on batched, unbatched and scalar values", "[codegen][elementwise]") {
  Harness h(6);
  Node *a = h.input({2, 3}), *bb = h.input({2, 3});
  Node *p = h.param({4, 3}), *q = h.param({4, 3});
  Node *c1 = h.b.constant(1.5), *c2 = h.b.constant(-0.25);
  Node *sum = h.b.add(a, bb), *prod = h.b.mul(a, bb);
  Node *psum = h.b.add(p, q), *pprod = h.b.mul(p, q);
  Node *ssum = h.b.add(c1, c2), *sprod = h.b.mul(c1, h.lossWeight(0));
  h.label({1});  // task 0 exists, so loss_weights[0] is meaningful
  for (Node *leaf : {a, bb, p, q}) h.fillUniform(leaf);
  h.lossWeights()[0] = 0.75f;
  h.run(4);
  auto A = values(h, a), B = values(h, bb), P = values(h, p), Q = values(h, q);
  std::vector<double> wantSum, wantProd, wantPSum, wantPProd;
  for (int i = 0; i < 4 * 6; ++i) wantSum.push_back(A[i] + B[i]), wantProd.push_back(A[i] * B[i]);
  for (int i = 0; i < 12; ++i) wantPSum.push_back(P[i] + Q[i]), wantPProd.push_back(P[i] * Q[i]);
  requireClose(h.read(sum), wantSum, 1e-6, 1e-7, "add batched");
  requireClose(h.read(prod), wantProd, 1e-6, 1e-7, "mul batched");
  requireClose(h.read(psum), wantPSum, 1e-6, 1e-7, "add unbatched");
  requireClose(h.read(pprod), wantPProd, 1e-6, 1e-7, "mul unbatched");
  requireClose(h.read(c1), {1.5}, 0, 0, "const");
  requireClose(h.read(ssum), {1.25}, 0, 0, "add scalars");
  requireClose(h.read(sprod), {1.125}, 0, 0, "const * loss weight");
}

TEST_CASE("bias add, bias grad and batch reduction", "[codegen][elementwise]") {
  Harness h(8);
  Node *x = h.input({5, 3, 4});   // conv-like: bias per channel
  Node *xd = h.input({7});        // dense: bias per feature
  Node *bc = h.param({5}), *bd = h.param({7});
  Node *yc = h.b.biasAdd(x, bc), *yd = h.b.biasAdd(xd, bd);
  Node *gc = h.b.biasGrad(x), *gd = h.b.biasGrad(xd);
  Node *rb = h.b.reduceBatch(x);
  for (Node *leaf : {x, xd, bc, bd}) h.fillUniform(leaf);
  const int64_t n = 6;
  h.run(n);
  auto X = values(h, x), XD = values(h, xd), BC = values(h, bc), BD = values(h, bd);
  std::vector<double> wantYc(n * 60), wantYd(n * 7), wantGc(5, 0.0), wantGd(7, 0.0), wantRb(60, 0.0);
  for (int64_t s = 0; s < n; ++s) {
    for (int64_t e = 0; e < 60; ++e) {
      int64_t i = s * 60 + e, c = e / 12;
      wantYc[i] = X[i] + BC[c];
      wantGc[c] += X[i];
      wantRb[e] += X[i];
    }
    for (int64_t e = 0; e < 7; ++e) {
      wantYd[s * 7 + e] = XD[s * 7 + e] + BD[e];
      wantGd[e] += XD[s * 7 + e];
    }
  }
  requireClose(h.read(yc), wantYc, 1e-6, 1e-7, "bias_add conv");
  requireClose(h.read(yd), wantYd, 1e-6, 1e-7, "bias_add dense");
  requireClose(h.read(gc), wantGc, 1e-5, 1e-6, "bias_grad conv");
  requireClose(h.read(gd), wantGd, 1e-5, 1e-6, "bias_grad dense");
  requireClose(h.read(rb), wantRb, 1e-5, 1e-6, "reduce_batch");
}

TEST_CASE("dropout: backward recomputes the forward mask; keep rate ≈ 1 − p", "[codegen][dropout]") {
  const double p = 0.3;
  const int64_t n = 64, width = 1000;
  Harness h(n);
  Node *x = h.input({width});
  Node *dy = h.input({width});
  Node *y = h.b.unary(OpKind::Dropout, x, p, {7});
  Node *dx = h.b.dropoutBwd(dy, p, 7);
  Node *other = h.b.unary(OpKind::Dropout, x, p, {8});  // another dropout site
  h.fillUniform(x, 0.5, 1.5);                           // nonzero, so y == 0 means dropped
  h.fillUniform(dy, 0.5, 1.5);
  auto X = values(h, x), DY = values(h, dy);

  auto keptMask = [](const std::vector<double> &v) {
    std::vector<bool> kept;
    for (double e : v) kept.push_back(e != 0);
    return kept;
  };
  h.run(n, /*seed=*/42);
  auto Y = h.read(y), DX = h.read(dx), O = h.read(other);
  std::vector<bool> mask = keptMask(Y);
  CHECK(mask == keptMask(DX));   // same (seed, salt, index) -> same decision
  CHECK(mask != keptMask(O));    // another salt -> another mask

  int64_t kept = 0;
  for (size_t i = 0; i < Y.size(); ++i) {
    if (!mask[i]) continue;
    ++kept;
    REQUIRE(Y[i] == Approx(X[i] / (1 - p)).epsilon(1e-6));
    REQUIRE(DX[i] == Approx(DY[i] / (1 - p)).epsilon(1e-6));
  }
  double rate = double(kept) / double(Y.size());
  INFO("keep rate " << rate);
  CHECK(std::abs(rate - (1 - p)) < 0.01);  // σ ≈ 0.0018 for 64000 draws

  h.run(n, 42);
  CHECK(keptMask(h.read(y)) == mask);     // deterministic for a seed
  h.run(n, 43);
  CHECK(keptMask(h.read(y)) != mask);     // a new step, a new mask
  CHECK(keptMask(h.read(y)) == keptMask(h.read(dx)));
}

TEST_CASE("dropout: p = 0 is the identity, p = 1 drops everything", "[codegen][dropout]") {
  Harness h(4);
  Node *x = h.input({9});
  Node *keep = h.b.unary(OpKind::Dropout, x, 0.0, {1});
  Node *drop = h.b.unary(OpKind::Dropout, x, 1.0, {2});
  h.fillUniform(x);
  h.run(3);
  auto X = values(h, x);
  X.resize(27);
  requireClose(h.read(keep), X, 0, 0, "p = 0");
  requireClose(h.read(drop), std::vector<double>(27, 0.0), 0, 0, "p = 1");
}
