// Per-task metrics over an epoch, from raw head outputs [n, outWidth] and labels [n, labelWidth]:
//
// Partial labels: a NaN label value is absent. Every metric runs over the present ones only
// (cross_entropy: the samples whose label is present; bce, mse, mae: the present label elements),
// and a task with no present label at all reports NaN (null in logs) for each, loss included.
//
//   loss      the kernels' batch-mean loss (a mean over the batch's present labels), averaged over
//             batches weighted by each batch's present-label count (Σ batchLoss·c / Σ c), which is
//             the mean over every present label of the epoch
//   accuracy  cross_entropy: argmax of the row == label (first maximum on ties);
//             bce: (logit > 0) == (label > 0.5), over every element
//   auc       bce: ROC AUC of the logits against label > 0.5, by ranks with ties given their
//             average rank (the Mann–Whitney U statistic / (positives · negatives)); NaN when one
//             class is absent
//   mse, mae  mean over all elements of (prediction − label)² / |prediction − label|, where the
//             prediction is the raw output for mse/l1 tasks and sigmoid(logit) for bce;
//             cross_entropy: mse/mae of the softmax against the one-hot label
// A metric that does not apply gives NaN.
#pragma once

#include "spec/ModelSpec.h"

#include <map>
#include <string>
#include <vector>

namespace mtlc::rt {

const char* metricName(Metric m);  // "accuracy", "auc", "mse", "mae"

// Whether a smaller value of this metric ("loss", "mse", "mae") is the better one.
bool lowerIsBetter(const std::string& metric);

// One term of Δm (Maninis et al. 2019; LibMTL's count_improvement): the relative change of the
// multi-task value against the single-task baseline, signed so that positive is an improvement,
//   (−1)^l · (multi − single) / single,   l = 1 when lowerIsBetter(metric).
// NaN when the baseline is 0 or either value is NaN (the change is undefined).
double relativeImprovement(const std::string& metric, double multi, double single);

// The label values present (not NaN) among `count` floats.
int64_t countPresent(const float* labels, int64_t count);

// Area under the ROC curve of `scores` for binary `positive` labels, ties averaged.
double rocAuc(const std::vector<float>& scores, const std::vector<uint8_t>& positive);

class MetricAccumulator {
 public:
  explicit MetricAccumulator(const TaskSpec& task);

  // One batch. `outputs` may be null (the kernel wrote none): then only the loss is accumulated.
  void add(const float* outputs, const float* labels, int64_t n, double batchLoss);
  void reset();

  // "loss" plus one entry per metric of the task, under metricName().
  std::map<std::string, double> result() const;
  int64_t samples() const { return samples_; }          // samples seen (present labels or not)
  int64_t presentLabels() const { return lossCount_; }  // label values present among them

  // Everything add() has gathered, so a resumed run (Checkpoint.h) continues an epoch's running
  // values exactly: the counters and sums (doubles hold every int64 count a run reaches exactly),
  // and the scores/labels kept for the AUC.
  struct State {
    std::vector<double> scalars;
    std::vector<float> scores, positive;
  };
  State state() const;
  void restore(const State& s);  // Error when `s` does not come from state() of this kind of task

 private:
  TaskSpec task_;
  double lossSum_ = 0;
  int64_t lossCount_ = 0, samples_ = 0;
  int64_t outSamples_ = 0;          // samples whose outputs were seen
  int64_t correct_ = 0, judged_ = 0;  // accuracy
  double sqErr_ = 0, absErr_ = 0;
  int64_t errCount_ = 0;
  std::vector<float> scores_;       // auc
  std::vector<uint8_t> positive_;
};

}  // namespace mtlc::rt
