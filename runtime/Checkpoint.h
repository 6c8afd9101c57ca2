// Checkpoints: a model's parameters (named as PyTorch's nn.Sequential names them, ParamSpec::name,
// with PyTorch shapes), optionally followed by optimizer state under `optim.` (Optimizer.h), in one
// safetensors file. Metadata: format = "mtlc", model = spec.name, optimizer = sgd|adam (when state
// is saved), steps = optimizer steps taken.
#pragma once

#include "runtime/ModelSpec.h"
#include "runtime/Optimizer.h"

#include <string>

namespace mtlc::rt {

void saveCheckpoint(const std::string& path, const ModelSpec& spec, const float* params,
                    Optimizer* optimizer = nullptr);

// Fills params from the file. Every ParamSpec must be present with its exact shape (the Error
// names the tensor and both shapes). Tensors under `optim.` or `mtl.` are ignored here; any other
// tensor that is not a parameter of this model is an Error (it means a different model). Nothing
// is written to params unless the whole file fits.
void loadParams(const std::string& path, const ModelSpec& spec, float* params);

// Restores optimizer state saved by saveCheckpoint when the file has all of it for this
// optimizer's kind and size; returns false (state untouched) when the file has none or another
// optimizer's. A state tensor with the wrong size is an Error.
bool loadOptimizerState(const std::string& path, Optimizer& optimizer);

}  // namespace mtlc::rt
