// Parameter initialisation, PyTorch's defaults, deterministic from a seed.
#pragma once

#include "spec/ModelSpec.h"

#include <cstdint>

namespace mtlc::rt {

// Fills params[0 .. spec.paramCount) parameter by parameter, in spec.params order, from one
// std::mt19937_64(seed) stream, each by core::initTensor (runtime/core/Init.h has the rules).
// Elements of the arena not covered by any ParamSpec are left as they are.
void initParams(const ModelSpec& spec, uint64_t seed, float* params);

}  // namespace mtlc::rt
