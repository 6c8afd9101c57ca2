// Parameter initialisation, PyTorch's defaults, deterministic from a seed: the one implementation,
// used by the trainer (train/Init, per ModelSpec) and the embedded runtime (per bundle description).
#pragma once

#include "runtime/core/Rng.h"
#include "spec/Init.h"

#include <cstdint>

namespace mtlc::core {

// Fills w[0, size) for one parameter, drawing from `rng` (shared by all parameters, in table order):
//   UniformFanIn: bound = 1/sqrt(fanIn); each element = −bound + 2·bound·u, u = uniform01(rng)
//                 (Rng.h). This is the distribution of nn.Linear / nn.Conv2d weights
//                 (kaiming_uniform with a = sqrt(5) gives bound = sqrt(6/((1+5)·fanIn)) = 1/sqrt(fanIn))
//                 and biases; the numbers themselves differ from torch's generator.
//   Normal:       N(0, 1) by Box–Muller (Rng.h standardNormal): nn.Embedding's weight.
//   Uniform:      as UniformFanIn with the given `bound` (DSelect-k's gate parameters, LibMTL's
//                 uniform_(−γ/100, γ/100) and uniform_(−0.05, 0.05)).
//   CrossStitch:  a [T, T] mixing matrix (T = rows): 0.9 on the diagonal, 0.1/(T−1) elsewhere,
//                 so each task starts mostly from its own column (T = 1: the single entry is 1).
//   Ones, Zeros:  constants (no draws).
// Returns false, writing nothing, when a cross-stitch matrix does not have rows × rows elements.
bool initTensor(rt::Init init, float *w, int64_t size, int64_t fanIn, int64_t rows, rt::Rng &rng,
                double bound = 0);

}  // namespace mtlc::core
