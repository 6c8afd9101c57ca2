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
//
// Per-pixel tasks (a [C, H, W] head: TaskSpec::pixels P = H·W > 1) judge each pixel as a sample is
// judged above: cross_entropy's label holds a class index per pixel (NaN = unlabelled), its
// accuracy and pixel_accuracy count pixels, and its mse/mae compare each pixel's softmax over the
// C channels with the one-hot label.
//
//   pixel_accuracy  cross_entropy: the share of labelled pixels (samples, for a [C] head) whose
//             argmax over the channels is the label (first maximum on ties); = accuracy
//   miou      cross_entropy: from the whole set's confusion counts, per class c
//             IoU_c = TP_c / (TP_c + FP_c + FN_c) (= |predicted c ∩ labelled c| / |predicted c ∪
//             labelled c| over labelled pixels), averaged over the classes that were predicted or
//             labelled at least once: a class absent from both is left out (its IoU is 0/0)
//   abs_err   mse/l1: mean |p − t| over the present label elements (= mae)
//   rel_err   mse/l1: mean |p − t| / |t| over the present label elements with t ≠ 0 (a zero target
//             has no relative error)
//   angle_err cosine: mean over the labelled pixels (label vector non-zero and without NaN) of the
//             angle in degrees between the prediction and the label vector, acos of the cosine
//             clamped to [−1, 1], the prediction normalised with max(‖p‖, 1e-12) (F.normalize's)
//
// cosine's loss is weighted by its labelled pixels (its kernel's mean runs over them), the other
// losses by their present label values (labelledCount).
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

// What task `task`'s loss kernel averages over in `n` samples of labels: its labelled pixels for
// cosine (label vector non-zero, no NaN in it), else its present label values.
int64_t labelledCount(const TaskSpec& task, const float* labels, int64_t n);

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
  // Error when `s` does not come from state() of this kind of task. A state of kLegacyScalars
  // (before the per-pixel metrics) restores with their sums at 0.
  void restore(const State& s);
  // The scalars state() holds for `task`: kBaseScalars, and 3 per class for cross_entropy (miou).
  static size_t stateScalars(const TaskSpec& task);
  static constexpr size_t kLegacyScalars = 9, kBaseScalars = 13;
  // Which of the scalars are counts (integers >= 0), for a checkpoint's check.
  static bool isCounter(size_t index);

 private:
  TaskSpec task_;
  double lossSum_ = 0;
  int64_t lossCount_ = 0, samples_ = 0;
  int64_t outSamples_ = 0;          // samples whose outputs were seen
  int64_t correct_ = 0, judged_ = 0;  // accuracy
  double sqErr_ = 0, absErr_ = 0;
  int64_t errCount_ = 0;
  double relErr_ = 0, angleSum_ = 0;   // rel_err, angle_err
  int64_t relCount_ = 0, angleCount_ = 0;
  // miou (cross_entropy): per class, labelled pixels predicted as it, predicted as it, labelled it
  std::vector<int64_t> hits_, predicted_, labelled_;
  void addClasses(const float* out, const float* labels, int64_t n);
  void addDirections(const float* out, const float* labels, int64_t n);
  double meanIoU() const;
  std::vector<float> scores_;       // auc
  std::vector<uint8_t> positive_;
};

}  // namespace mtlc::rt
