// Per-pixel losses on a [C, H, W] head against plain double references (EmitLoss.cpp):
// cross-entropy with a class index per pixel (softmax over the channels, NaN = unlabelled, the mean
// over the batch's labelled pixels: nn.CrossEntropyLoss(ignore_index=−1) on [N, C, H, W]); cosine
// (1 − cos over the channels, the mean over pixels whose label vector is non-zero). Unlabelled
// pixels get exactly 0 gradient whatever the prediction there; a batch without a labelled pixel
// gives loss 0 and a zero gradient; with threads the result is the same.
// Tolerance: 1e-5 relative + 1e-6 absolute, as for the per-sample losses.
#include "Harness.h"

#include <algorithm>
#include <cmath>
#include <limits>

using namespace mtlc;
using namespace mtlc::test;

namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();

// Loss + backward of one kind on a [C, H, W] head: a class index per pixel for cross-entropy,
// a [C, H, W] label otherwise.
struct DenseRun : LossFixture {
  DenseRun(OpKind fwd, OpKind bwd, int64_t C, int64_t H, int64_t W, int threads = 1)
      : LossFixture(6, fwd, bwd, {C, H, W},
                fwd == OpKind::CrossEntropy ? std::vector<int64_t>{H * W} : std::vector<int64_t>{C, H, W},
                threads) {}
};

// Per-pixel cross-entropy over n samples of [C, P] logits and [P] labels, NaN skipped.
void denseCrossEntropyRef(const std::vector<double> &Z, const std::vector<double> &Y, int64_t n, int64_t C,
                          int64_t P, double dL, double &loss, std::vector<double> &grad) {
  int64_t labelled = 0;
  for (int64_t q = 0; q < n * P; ++q) labelled += !std::isnan(Y[q]);
  loss = 0;
  grad.assign(n * C * P, 0.0);
  for (int64_t s = 0; s < n; ++s)
    for (int64_t p = 0; p < P; ++p) {
      const double y = Y[s * P + p];
      if (std::isnan(y)) continue;
      auto z = [&](int64_t c) { return Z[(s * C + c) * P + p]; };
      double m = z(0), se = 0;
      for (int64_t c = 1; c < C; ++c) m = std::max(m, z(c));
      for (int64_t c = 0; c < C; ++c) se += std::exp(z(c) - m);
      const double lse = m + std::log(se);
      loss += (lse - z(int64_t(y))) / double(labelled);
      for (int64_t c = 0; c < C; ++c)
        grad[(s * C + c) * P + p] = dL * (std::exp(z(c) - lse) - double(c == int64_t(y))) / double(labelled);
    }
}

// Cosine over n samples of [C, P]: 1 − p·t / (max(‖p‖, ε)·max(‖t‖, ε)) at pixels with ‖t‖ > 0.
void cosineRef(const std::vector<double> &Pr, const std::vector<double> &T, int64_t n, int64_t C, int64_t P,
               double dL, double &loss, std::vector<double> &grad) {
  const double eps = 1e-8;
  auto at = [&](int64_t s, int64_t c, int64_t p) { return (s * C + c) * P + p; };
  int64_t labelled = 0;
  std::vector<char> has(n * P);
  for (int64_t s = 0; s < n; ++s)
    for (int64_t p = 0; p < P; ++p) {
      double tt = 0;
      for (int64_t c = 0; c < C; ++c) tt += T[at(s, c, p)] * T[at(s, c, p)];
      has[s * P + p] = tt > 0;
      labelled += tt > 0;
    }
  loss = 0;
  grad.assign(n * C * P, 0.0);
  for (int64_t s = 0; s < n; ++s)
    for (int64_t p = 0; p < P; ++p) {
      if (!has[s * P + p]) continue;
      double dot = 0, pp = 0, tt = 0;
      for (int64_t c = 0; c < C; ++c) {
        dot += Pr[at(s, c, p)] * T[at(s, c, p)];
        pp += Pr[at(s, c, p)] * Pr[at(s, c, p)];
        tt += T[at(s, c, p)] * T[at(s, c, p)];
      }
      const double np = std::sqrt(pp), a = std::max(np, eps), b = std::max(std::sqrt(tt), eps);
      loss += (1 - dot / (a * b)) / double(labelled);
      for (int64_t c = 0; c < C; ++c) {
        const double dcos = T[at(s, c, p)] / (a * b) - dot * Pr[at(s, c, p)] / (np * np * np * b);
        grad[at(s, c, p)] = -dL * dcos / double(labelled);
      }
    }
}

}  // namespace

TEST_CASE("per-pixel cross entropy: softmax over channels, mean over labelled pixels",
          "[codegen][loss][dense]") {
  const int64_t n = 5, C = 4, H = 3, W = 5, P = H * W;
  for (int threads : {1, 3}) {
    INFO("threads " << threads);
    DenseRun r(OpKind::CrossEntropy, OpKind::CrossEntropyBwd, C, H, W, threads);
    r.h.fillClasses(r.label, (int)C);
    for (int64_t q : {1, 7, 8, 20, 44}) {  // unlabelled pixels, garbage logits there
      r.Y()[q] = kNaN;
      const int64_t s = q / P, p = q % P;
      r.P()[(s * C + 2) * P + p] = q == 7 ? kInf : kNaN;
    }
    r.h.run(n);
    double loss;
    std::vector<double> grad;
    denseCrossEntropyRef(values(r.h, r.pred), values(r.h, r.label), n, C, P, r.dL, loss, grad);
    requireClose(r.h.read(r.loss), {loss}, 1e-5, 1e-6, "loss");
    requireClose({r.h.losses()[0]}, {loss}, 1e-5, 1e-6, "loss written to losses[0]");
    auto g = r.h.read(r.grad);
    requireClose(g, grad, 1e-5, 1e-6, "cross_entropy_bwd");
    for (int64_t q : {1, 7, 8, 20, 44})
      for (int64_t c = 0; c < C; ++c) CHECK(g[(q / P * C + c) * P + q % P] == 0.0);
  }
}

TEST_CASE("per-pixel cross entropy equals the per-sample kernel over the pixels as samples",
          "[codegen][loss][dense]") {
  // [n, C, H, W] logits against the same values rearranged to [n·H·W, C]: same loss, same gradient.
  const int64_t n = 2, C = 3, H = 2, W = 3, P = H * W;
  DenseRun d(OpKind::CrossEntropy, OpKind::CrossEntropyBwd, C, H, W);
  d.h.fillClasses(d.label, (int)C);
  d.Y()[3] = kNaN;
  Harness s{12};
  Node *z = s.input({C}), *y = s.label({1});
  Node *loss = s.b.loss(OpKind::CrossEntropy, z, y);
  Node *grad = s.b.lossBwd(OpKind::CrossEntropyBwd, z, y, s.lossWeight(0));
  s.bind(loss, ir::Output::Kind::TaskLoss, 0);
  s.prepare();
  s.lossWeights()[0] = (float)d.dL;
  d.h.prepare();
  for (int64_t b = 0; b < n; ++b)
    for (int64_t p = 0; p < P; ++p) {
      s.data(y)[b * P + p] = d.Y()[b * P + p];
      for (int64_t c = 0; c < C; ++c) s.data(z)[(b * P + p) * C + c] = d.P()[(b * C + c) * P + p];
    }
  d.h.run(n);
  s.run(n * P);
  requireClose(d.h.read(d.loss), s.read(loss), 1e-6, 1e-7, "loss");
  auto gd = d.h.read(d.grad), gs = s.read(grad);
  std::vector<double> rearranged(gd.size());
  for (int64_t b = 0; b < n; ++b)
    for (int64_t p = 0; p < P; ++p)
      for (int64_t c = 0; c < C; ++c) rearranged[(b * P + p) * C + c] = gd[(b * C + c) * P + p];
  requireClose(rearranged, gs, 1e-6, 1e-7, "gradient");
}

TEST_CASE("cosine loss: 1 − cos over channels, mean over pixels with a non-zero label",
          "[codegen][loss][dense]") {
  const int64_t n = 4, C = 3, H = 4, W = 3, P = H * W;
  DenseRun r(OpKind::Cosine, OpKind::CosineBwd, C, H, W);
  r.h.fillUniform(r.label, -1, 1);
  auto setLabel = [&](int64_t s, int64_t p, float v) {
    for (int64_t c = 0; c < C; ++c) r.Y()[(s * C + c) * P + p] = v;
  };
  setLabel(0, 2, 0.f);   // an all-zero label vector: unlabelled
  setLabel(3, 11, 0.f);
  r.Y()[(1 * C + 1) * P + 5] = kNaN;  // a NaN in the vector: unlabelled
  for (int64_t c = 0; c < C; ++c) r.P()[(0 * C + c) * P + 2] = kNaN;  // garbage where unlabelled
  r.h.run(n);
  double loss;
  std::vector<double> grad;
  cosineRef(values(r.h, r.pred), values(r.h, r.label), n, C, P, r.dL, loss, grad);
  requireClose(r.h.read(r.loss), {loss}, 1e-5, 1e-6, "loss");
  auto g = r.h.read(r.grad);
  requireClose(g, grad, 1e-5, 1e-6, "cosine_bwd");
  for (int64_t c = 0; c < C; ++c) {
    CHECK(g[(0 * C + c) * P + 2] == 0.0);
    CHECK(g[(1 * C + c) * P + 5] == 0.0);
  }
}

TEST_CASE("cosine loss on a vector head is one pixel per sample", "[codegen][loss][dense]") {
  Harness h{6};
  Node *pred = h.input({5}), *label = h.label({5});
  Node *loss = h.b.loss(OpKind::Cosine, pred, label);
  Node *grad = h.b.lossBwd(OpKind::CosineBwd, pred, label, h.lossWeight(0));
  h.bind(loss, ir::Output::Kind::TaskLoss, 0);
  h.fillUniform(pred, -2, 2);
  h.fillUniform(label, -1, 1);
  h.lossWeights()[0] = 1.5f;
  h.prepare();
  for (int64_t c = 0; c < 5; ++c) h.data(label)[2 * 5 + c] = 0.f;
  h.run(6);
  double want;
  std::vector<double> wantGrad;
  cosineRef(values(h, pred), values(h, label), 6, 5, 1, 1.5, want, wantGrad);
  requireClose(h.read(loss), {want}, 1e-5, 1e-6, "loss");
  requireClose(h.read(grad), wantGrad, 1e-5, 1e-6, "gradient");
}

TEST_CASE("a batch without a labelled pixel gives loss 0 and a zero gradient", "[codegen][loss][dense]") {
  for (bool cosine : {false, true}) {
    INFO((cosine ? "cosine" : "cross_entropy"));
    DenseRun r(cosine ? OpKind::Cosine : OpKind::CrossEntropy, cosine ? OpKind::CosineBwd : OpKind::CrossEntropyBwd,
               3, 2, 2);
    const int64_t labels = r.h.module.maxBatch * (cosine ? 12 : 4);
    for (int64_t i = 0; i < labels; ++i) r.Y()[i] = cosine ? 0.f : kNaN;
    r.P()[0] = kInf;
    r.h.run(3);
    requireClose(r.h.read(r.loss), {0.0}, 0, 0, "loss");
    requireClose(r.h.read(r.grad), std::vector<double>(3 * 12, 0.0), 0, 0, "gradient");
  }
}
