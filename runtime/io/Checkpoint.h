// Checkpoints: a model's parameters (named as PyTorch's nn.Sequential names them, ParamSpec::name,
// with PyTorch shapes), optionally followed by optimizer state under `optim.` (Optimizer.h) and the
// loss weighting's state under `mtl.` (Weighting.h), in one safetensors file. Metadata: format =
// "mtlc", model = spec.name, tasks = the task names joined by commas, weighting = the strategy,
// optimizer = sgd|adam (when state is saved), steps = optimizer steps taken; and, for a checkpoint
// the trainer wrote, where the run stood (TrainPosition) under `train.`.
//
// Files are written atomically (SafeTensors.h: a temporary file, fsync, rename, fsync of the
// folder), so a crash or SIGKILL at any moment leaves the previous checkpoint or the new one.
#pragma once

#include "runtime/train/Metrics.h"
#include "spec/ModelSpec.h"
#include "runtime/train/Optimizer.h"
#include "runtime/io/SafeTensors.h"

#include <optional>
#include <string>
#include <vector>

namespace mtlc::rt {

class Weighting;

// Where a training run stands between two optimizer steps. With the parameters, optimizer and
// weighting state it is everything a resumed run needs to continue bit-exactly: epoch e's shuffle
// and step k's dropout seed are functions of the seed (Trainer.h), so the data position is the
// epoch and the batches done in it. Saved as metadata `train.*` (numbers in shortest round-trip
// decimal form) and, for the AUC's scores, tensors `train.acc.<task>.scores|positive`.
struct TrainPosition {
  uint64_t seed = 0;
  int64_t step = 0;        // optimizer steps taken
  int64_t epoch = 0;       // the epoch in progress, 0-based (the epoch count when the run ended)
  int64_t batch = 0;       // batches of that epoch done
  int64_t batchSize = 0;   // the training set it ran on, so a resumed run refuses another one
  int64_t rows = 0;
  double lossSum = 0;      // Σ total loss · n over the epoch's steps so far
  int64_t samples = 0;     // samples of the epoch so far
  std::vector<MetricAccumulator::State> tasks;  // the epoch's running metrics, in task order
  // Validation (metadata `train.best`, written once an epoch was validated): the best epoch
  // (1-based, 0: none), its selected value and the epochs since without a better one.
  int64_t bestEpoch = 0, badEpochs = 0;
  double bestValue = 0;
  bool validated = false;
};

void saveCheckpoint(const std::string& path, const ModelSpec& spec, const float* params,
                    Optimizer* optimizer = nullptr, Weighting* weighting = nullptr,
                    const TrainPosition* position = nullptr);

// The position a trainer saved, nullopt when the file has none. An Error naming the file when it
// is malformed or does not fit the model's tasks.
std::optional<TrainPosition> loadTrainPosition(const TensorFile& file, const std::string& path,
                                               const ModelSpec& spec);

// Tensors that hold state rather than parameters: `optim.`, `mtl.` and `train.` prefixes.
bool isStateTensor(const std::string& name);

// Fills params from the file. Every ParamSpec must be present with its exact shape (the Error
// names the tensor and both shapes). State tensors (isStateTensor) are ignored here; any other
// tensor that is not a parameter of this model is an Error (it means a different model). Nothing
// is written to params unless the whole file fits.
void loadParams(const std::string& path, const ModelSpec& spec, float* params);
void loadParams(const TensorFile& file, const std::string& path, const ModelSpec& spec, float* params);

// What `--init` did (loadMatchingParams).
struct InitReport {
  std::vector<std::string> loaded;  // "trunk.0.weight [8, 3]", in spec.params order
  std::vector<std::string> fresh;   // "c.0.weight [1, 8] (not in the checkpoint)",
                                    // "x.0.weight (checkpoint [1, 4], model [1, 3])"
  std::vector<std::string> freshNames;  // just the names of `fresh`
  std::vector<std::string> unused;  // checkpoint tensors (not state) that no parameter took
  bool complete() const { return fresh.empty(); }
};

// Transfer: copies every tensor of the file whose name AND shape match a parameter of the model;
// leaves the other parameters as they are (the caller initialised them). An Error naming the file
// when nothing matches.
InitReport loadMatchingParams(const TensorFile& file, const std::string& path, const ModelSpec& spec,
                              float* params);

// Restores optimizer state saved by saveCheckpoint when the file has all of it for this
// optimizer's kind and size; returns false (state untouched) when the file has none or another
// optimizer's. A state tensor with the wrong size is an Error. Arena-sized arrays are in the file
// in the table's order (core::arenaToTableOrder) and land in `spec`'s arena order.
bool loadOptimizerState(const std::string& path, const ModelSpec& spec, Optimizer& optimizer);
bool loadOptimizerState(const TensorFile& file, const std::string& path, const ModelSpec& spec, Optimizer& optimizer);

// Restores the weighting's `mtl.` state when the file was saved by the same strategy for the same
// tasks (metadata `weighting`, `tasks`) and holds every state tensor with its exact shape; returns
// false (state untouched) otherwise. Always true for a strategy without state.
bool loadWeightingState(const TensorFile& file, const ModelSpec& spec, Weighting& weighting);

}  // namespace mtlc::rt
