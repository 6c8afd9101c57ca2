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

MetricAccumulator::MetricAccumulator(const TaskSpec& task) : task_(task) {
  if (task.loss == LossKind::CrossEntropy) {
    const size_t C = size_t(task.outWidth / task.pixels);
    hits_.assign(C, 0);
    predicted_.assign(C, 0);
    labelled_.assign(C, 0);
  }
}

size_t MetricAccumulator::stateScalars(const TaskSpec& task) {
  return kBaseScalars + (task.loss == LossKind::CrossEntropy ? 3 * size_t(task.outWidth / task.pixels) : 0);
}

bool MetricAccumulator::isCounter(size_t i) {
  return i == 1 || i == 2 || i == 3 || i == 4 || i == 5 || i == 8 || i == 10 || i == 12 || i >= kBaseScalars;
}

void MetricAccumulator::reset() { *this = MetricAccumulator(task_); }

MetricAccumulator::State MetricAccumulator::state() const {
  State s;
  s.scalars = {lossSum_, double(lossCount_), double(samples_), double(outSamples_), double(correct_),
               double(judged_), sqErr_, absErr_, double(errCount_), relErr_, double(relCount_), angleSum_,
               double(angleCount_)};
  for (const auto* v : {&hits_, &predicted_, &labelled_})
    for (int64_t c : *v) s.scalars.push_back(double(c));
  s.scores = scores_;
  s.positive.assign(positive_.begin(), positive_.end());
  return s;
}

void MetricAccumulator::restore(const State& s) {
  const size_t full = stateScalars(task_);
  if ((s.scalars.size() != full && s.scalars.size() != kLegacyScalars) || s.scores.size() != s.positive.size())
    throwError("metric state of task `{}` has {} values and {}/{} scores/labels, expected {} values and as many "
               "scores as labels", task_.name, s.scalars.size(), s.scores.size(), s.positive.size(), full);
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
  if (s.scalars.size() == full) {
    relErr_ = s.scalars[9];
    relCount_ = int64_t(s.scalars[10]);
    angleSum_ = s.scalars[11];
    angleCount_ = int64_t(s.scalars[12]);
    size_t i = kBaseScalars;
    for (auto* v : {&hits_, &predicted_, &labelled_})
      for (int64_t& c : *v) c = int64_t(s.scalars[i++]);
  }
  scores_ = s.scores;
  positive_.assign(s.positive.begin(), s.positive.end());
}

int64_t countPresent(const float* labels, int64_t count) {
  int64_t c = 0;
  for (int64_t i = 0; i < count; ++i) c += !std::isnan(labels[i]);
  return c;
}

int64_t labelledCount(const TaskSpec& task, const float* labels, int64_t n) {
  if (task.loss != LossKind::Cosine) return countPresent(labels, n * task.labelWidth);
  const int64_t P = task.pixels, C = task.labelWidth / P;
  int64_t count = 0;
  for (int64_t s = 0; s < n; ++s)
    for (int64_t p = 0; p < P; ++p) {
      double tt = 0;
      for (int64_t c = 0; c < C; ++c) tt += double(labels[(s * C + c) * P + p]) * labels[(s * C + c) * P + p];
      count += tt > 0;  // NaN: not labelled
    }
  return count;
}

// cross_entropy: per labelled pixel (a sample for a [C] head) the argmax, accuracy, the confusion
// counts for miou, and the softmax against the one-hot label for mse/mae.
void MetricAccumulator::addClasses(const float* out, const float* labels, int64_t n) {
  const int64_t P = task_.pixels, C = task_.outWidth / P;
  for (int64_t s = 0; s < n; ++s)
    for (int64_t p = 0; p < P; ++p) {
      const float y = labels[s * P + p];
      if (std::isnan(y)) continue;  // absent
      const float* o = out + s * C * P + p;  // channel c at o[c·P]
      int64_t best = 0;
      for (int64_t c = 1; c < C; ++c)
        if (o[c * P] > o[best * P]) best = c;
      const int64_t label = int64_t(y);
      correct_ += (best == label);
      ++judged_;
      if (label >= 0 && label < C) {
        ++labelled_[size_t(label)];
        hits_[size_t(label)] += (best == label);
      }
      ++predicted_[size_t(best)];
      double mx = o[best * P], z = 0;
      for (int64_t c = 0; c < C; ++c) z += std::exp(double(o[c * P]) - mx);
      for (int64_t c = 0; c < C; ++c) {
        const double d = std::exp(double(o[c * P]) - mx) / z - (c == label ? 1 : 0);
        sqErr_ += d * d;
        absErr_ += std::fabs(d);
        ++errCount_;
      }
    }
}

// cosine: the angle between prediction and label at each labelled pixel, for angle_err.
void MetricAccumulator::addDirections(const float* out, const float* labels, int64_t n) {
  const int64_t P = task_.pixels, C = task_.outWidth / P;
  for (int64_t s = 0; s < n; ++s)
    for (int64_t p = 0; p < P; ++p) {
      double dot = 0, pp = 0, tt = 0;
      for (int64_t c = 0; c < C; ++c) {
        const double o = out[(s * C + c) * P + p], t = labels[(s * C + c) * P + p];
        dot += o * t, pp += o * o, tt += t * t;
      }
      if (!(tt > 0)) continue;  // unlabelled
      const double cos = std::clamp(dot / (std::max(std::sqrt(pp), 1e-12) * std::sqrt(tt)), -1.0, 1.0);
      angleSum_ += std::acos(cos) * (180.0 / 3.14159265358979323846);
      ++angleCount_;
    }
}

void MetricAccumulator::add(const float* out, const float* labels, int64_t n, double batchLoss) {
  const int64_t W = task_.outWidth, L = task_.labelWidth;
  const int64_t present = labelledCount(task_, labels, n);
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
  switch (task_.loss) {
    case LossKind::CrossEntropy: return addClasses(out, labels, n);
    case LossKind::Cosine: return addDirections(out, labels, n);
    case LossKind::BCE:
    case LossKind::MSE:
    case LossKind::L1: break;
  }
  for (int64_t i = 0; i < n; ++i) {
    const float* o = out + i * W;
    const float* y = labels + i * L;
    for (int64_t k = 0; k < std::min(W, L); ++k) {
      if (std::isnan(y[k])) continue;  // absent
      if (task_.loss != LossKind::BCE) {
        err(o[k], y[k]);
        if (y[k] != 0) relErr_ += std::fabs(double(o[k]) - double(y[k])) / std::fabs(double(y[k])), ++relCount_;
        continue;
      }
      const bool pos = y[k] > 0.5f;
      correct_ += ((o[k] > 0) == pos);
      ++judged_;
      scores_.push_back(o[k]);
      positive_.push_back(pos);
      err(1.0 / (1.0 + std::exp(-double(o[k]))), y[k]);
    }
  }
}

double MetricAccumulator::meanIoU() const {
  double sum = 0;
  int64_t classes = 0;
  for (size_t c = 0; c < hits_.size(); ++c) {
    const int64_t unite = predicted_[c] + labelled_[c] - hits_[c];  // TP + FP + FN
    if (unite == 0) continue;  // neither predicted nor labelled: left out
    sum += double(hits_[c]) / double(unite);
    ++classes;
  }
  return classes ? sum / double(classes) : kNaN;
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
      case Metric::AbsErr:
        if (errCount_) v = absErr_ / double(errCount_);
        break;
      case Metric::PixelAccuracy:
        if (judged_) v = double(correct_) / double(judged_);
        break;
      case Metric::MIoU:
        if (task_.loss == LossKind::CrossEntropy) v = meanIoU();
        break;
      case Metric::RelErr:
        if (relCount_) v = relErr_ / double(relCount_);
        break;
      case Metric::AngleErr:
        if (angleCount_) v = angleSum_ / double(angleCount_);
        break;
    }
    r[metricName(m)] = v;
  }
  return r;
}

}  // namespace mtlc::rt
