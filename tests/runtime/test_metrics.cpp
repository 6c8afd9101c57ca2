// Metrics: accuracy, ROC AUC with ties, mse/mae, loss averaging over batches.
#include "TestUtil.h"

#include "runtime/train/Metrics.h"

#include <cmath>

using namespace mtlc::rt;

TEST_CASE("auc by ranks, ties counted one half", "[metrics]") {
  // Positives 0.35, 0.8, 0.4, 0.1 against negatives 0.1, 0.4. Correctly ordered pairs:
  //   0.35: 1 (vs 0.1)   0.8: 2   0.4: 1 + ½ (tie with 0.4)   0.1: ½ (tie with 0.1)
  // AUC = 5 / (4 · 2) = 0.625.
  std::vector<float> scores{0.1f, 0.4f, 0.35f, 0.8f, 0.4f, 0.1f};
  std::vector<uint8_t> pos{0, 0, 1, 1, 1, 1};
  CHECK(rocAuc(scores, pos) == Approx(0.625));
  CHECK(rocAuc({1, 2, 3}, {0, 1, 1}) == 1.0);
  CHECK(rocAuc({1, 2, 3}, {1, 0, 0}) == 0.0);
  CHECK(rocAuc({5, 5, 5, 5}, {1, 0, 1, 0}) == 0.5);
  CHECK(std::isnan(rocAuc({1, 2}, {1, 1})));
}

TEST_CASE("bce task: accuracy at logit 0, auc, brier mse, loss averaged per sample", "[metrics]") {
  TaskSpec t;
  t.name = "flag";
  t.loss = LossKind::BCE;
  t.metrics = {Metric::Accuracy, Metric::AUC, Metric::MSE};
  MetricAccumulator acc(t);
  // Two batches, the same scores as above split 4 + 2.
  std::vector<float> out1{0.1f, 0.4f, 0.35f, 0.8f}, lab1{0, 0, 1, 1};
  std::vector<float> out2{0.4f, -0.1f}, lab2{1, 1};
  acc.add(out1.data(), lab1.data(), 4, 0.5);
  acc.add(out2.data(), lab2.data(), 2, 2.0);
  auto r = acc.result();
  CHECK(r.at("loss") == Approx((0.5 * 4 + 2.0 * 2) / 6));
  // A logit > 0 predicts 1: rows 2, 3, 4 are right; rows 0, 1 (label 0) and 5 (logit -0.1) wrong.
  CHECK(r.at("accuracy") == Approx(3.0 / 6));
  // Positives 0.35, 0.8, 0.4, -0.1 against negatives 0.1, 0.4: 1 + 2 + 1.5 + 0 = 4.5 of 8 pairs.
  CHECK(r.at("auc") == Approx(4.5 / 8));
  double mse = 0;
  std::vector<float> all{0.1f, 0.4f, 0.35f, 0.8f, 0.4f, -0.1f}, y{0, 0, 1, 1, 1, 1};
  for (int i = 0; i < 6; ++i) {
    double p = 1 / (1 + std::exp(-double(all[i])));
    mse += (p - y[i]) * (p - y[i]);
  }
  CHECK(r.at("mse") == Approx(mse / 6));
}

TEST_CASE("cross_entropy accuracy by argmax; regression mse/mae; reset", "[metrics]") {
  TaskSpec ce;
  ce.loss = LossKind::CrossEntropy;
  ce.outWidth = 3;
  ce.metrics = {Metric::Accuracy};
  MetricAccumulator a(ce);
  std::vector<float> out{0.1f, 2.0f, -1.0f, 3.0f, 0.0f, 0.5f, 0.0f, 0.0f, 1.0f};
  std::vector<float> lab{1, 2, 2};
  a.add(out.data(), lab.data(), 3, 1.25);
  CHECK(a.result().at("accuracy") == Approx(2.0 / 3));
  CHECK(a.result().at("loss") == Approx(1.25));
  a.reset();
  CHECK(std::isnan(a.result().at("loss")));

  TaskSpec reg;
  reg.loss = LossKind::MSE;
  reg.outWidth = reg.labelWidth = 2;
  reg.metrics = {Metric::MSE, Metric::MAE, Metric::Accuracy};
  MetricAccumulator m(reg);
  std::vector<float> ro{1, 2, 3, 4}, rl{1.5f, 2, 1, 4};
  m.add(ro.data(), rl.data(), 2, 0);
  auto r = m.result();
  CHECK(r.at("mse") == Approx((0.25 + 0 + 4 + 0) / 4));
  CHECK(r.at("mae") == Approx((0.5 + 0 + 2 + 0) / 4));
  CHECK(std::isnan(r.at("accuracy")));  // does not apply to regression

  // Without outputs only the loss is accumulated.
  MetricAccumulator lossOnly(ce);
  lossOnly.add(nullptr, lab.data(), 3, 0.75);
  CHECK(lossOnly.result().at("loss") == Approx(0.75));
  CHECK(std::isnan(lossOnly.result().at("accuracy")));
}

TEST_CASE("Δm terms: signed relative change against the single-task baseline", "[metrics][single-task]") {
  // accuracy 0.9 against 0.8: +12.5%; mse 0.09 against 0.1: 10% lower = +10%; loss up 20% = −20%.
  CHECK(relativeImprovement("accuracy", 0.9, 0.8) == Approx(0.125));
  CHECK(relativeImprovement("auc", 0.7, 0.8) == Approx(-0.125));
  CHECK(relativeImprovement("mse", 0.09, 0.1) == Approx(0.1));
  CHECK(relativeImprovement("mae", 0.2, 0.25) == Approx(0.2));
  CHECK(relativeImprovement("loss", 1.2, 1.0) == Approx(-0.2));
  CHECK(lowerIsBetter("mse"));
  CHECK_FALSE(lowerIsBetter("accuracy"));
  CHECK(std::isnan(relativeImprovement("accuracy", 0.5, 0.0)));
  CHECK(std::isnan(relativeImprovement("auc", std::nan(""), 0.8)));
}

TEST_CASE("per-pixel cross_entropy: pixel_accuracy and miou from the confusion counts", "[metrics][dense]") {
  // C = 4 classes on a [4, 1, 4] head (P = 4 pixels), 2 samples, in two batches of one. Class 3
  // is never predicted nor labelled (its logits are −10): miou leaves it out.
  TaskSpec t;
  t.name = "seg";
  t.loss = LossKind::CrossEntropy;
  t.pixels = 4;
  t.outWidth = 16;
  t.labelWidth = 4;
  t.metrics = {Metric::PixelAccuracy, Metric::MIoU, Metric::Accuracy};
  const float X = -10;
  // channel-major per sample: o[c·4 + p]
  std::vector<float> out0{2, 0, 0, 1, /*c1*/ 0, 3, 0, 0, /*c2*/ 0, 0, 1, 2, /*c3*/ X, X, X, X};
  std::vector<float> out1{0, 0, 5, 0, /*c1*/ 1, 0, 0, 0, /*c2*/ 0, 2, 0, 0, /*c3*/ X, X, X, X};
  const float U = std::nanf("");
  std::vector<float> lab0{0, 1, 1, U}, lab1{1, 2, 1, 0};
  // argmax: sample 0 → 0, 1, 2, 2; sample 1 → 1, 2, 0, 0 (a tie at pixel 3: the first maximum).
  MetricAccumulator acc(t);
  acc.add(out0.data(), lab0.data(), 1, 0.5);
  acc.add(out1.data(), lab1.data(), 1, 1.0);
  auto r = acc.result();
  // 7 labelled pixels, 5 right (pixels 0, 1 of sample 0; 0, 1, 3 of sample 1).
  CHECK(r.at("pixel_accuracy") == Approx(5.0 / 7));
  CHECK(r.at("accuracy") == Approx(5.0 / 7));
  // class 0: TP 2, FP 1 (sample 1 pixel 2), FN 0 → 2/3; class 1: TP 2, FP 0, FN 2 → 1/2;
  // class 2: TP 1, FP 1 (sample 0 pixel 2), FN 0 → 1/2; class 3 left out.
  CHECK(r.at("miou") == Approx((2.0 / 3 + 0.5 + 0.5) / 3));
  // The loss is weighted by the labelled pixels of each batch: 3 and 4.
  CHECK(r.at("loss") == Approx((0.5 * 3 + 1.0 * 4) / 7));
  CHECK(acc.presentLabels() == 7);

  // The state carries the confusion counts: a restored accumulator continues exactly.
  MetricAccumulator half(t), resumed(t);
  half.add(out0.data(), lab0.data(), 1, 0.5);
  auto s = half.state();
  CHECK(s.scalars.size() == MetricAccumulator::stateScalars(t));
  CHECK(s.scalars.size() == MetricAccumulator::kBaseScalars + 3 * 4);
  resumed.restore(s);
  resumed.add(out1.data(), lab1.data(), 1, 1.0);
  CHECK(resumed.result() == r);
  // A state from before the per-pixel metrics (9 scalars) still restores.
  s.scalars.resize(MetricAccumulator::kLegacyScalars);
  MetricAccumulator legacy(t);
  CHECK_NOTHROW(legacy.restore(s));
  s.scalars.resize(11);
  CHECK_THROWS(legacy.restore(s));
}

TEST_CASE("abs_err and rel_err over present labels; rel_err skips zero targets", "[metrics][dense]") {
  TaskSpec t;
  t.loss = LossKind::L1;
  t.outWidth = t.labelWidth = 4;
  t.metrics = {Metric::AbsErr, Metric::RelErr, Metric::MAE};
  MetricAccumulator acc(t);
  std::vector<float> out{1, 2, 3, 4}, lab{2, 0, std::nanf(""), 5};
  acc.add(out.data(), lab.data(), 1, 0);
  auto r = acc.result();
  CHECK(r.at("abs_err") == Approx((1.0 + 2.0 + 1.0) / 3));
  CHECK(r.at("mae") == r.at("abs_err"));
  CHECK(r.at("rel_err") == Approx((1.0 / 2 + 1.0 / 5) / 2));
}

TEST_CASE("angle_err: degrees between prediction and label over non-zero label vectors", "[metrics][dense]") {
  // C = 2 channels, P = 2 pixels, 2 samples; element (s, c, p) at (s·2 + c)·2 + p.
  TaskSpec t;
  t.loss = LossKind::Cosine;
  t.pixels = 2;
  t.outWidth = t.labelWidth = 4;
  t.metrics = {Metric::AngleErr};
  std::vector<float> out{1, 0, 0, 1, /*sample 1*/ 2, 0, 0, 3};
  std::vector<float> lab{1, 0, 1, 0, /*sample 1*/ -1, 0, 0, 2};
  // sample 0: pixel 0 (1,0) vs (1,1): 45°; pixel 1 label (0,0): unlabelled.
  // sample 1: pixel 0 (2,0) vs (−1,0): 180°; pixel 1 (0,3) vs (0,2): 0°.
  MetricAccumulator acc(t);
  acc.add(out.data(), lab.data(), 2, 0.25);
  auto r = acc.result();
  CHECK(r.at("angle_err") == Approx((45.0 + 180.0 + 0.0) / 3));
  CHECK(labelledCount(t, lab.data(), 2) == 3);
  CHECK(acc.presentLabels() == 3);
  CHECK(r.at("loss") == Approx(0.25));
  std::vector<float> withNaN = lab;
  withNaN[(1 * 2 + 1) * 2 + 1] = std::nanf("");  // a NaN in sample 1 pixel 1's vector: unlabelled
  CHECK(labelledCount(t, withNaN.data(), 2) == 2);
}

TEST_CASE("the per-pixel metrics' directions come from the vocabulary", "[metrics][single-task][dense]") {
  CHECK_FALSE(lowerIsBetter("pixel_accuracy"));
  CHECK_FALSE(lowerIsBetter("miou"));
  CHECK(lowerIsBetter("abs_err"));
  CHECK(lowerIsBetter("rel_err"));
  CHECK(lowerIsBetter("angle_err"));
  CHECK(relativeImprovement("miou", 0.55, 0.5) == Approx(0.1));
  CHECK(relativeImprovement("angle_err", 27, 30) == Approx(0.1));
}
