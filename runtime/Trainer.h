// The training loop: data → batches → spec.trainStep → optimizer, with evaluation, logging,
// progress and checkpoints. Everything the compiled kernels do not do themselves.
//
// Seeds: with s = TrainOptions::seed or else spec.train.seed,
//   initial parameters  initParams(spec, s)                       (Init.h)
//   epoch e's shuffle   Fisher–Yates from mt19937_64(s + e), e = 0 for the first epoch (Batcher.h)
//   dropout of step k   mtlc_args::seed = mix64(mix64(s) ^ k), k = 1 for the first step (Rng.h)
//
// Loss weights (mtlc_args::loss_weights): `weighting fixed` → TaskSpec::weight; `uniform` → 1/T.
//
// Stopping: after `epochs` epochs (TrainOptions::epochs, or spec.train.epochs when −1), or earlier
// after `steps` optimizer steps when TrainOptions::steps ≥ 0 (mid-epoch; the test evaluation and
// the checkpoint still happen).
//
// `--init FILE` loads the parameters (all of them, exact shapes) and, when the file holds state
// for the same optimizer, the optimizer state too, so a saved run continues where it stopped.
//
// Log (`--log FILE`): JSON lines, one per optimizer step
//   {"step": 1, "epoch": 1, "loss": <total>, "tasks": {"<task>": {"loss": <L_i>, "weight": <w_i>}}}
// and, after each epoch when there is a test source,
//   {"epoch": 1, "test": {"<task>": {"loss": <L>, "<metric>": <value>, ...}}}
// (a metric that does not apply is null).
//
// Train metrics in the report are running values over the last epoch (as Keras shows them): the
// parameters change while they are gathered. They use the outputs that trainStep writes to
// mtlc_args::outputs; if a trainStep leaves them untouched, only the loss is reported.
//
// Contract with the kernels: trainStep writes losses (T + 1: each task's batch mean, then the
// weighted total) and the whole grads arena; evalStep writes losses and outputs and touches
// neither params nor grads (it is given grads = nullptr).
#pragma once

#include "runtime/Dataset.h"
#include "runtime/ModelSpec.h"

#include <cstdint>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace mtlc::rt {

struct TrainOptions {
  int64_t epochs = -1;          // -1: spec.train.epochs
  int64_t steps = -1;           // stop after this many optimizer steps (-1: no limit)
  std::string initPath, savePath, logPath;
  std::optional<uint64_t> seed; // overrides spec.train.seed
  std::map<std::string, std::string> dataOverrides;  // "train"/"test" -> path (sourceFromPath)
  bool quiet = false;           // no progress display
};

struct TaskResult {
  std::string task;
  std::map<std::string, double> metrics;  // "loss", "accuracy", "auc", "mse", "mae"
};

struct TrainReport {
  int64_t steps = 0;             // optimizer steps taken in this run
  double seconds = 0;            // time in the training loop (without loading and evaluation)
  double samplesPerSec = 0;
  std::vector<TaskResult> test;  // after the last epoch; empty without a test source
  std::vector<TaskResult> train; // running values over the last epoch
};

TrainReport train(const ModelSpec& spec, const TrainOptions& options, std::ostream& out);

// Runs spec.evalStep over the whole dataset in file order, in batches of spec.maxBatch.
std::vector<TaskResult> evaluate(const ModelSpec& spec, const float* params, const Dataset& data);

// Loads the "train" or "test" source of spec.data (or the override path for it), binds it and
// checks its labels against the tasks; the buffers are in model input / task order.
Dataset loadSplit(const ModelSpec& spec, const std::string& split,
                  const std::map<std::string, std::string>& overrides = {});

// The per-task loss weights passed to the kernels (see above).
std::vector<float> lossWeights(const ModelSpec& spec);

}  // namespace mtlc::rt
