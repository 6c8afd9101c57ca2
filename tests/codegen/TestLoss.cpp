// The four losses (batch means, PyTorch's 'mean' reduction) and their gradients scaled by the
// incoming dL, against double formulas; logits include ±50 to check the stable forms.
// Tolerance: 1e-5 relative + 1e-6 absolute.
#include "Harness.h"

#include <algorithm>
#include <cmath>
#include <limits>

using namespace mtlc;
using namespace mtlc::test;

namespace {

// Loss + backward for one loss kind, run on n samples with saturated logits in the first two
// columns; P and Y hold the prediction and label as run.
struct LossRun : LossFixture {
  std::vector<double> P, Y;

  LossRun(OpKind fwd, OpKind bwd, int64_t width, int64_t labelWidth, int64_t n, bool classes,
          bool binary, const std::string &target = "")
      : LossFixture(8, fwd, bwd, {width}, {labelWidth}) {
    h.options.keepIR = true;
    h.options.target = target;
    float *p = h.data(pred);
    p[0] = 50, p[1] = -50;  // saturated logits
    if (classes) h.fillClasses(label, (int)width);
    else if (binary) h.fillClasses(label, 2);
    else h.fillUniform(label, -2, 2);
    h.run(n);
    P = values(h, pred);
    Y = values(h, label);
  }
};

double logSumExp(const double *z, int64_t C) {
  double m = *std::max_element(z, z + C), s = 0;
  for (int64_t c = 0; c < C; ++c) s += std::exp(z[c] - m);
  return m + std::log(s);
}

}  // namespace

// Cross-entropy for C classes on one vector shape (target "" = the host's).
void checkCrossEntropy(int64_t C, const std::string &target) {
  INFO("C = " << C << ", target '" << target << "'");
  const int64_t n = 6;
  LossRun r(OpKind::CrossEntropy, OpKind::CrossEntropyBwd, C, 1, n, true, false, target);
  double loss = 0;
  std::vector<double> grad(n * C);
  for (int64_t s = 0; s < n; ++s) {
    const double *z = &r.P[s * C];
    int64_t y = (int64_t)r.Y[s];
    double lse = logSumExp(z, C);
    loss += (lse - z[y]) / n;
    for (int64_t c = 0; c < C; ++c) grad[s * C + c] = r.dL * (std::exp(z[c] - lse) - (c == y)) / n;
  }
  requireClose({r.h.losses()[0]}, {loss}, 1e-5, 1e-6, "loss written to losses[0]");
  requireClose(r.h.read(r.loss), {loss}, 1e-5, 1e-6, "cross_entropy");
  requireClose(r.h.read(r.grad), grad, 1e-5, 1e-6, "cross_entropy_bwd");
}

TEST_CASE("cross entropy and its gradient", "[codegen][loss]") { checkCrossEntropy(10, ""); }

TEST_CASE("cross entropy: rows within one vector and wider, every vector shape", "[codegen][loss]") {
  // A row of C <= lanes classes is one masked vector in the backward kernel (EmitLoss.cpp,
  // softmaxVector); wider rows loop. 16 lanes (avx512), 8 (avx2), scalar (generic).
  for (const char *target : {"avx512", "avx2", "generic"})
    for (int64_t C : {2, 3, 8, 9, 16, 17}) checkCrossEntropy(C, target);
}

TEST_CASE("binary cross entropy with logits and its gradient", "[codegen][loss]") {
  const int64_t n = 7;
  LossRun r(OpKind::BCE, OpKind::BCEBwd, 1, 1, n, false, true);
  double loss = 0;
  std::vector<double> grad(n);
  for (int64_t s = 0; s < n; ++s) {
    double z = r.P[s], y = r.Y[s];
    loss += (std::max(z, 0.0) - z * y + std::log1p(std::exp(-std::abs(z)))) / n;
    // σ(z) − y without cancellation: (1 − y)·σ(z) − y·σ(−z)
    grad[s] = r.dL * ((1 - y) / (1 + std::exp(-z)) - y / (1 + std::exp(z))) / n;
  }
  requireClose(r.h.read(r.loss), {loss}, 1e-5, 1e-6, "bce");
  requireClose(r.h.read(r.grad), grad, 1e-5, 1e-6, "bce_bwd");
  // The saturated logits' gradients are tiny (σ(−50) ≈ 2e-22 where y = 1) and the absolute
  // tolerance above would pass 0: they keep their relative accuracy (σ(−z), not 1 − σ(z)).
  const std::vector<double> got = r.h.read(r.grad);
  for (int s : {0, 1}) {
    INFO("logit " << r.P[s] << ", label " << r.Y[s]);
    CHECK(std::abs(got[s] - grad[s]) <= 1e-5 * std::abs(grad[s]));
  }
  // The exponentials and logarithms are Math.cpp's float polynomials, not libm calls, so the
  // loops can vectorise.
  const std::string &ir = r.h.compiled().llvmIR;
  CHECK(ir.find("@llvm.exp.f64(") == std::string::npos);
  CHECK(ir.find("@llvm.log.f64(") == std::string::npos);
}

TEST_CASE("bce: log(1 + e^−|z|) keeps its value where 1 + e^−|z| rounds to 1", "[codegen][loss]") {
  // One sample, z = 20, y = 1: the loss is log1p(e^−20) ≈ 2.06e-9, below float's 1 + ε; a plain
  // log(1 + e) would give 0.
  const int64_t n = 1;
  LossRun r(OpKind::BCE, OpKind::BCEBwd, 1, 1, n, false, true);
  r.h.data(r.pred)[0] = 20;
  r.h.data(r.label)[0] = 1;
  r.h.run(n);
  const double want = std::log1p(std::exp(-20.0));
  const double got = r.h.read(r.loss)[0];
  CHECK(std::abs(got - want) <= 1e-6 * want);
}

TEST_CASE("mse and l1 over n·k elements and their gradients", "[codegen][loss]") {
  const int64_t n = 5, k = 3;
  for (bool l1 : {false, true}) {
    INFO((l1 ? "l1" : "mse"));
    LossRun r(l1 ? OpKind::L1 : OpKind::MSE, l1 ? OpKind::L1Bwd : OpKind::MSEBwd, k, k, n, false,
              false);
    double loss = 0;
    std::vector<double> grad(n * k);
    for (int64_t i = 0; i < n * k; ++i) {
      double d = r.P[i] - r.Y[i];
      loss += (l1 ? std::abs(d) : d * d) / double(n * k);
      grad[i] = r.dL * (l1 ? double((d > 0) - (d < 0)) : 2 * d) / double(n * k);
    }
    requireClose(r.h.read(r.loss), {loss}, 1e-5, 1e-6, "loss");
    requireClose(r.h.read(r.grad), grad, 1e-5, 1e-6, "loss gradient");
  }
}

TEST_CASE("cross entropy: a class index outside [0, C) reads its row's nearest class, never past the row",
          "[codegen][loss]") {
  // The runtime refuses such labels (Trainer, the C API); the kernels clamp anyway, as the
  // embedding gather does, so a caller that skips the check gets defined values: exactly the loss
  // and gradient of the clamped label. Rows with small C are one vector in the backward kernel,
  // wider ones loop; both are covered.
  const float inf = std::numeric_limits<float>::infinity();
  for (int64_t C : {3, 20}) {
    const std::vector<float> bad = {float(C), float(C + 4), -1.f, -7.5f, 1e30f, inf, -inf};
    const int64_t n = int64_t(bad.size());
    LossRun r(OpKind::CrossEntropy, OpKind::CrossEntropyBwd, C, 1, n, true, false);
    float *label = r.h.data(r.label);
    for (int64_t s = 0; s < n; ++s) label[s] = float(std::min<double>(std::max<double>(bad[s], 0), double(C - 1)));
    r.h.run(n);
    const std::vector<double> clampedLoss = r.h.read(r.loss), clampedGrad = r.h.read(r.grad);
    for (int64_t s = 0; s < n; ++s) label[s] = bad[s];
    r.h.run(n);
    INFO("C = " << C);
    REQUIRE(std::isfinite(r.h.read(r.loss)[0]));
    CHECK(r.h.read(r.loss) == clampedLoss);  // bit for bit: the same class is read
    CHECK(r.h.read(r.grad) == clampedGrad);
  }
}
