// Losses with partial labels: a NaN label is absent. Each loss is the mean over the present labels
// (per sample for cross-entropy and BCE, per element for MSE and L1), an absent label's gradient is
// exactly 0 whatever the prediction there (even NaN or ±inf), and a batch with no label gives loss
// 0 and a zero gradient. Also: absent samples change nothing — the present samples' gradients
// equal those of the batch without the absent samples. Against double formulas.
// Tolerance: 1e-5 relative + 1e-6 absolute (as for the unmasked losses); absent entries exactly 0.
#include "Harness.h"

#include <algorithm>
#include <cmath>
#include <limits>

using namespace mtlc;
using namespace mtlc::test;

namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();

// Loss + backward for one loss kind on a 1-D head.
struct MaskedRun : LossFixture {
  MaskedRun(OpKind fwd, OpKind bwd, int64_t width, int64_t labelWidth)
      : LossFixture(8, fwd, bwd, {width}, {labelWidth}) {}
};

double logSumExp(const double *z, int64_t C) {
  double m = z[0], s = 0;
  for (int64_t c = 1; c < C; ++c) m = std::max(m, z[c]);
  for (int64_t c = 0; c < C; ++c) s += std::exp(z[c] - m);
  return m + std::log(s);
}

// Reference for cross-entropy over the first n samples, skipping NaN labels.
void crossEntropyRef(const std::vector<double> &Z, const std::vector<double> &Y, int64_t n,
                     int64_t C, double dL, double &loss, std::vector<double> &grad) {
  int64_t present = 0;
  for (int64_t s = 0; s < n; ++s) present += !std::isnan(Y[s]);
  loss = 0;
  grad.assign(n * C, 0.0);
  for (int64_t s = 0; s < n; ++s) {
    if (std::isnan(Y[s])) continue;
    const double *z = &Z[s * C];
    int64_t y = (int64_t)Y[s];
    double lse = logSumExp(z, C);
    loss += (lse - z[y]) / present;
    for (int64_t c = 0; c < C; ++c) grad[s * C + c] = dL * (std::exp(z[c] - lse) - (c == y)) / present;
  }
}

// Reference for an elementwise loss over `count` values, skipping NaN labels per element.
void elementwiseRef(OpKind op, const std::vector<double> &P, const std::vector<double> &Y,
                    int64_t count, double dL, double &loss, std::vector<double> &grad) {
  int64_t present = 0;
  for (int64_t i = 0; i < count; ++i) present += !std::isnan(Y[i]);
  loss = 0;
  grad.assign(count, 0.0);
  for (int64_t i = 0; i < count; ++i) {
    if (std::isnan(Y[i])) continue;
    double p = P[i], y = Y[i], d = p - y, term, g;
    switch (op) {
      case OpKind::BCE:
        term = std::max(p, 0.0) - p * y + std::log1p(std::exp(-std::abs(p)));
        g = 1 / (1 + std::exp(-p)) - y;
        break;
      case OpKind::MSE: term = d * d, g = 2 * d; break;
      default: term = std::abs(d), g = double((d > 0) - (d < 0)); break;
    }
    loss += term / present;
    grad[i] = dL * g / present;
  }
}

}  // namespace

TEST_CASE("cross entropy skips samples whose label is NaN", "[codegen][loss][masked]") {
  const int64_t n = 6, C = 5;
  MaskedRun r(OpKind::CrossEntropy, OpKind::CrossEntropyBwd, C, 1);
  r.h.fillClasses(r.label, (int)C);
  r.Y()[1] = kNaN, r.Y()[4] = kNaN;
  for (int64_t c = 0; c < C; ++c) r.P()[4 * C + c] = kNaN;  // garbage where the label is absent
  r.P()[1 * C + 2] = kInf;
  r.h.run(n);

  double loss;
  std::vector<double> grad;
  crossEntropyRef(values(r.h, r.pred), values(r.h, r.label), n, C, r.dL, loss, grad);
  requireClose({r.h.losses()[0]}, {loss}, 1e-5, 1e-6, "loss written to losses[0]");
  requireClose(r.h.read(r.grad), grad, 1e-5, 1e-6, "cross_entropy_bwd");
  auto g = r.h.read(r.grad);
  for (int64_t c = 0; c < C; ++c) {
    CHECK(g[1 * C + c] == 0.0);
    CHECK(g[4 * C + c] == 0.0);
  }
}

TEST_CASE("bce skips samples whose label is NaN", "[codegen][loss][masked]") {
  const int64_t n = 7;
  MaskedRun r(OpKind::BCE, OpKind::BCEBwd, 1, 1);
  r.h.fillClasses(r.label, 2);
  r.Y()[0] = kNaN, r.Y()[3] = kNaN, r.Y()[6] = kNaN;
  r.P()[3] = kNaN, r.P()[6] = -kInf;
  r.P()[1] = 50, r.P()[2] = -50;  // saturated logits where the label is present
  r.h.run(n);

  double loss;
  std::vector<double> grad;
  elementwiseRef(OpKind::BCE, values(r.h, r.pred), values(r.h, r.label), n, r.dL, loss, grad);
  requireClose(r.h.read(r.loss), {loss}, 1e-5, 1e-6, "bce");
  requireClose(r.h.read(r.grad), grad, 1e-5, 1e-6, "bce_bwd");
  auto g = r.h.read(r.grad);
  CHECK(g[0] == 0.0);
  CHECK(g[3] == 0.0);
  CHECK(g[6] == 0.0);
}

TEST_CASE("mse and l1 mask per element: the mean over present label values",
          "[codegen][loss][masked]") {
  const int64_t n = 5, k = 3;
  for (bool l1 : {false, true}) {
    INFO((l1 ? "l1" : "mse"));
    MaskedRun r(l1 ? OpKind::L1 : OpKind::MSE, l1 ? OpKind::L1Bwd : OpKind::MSEBwd, k, k);
    r.h.fillUniform(r.label, -2, 2);
    for (int64_t e = 0; e < k; ++e) r.Y()[2 * k + e] = kNaN;  // sample 2 has no label at all
    r.Y()[0 * k + 1] = kNaN;                                 // sample 0 lacks one element
    r.Y()[4 * k + 2] = kNaN;
    r.P()[2 * k + 0] = kNaN, r.P()[4 * k + 2] = kInf;
    r.h.run(n);

    double loss;
    std::vector<double> grad;
    elementwiseRef(l1 ? OpKind::L1 : OpKind::MSE, values(r.h, r.pred), values(r.h, r.label), n * k,
                   r.dL, loss, grad);
    requireClose(r.h.read(r.loss), {loss}, 1e-5, 1e-6, "loss (present elements: 11 of 15)");
    requireClose(r.h.read(r.grad), grad, 1e-5, 1e-6, "loss gradient");
  }
}

TEST_CASE("a batch with no label gives loss 0 and a zero gradient", "[codegen][loss][masked]") {
  struct Kind { OpKind fwd, bwd; int64_t width, labelWidth; };
  for (Kind kind : {Kind{OpKind::CrossEntropy, OpKind::CrossEntropyBwd, 4, 1},
                    Kind{OpKind::BCE, OpKind::BCEBwd, 1, 1},
                    Kind{OpKind::MSE, OpKind::MSEBwd, 3, 3},
                    Kind{OpKind::L1, OpKind::L1Bwd, 3, 3}}) {
    INFO(ir::mnemonic(kind.fwd));
    const int64_t n = 4;
    MaskedRun r(kind.fwd, kind.bwd, kind.width, kind.labelWidth);
    for (int64_t i = 0; i < r.h.module.maxBatch * kind.labelWidth; ++i) r.Y()[i] = kNaN;
    r.P()[0] = kInf;
    r.h.run(n);
    CHECK(r.h.losses()[0] == 0.0f);
    requireClose(r.h.read(r.loss), {0.0}, 0, 0, "loss");
    requireClose(r.h.read(r.grad), std::vector<double>(n * kind.width, 0.0), 0, 0, "gradient");
  }
}

TEST_CASE("absent samples change nothing in the present samples' loss and gradient",
          "[codegen][loss][masked]") {
  // Batch A: 7 samples, samples 1, 2 and 5 without a label (and arbitrary predictions there).
  // Batch B: only A's present samples, in order. The loss and the present gradient rows agree.
  struct Kind { OpKind fwd, bwd; int64_t width, labelWidth; };
  for (Kind kind : {Kind{OpKind::CrossEntropy, OpKind::CrossEntropyBwd, 6, 1},
                    Kind{OpKind::BCE, OpKind::BCEBwd, 1, 1},
                    Kind{OpKind::MSE, OpKind::MSEBwd, 2, 2},
                    Kind{OpKind::L1, OpKind::L1Bwd, 2, 2}}) {
    INFO(ir::mnemonic(kind.fwd));
    const int64_t nA = 7, W = kind.width, LW = kind.labelWidth;
    const std::vector<int64_t> absent{1, 2, 5};
    MaskedRun a(kind.fwd, kind.bwd, W, LW), b(kind.fwd, kind.bwd, W, LW);
    if (kind.fwd == OpKind::CrossEntropy) a.h.fillClasses(a.label, (int)W);
    else if (kind.fwd == OpKind::BCE) a.h.fillClasses(a.label, 2);
    else a.h.fillUniform(a.label, -2, 2);
    int64_t nB = 0;
    for (int64_t s = 0; s < nA; ++s) {
      bool gone = std::find(absent.begin(), absent.end(), s) != absent.end();
      if (gone) {
        for (int64_t e = 0; e < LW; ++e) a.Y()[s * LW + e] = kNaN;
        continue;
      }
      for (int64_t e = 0; e < W; ++e) b.P()[nB * W + e] = a.P()[s * W + e];
      for (int64_t e = 0; e < LW; ++e) b.Y()[nB * LW + e] = a.Y()[s * LW + e];
      ++nB;
    }
    a.h.run(nA);
    b.h.run(nB);
    requireClose(a.h.read(a.loss), b.h.read(b.loss), 1e-6, 1e-7, "loss");
    auto gA = a.h.read(a.grad), gB = b.h.read(b.grad);
    std::vector<double> presentRows;
    for (int64_t s = 0; s < nA; ++s) {
      bool gone = std::find(absent.begin(), absent.end(), s) != absent.end();
      for (int64_t e = 0; e < W; ++e) {
        if (gone) CHECK(gA[s * W + e] == 0.0);
        else presentRows.push_back(gA[s * W + e]);
      }
    }
    requireClose(presentRows, gB, 1e-6, 1e-7, "present samples' gradient");
  }
}
