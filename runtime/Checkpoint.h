// Checkpoints: a model's parameters (named as PyTorch's nn.Sequential names them, ParamSpec::name,
// with PyTorch shapes), optionally followed by optimizer state under `optim.` (Optimizer.h) and the
// loss weighting's state under `mtl.` (Weighting.h), in one safetensors file. Metadata: format =
// "mtlc", model = spec.name, tasks = the task names joined by commas, weighting = the strategy,
// optimizer = sgd|adam (when state is saved), steps = optimizer steps taken.
#pragma once

#include "runtime/ModelSpec.h"
#include "runtime/Optimizer.h"
#include "runtime/SafeTensors.h"

#include <string>
#include <vector>

namespace mtlc::rt {

class Weighting;

void saveCheckpoint(const std::string& path, const ModelSpec& spec, const float* params,
                    Optimizer* optimizer = nullptr, Weighting* weighting = nullptr);

// Fills params from the file. Every ParamSpec must be present with its exact shape (the Error
// names the tensor and both shapes). Tensors under `optim.` or `mtl.` are ignored here; any other
// tensor that is not a parameter of this model is an Error (it means a different model). Nothing
// is written to params unless the whole file fits.
void loadParams(const std::string& path, const ModelSpec& spec, float* params);

// What `--init` did (loadMatchingParams).
struct InitReport {
  std::vector<std::string> loaded;  // "trunk.0.weight [8, 3]", in spec.params order
  std::vector<std::string> fresh;   // "c.0.weight [1, 8] (not in the checkpoint)",
                                    // "x.0.weight (checkpoint [1, 4], model [1, 3])"
  std::vector<std::string> freshNames;  // just the names of `fresh`
  std::vector<std::string> unused;  // checkpoint tensors (not optim./mtl.) that no parameter took
  bool complete() const { return fresh.empty(); }
};

// Transfer: copies every tensor of the file whose name AND shape match a parameter of the model;
// leaves the other parameters as they are (the caller initialised them). An Error naming the file
// when nothing matches.
InitReport loadMatchingParams(const TensorFile& file, const std::string& path, const ModelSpec& spec,
                              float* params);

// Restores optimizer state saved by saveCheckpoint when the file has all of it for this
// optimizer's kind and size; returns false (state untouched) when the file has none or another
// optimizer's. A state tensor with the wrong size is an Error.
bool loadOptimizerState(const std::string& path, Optimizer& optimizer);
bool loadOptimizerState(const TensorFile& file, const std::string& path, Optimizer& optimizer);

// Restores the weighting's `mtl.` state when the file was saved by the same strategy for the same
// tasks (metadata `weighting`, `tasks`) and holds every state tensor with its exact shape; returns
// false (state untouched) otherwise. Always true for a strategy without state.
bool loadWeightingState(const TensorFile& file, const ModelSpec& spec, Weighting& weighting);

}  // namespace mtlc::rt
