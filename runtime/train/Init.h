// Parameter initialisation, PyTorch's defaults, deterministic from a seed.
#pragma once

#include "spec/ModelSpec.h"

#include <cstdint>

namespace mtlc::rt {

// Fills params[0 .. spec.paramCount) parameter by parameter, in spec.params order, from one
// std::mt19937_64(seed) stream:
//   UniformFanIn: bound = 1/sqrt(fanIn); each element = −bound + 2·bound·u, u = uniform01(rng)
//                 (Rng.h). This is the distribution of nn.Linear / nn.Conv2d weights
//                 (kaiming_uniform with a = sqrt(5) gives bound = sqrt(6/((1+5)·fanIn)) = 1/sqrt(fanIn))
//                 and biases; the numbers themselves differ from torch's generator.
//   Normal:       N(0, 1) by Box–Muller (Rng.h standardNormal): nn.Embedding's weight.
//   CrossStitch:  a [T, T] mixing matrix (T = shape[0]): 0.9 on the diagonal, 0.1/(T−1) elsewhere,
//                 so each task starts mostly from its own column (T = 1: the single entry is 1).
//   Ones, Zeros:  constants (no draws).
// Elements of the arena not covered by any ParamSpec are left as they are.
void initParams(const ModelSpec& spec, uint64_t seed, float* params);

}  // namespace mtlc::rt
