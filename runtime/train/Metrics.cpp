#include "runtime/train/Metrics.h"

#include "spec/Error.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace mtlc::rt {

static const double kNaN = std::numeric_limits<double>::quiet_NaN();

const char* metricName(Metric m) { return vocab::name(m); }

bool lowerIsBetter(const std::string& metric) {
  Metric m;
  return metric == "loss" || (vocab::parse(metric.c_str(), m) && vocab::lowerIsBetter(m));
}

double relativeImprovement(const std::string& metric, double multi, double single) {
  if (std::isnan(multi) || std::isnan(single) || single == 0) return kNaN;
  const double change = (multi - single) / single;
  return lowerIsBetter(metric) ? -change : change;
}

double rocAuc(const std::vector<float>& scores, const std::vector<uint8_t>& positive) {
  const size_t n = scores.size();
  std::vector<size_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return scores[a] < scores[b]; });
  // Ranks 1..n in ascending score order; a run of equal scores shares the average of its ranks.
  double positiveRankSum = 0;
  int64_t pos = 0;
  for (size_t i = 0; i < n;) {
    size_t j = i;
    while (j + 1 < n && scores[idx[j + 1]] == scores[idx[i]]) ++j;
    const double avgRank = (double(i + 1) + double(j + 1)) / 2;
    for (size_t k = i; k <= j; ++k)
      if (positive[idx[k]]) positiveRankSum += avgRank, ++pos;
    i = j + 1;
  }
  const int64_t neg = int64_t(n) - pos;
  if (pos == 0 || neg == 0) return kNaN;
  // U = (sum of positive ranks) − P(P+1)/2 counts the (positive, negative) pairs ordered correctly,
  // ties counting one half.
  return (positiveRankSum - double(pos) * double(pos + 1) / 2) / (double(pos) * double(neg));
}

MetricAccumulator::MetricAccumulator(const TaskSpec& task) : task_(task) {}

void MetricAccumulator::reset() { *this = MetricAccumulator(task_); }

MetricAccumulator::State MetricAccumulator::state() const {
  State s;
  s.scalars = {lossSum_, double(lossCount_), double(samples_), double(outSamples_), double(correct_),
               double(judged_), sqErr_, absErr_, double(errCount_)};
  s.scores = scores_;
  s.positive.assign(positive_.begin(), positive_.end());
  return s;
}

void MetricAccumulator::restore(const State& s) {
  if (s.scalars.size() != 9 || s.scores.size() != s.positive.size())
    throwError("metric state of task `{}` has {} values and {}/{} scores/labels, expected 9 values and as many "
               "scores as labels", task_.name, s.scalars.size(), s.scores.size(), s.positive.size());
  reset();
  lossSum_ = s.scalars[0];
  lossCount_ = int64_t(s.scalars[1]);
  samples_ = int64_t(s.scalars[2]);
  outSamples_ = int64_t(s.scalars[3]);
  correct_ = int64_t(s.scalars[4]);
  judged_ = int64_t(s.scalars[5]);
  sqErr_ = s.scalars[6];
  absErr_ = s.scalars[7];
  errCount_ = int64_t(s.scalars[8]);
  scores_ = s.scores;
  positive_.assign(s.positive.begin(), s.positive.end());
}

int64_t countPresent(const float* labels, int64_t count) {
  int64_t c = 0;
  for (int64_t i = 0; i < count; ++i) c += !std::isnan(labels[i]);
  return c;
}

void MetricAccumulator::add(const float* out, const float* labels, int64_t n, double batchLoss) {
  const int64_t W = task_.outWidth, L = task_.labelWidth;
  const int64_t present = countPresent(labels, n * L);
  if (present > 0) lossSum_ += batchLoss * double(present);  // a batch without labels adds nothing
  lossCount_ += present;
  samples_ += n;
  if (!out) return;
  outSamples_ += n;
  auto err = [&](double pred, double y) {
    sqErr_ += (pred - y) * (pred - y);
    absErr_ += std::fabs(pred - y);
    ++errCount_;
  };
  for (int64_t i = 0; i < n; ++i) {
    const float* o = out + i * W;
    const float* y = labels + i * L;
    switch (task_.loss) {
      case LossKind::CrossEntropy: {
        if (std::isnan(y[0])) break;  // absent
        int64_t best = 0;
        for (int64_t k = 1; k < W; ++k)
          if (o[k] > o[best]) best = k;
        correct_ += (double(best) == double(y[0]));
        ++judged_;
        // Softmax against the one-hot label, for mse/mae if asked.
        double mx = o[best], z = 0;
        for (int64_t k = 0; k < W; ++k) z += std::exp(double(o[k]) - mx);
        for (int64_t k = 0; k < W; ++k) err(std::exp(double(o[k]) - mx) / z, double(k) == double(y[0]) ? 1 : 0);
        break;
      }
      case LossKind::BCE:
        for (int64_t k = 0; k < std::min(W, L); ++k) {
          if (std::isnan(y[k])) continue;  // absent
          const bool pos = y[k] > 0.5f;
          correct_ += ((o[k] > 0) == pos);
          ++judged_;
          scores_.push_back(o[k]);
          positive_.push_back(pos);
          err(1.0 / (1.0 + std::exp(-double(o[k]))), y[k]);
        }
        break;
      case LossKind::MSE:
      case LossKind::L1:
        for (int64_t k = 0; k < std::min(W, L); ++k)
          if (!std::isnan(y[k])) err(o[k], y[k]);
        break;
    }
  }
}

std::map<std::string, double> MetricAccumulator::result() const {
  std::map<std::string, double> r;
  r["loss"] = lossCount_ ? lossSum_ / double(lossCount_) : kNaN;
  for (Metric m : task_.metrics) {
    double v = kNaN;
    switch (m) {
      case Metric::Accuracy:
        if (judged_) v = double(correct_) / double(judged_);
        break;
      case Metric::AUC:
        if (task_.loss == LossKind::BCE && !scores_.empty()) v = rocAuc(scores_, positive_);
        break;
      case Metric::MSE:
        if (errCount_) v = sqErr_ / double(errCount_);
        break;
      case Metric::MAE:
        if (errCount_) v = absErr_ / double(errCount_);
        break;
    }
    r[metricName(m)] = v;
  }
  return r;
}

}  // namespace mtlc::rt
