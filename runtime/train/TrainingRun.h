// One run of `mtlc train` as an object: rt::train (Trainer.h, which documents what a run does)
// builds one and calls run(). Its phases are methods of their own, in the order they happen:
//   start     the options, the resume point (its seed decides everything else), the data, the
//             threads, the state (weighting, arenas, optimizer), the first parameters (seed,
//             --init transfer or --resume), the log and what the run prints before training;
//   loop      epochs of steps: the weighting's step, clipping, the optimizer, the log line, the
//             checkpoint policy (every N steps, a stop signal) and the step limit;
//   epoch end the weighting's epoch, the epoch line, the test evaluation;
//   finish    the summary, the final checkpoint and what stopped the run.
// Distributed glue (a data-parallel job's ranks) is confined to startLoop, the step's rows and
// the epoch's synchronisation check.
#pragma once

#include "runtime/Arena.h"
#include "runtime/data/Batcher.h"
#include "runtime/io/Checkpoint.h"
#include "runtime/io/Progress.h"
#include "runtime/parallel/Distributed.h"
#include "runtime/parallel/FloatMode.h"
#include "runtime/parallel/ThreadPool.h"
#include "runtime/train/BatchKernels.h"
#include "runtime/train/Metrics.h"
#include "runtime/train/Optimizer.h"
#include "runtime/train/Trainer.h"
#include "runtime/train/Weighting.h"

#include <fstream>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

namespace mtlc::rt {

class StopSignals;
struct StepLogLine;  // TrainingRun.cpp

class TrainingRun {
 public:
  TrainingRun(const ModelSpec& spec, const TrainOptions& options, std::ostream& out);
  ~TrainingRun();
  TrainingRun(const TrainingRun&) = delete;
  TrainingRun& operator=(const TrainingRun&) = delete;

  TrainReport run();

 private:
  // ---- start
  void checkOptions() const;
  void readResumePoint();
  void loadData();
  void createState();
  void initialiseParams();
  void resumeState();
  void transferFrom(const std::string& path);
  void openLog();
  void printStart();
  void printFrozen(std::vector<std::string>& parts);
  void printLabelCounts();
  void startLoop();
  // ---- loop
  void runEpoch(int64_t e);
  int64_t beginEpoch(int64_t e);
  bool runStep(int64_t b, int64_t e, int64_t batches);  // false: the run stops after this step
  StepResult runBatch(int64_t b, int64_t e, int64_t micro);  // one batch's gradient, into the group's
  bool optimizerStep(int64_t e);  // the group's step: clipping, optimizer, log, checkpoint policy
  void logStep(int64_t step, int64_t e, double gradNorm);
  void writeLogLine(const std::string& line);  // to the log file and TrainOptions::onLogLine
  void endEpoch(int64_t e, int64_t batches, double epochStart, int64_t samplesBefore);
  void evaluateTest(int64_t e);
  void evaluateVal(int64_t e);
  double selectedValue(const std::vector<TaskResult>& val) const;
  void printBest();
  // ---- checkpoints
  TrainPosition position() const;
  void checkpoint();
  // ---- finish
  TrainReport finish();

  const ModelSpec& spec_;
  const TrainOptions& opt_;
  std::ostream& out_;
  const TrainSpec& ts_;
  const int64_t T_;

  // What start decides, in the order it is made (members are destroyed in reverse).
  std::optional<TensorFile> resumeFile_;
  std::optional<TrainPosition> resumed_;
  uint64_t seed_ = 0;
  int64_t epochs_ = 0;
  Dataset loadedTrain_, loadedTest_;         // the program's sources (unless the options give data)
  const Dataset& trainData_;
  const Dataset& testData_;
  bool root_ = true, hasTest_ = false, hasVal_ = false;
  Dataset valData_;
  std::optional<ThreadPool> pool_;
  std::optional<ScopedFlushDenormals> flush_;
  std::unique_ptr<Weighting> weighting_;
  Arena params_, grads_, taskGrads_;
  float* grad_ = nullptr;  // the gradient arena: grads_, or the communicator's shared one
  Arena accum_;  // accumulate N > 1: the group's Σ grads / N (the optimizer's gradient)
  std::optional<Workspace> ws_;
  std::optional<Optimizer> optimizer_;
  std::vector<std::pair<int64_t, int64_t>> activeSpans_;
  std::string initNote_;
  std::vector<std::string> initLines_, freshNames_;
  std::ofstream log_;
  std::unique_ptr<StepLogLine> stepLine_;  // the log's step record, refilled every step

  // The loop and where it stands (a checkpoint saves this position).
  std::optional<Batcher> batcher_;
  std::optional<BatchKernels> kernels_;
  std::optional<DataParallelKernels> parallel_;  // more than one rank: the global batch's results
  std::optional<Progress> progress_;
  std::vector<MetricAccumulator> trainAcc_;
  TrainReport report_;
  double loopSeconds_ = 0;
  int64_t samplesSeen_ = 0;
  bool stop_ = false;
  int64_t firstEpoch_ = 0;
  double totalSum_ = 0;  // the epoch's Σ total·n, samples and batches so far (saved in checkpoints)
  int64_t epochSamples_ = 0, batchesDone_ = 0, epoch_ = 0;
  double epochLr_ = 0;       // the schedule's learning rate for this epoch (Schedule.h)
  // The group of batches of the step in progress (accumulate): its batches, Σ totals, Σ task
  // losses and the last batch's weights (what logStep writes).
  int64_t groupBatches_ = 0;
  double groupTotal_ = 0;
  std::vector<float> groupLosses_, groupWeights_;
  bool epochEnded_ = false;  // the epoch's end (weighting, evaluation) ran: the next one starts fresh
  // Validation (Trainer.h): the best selected value so far, its epoch and the epochs since.
  double bestValue_ = 0;
  int64_t bestEpoch_ = 0, badEpochs_ = 0;
  bool validated_ = false;  // an epoch was validated: the position saves the three above
  std::unique_ptr<StopSignals> signals_;
};

}  // namespace mtlc::rt
