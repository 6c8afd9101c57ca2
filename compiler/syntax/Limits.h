// The front end's limits on program size, in one place (README, "Limits", lists them). Each is
// checked before anything of that size is allocated, and reported as a located error: a program
// past one of them is a mistake (or hostile input), never a reason to crash or exhaust memory.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mtlc::limits {

// A .mtl file: read and parsed only up to this size (the examples are under 2 KiB).
constexpr size_t kMaxProgramBytes = size_t{1} << 20;  // 1 MiB

// Errors: syntax errors reported before the parser gives up; errors rendered (the rest counted).
constexpr int kMaxSyntaxErrors = 20;

// Declarations: tasks in one model (each is a head, a loss and a label column).
constexpr int64_t kMaxTasks = 256;

// Any one dimension, count or per-sample size (int32 range: also what the data loaders index with).
constexpr int64_t kMaxDim = 2147483647;

// Learnable parameters of the whole model: 2^28 floats = 1 GiB, 4 GiB with the gradients and
// Adam's two moments.
constexpr int64_t kMaxParams = int64_t{1} << 28;

// Values of one training step's forward activations, batch x the per-sample outputs of the inputs
// and of every layer: 2^31 floats = 8 GiB (the backward pass needs as much again).
constexpr int64_t kMaxStepValues = int64_t{1} << 31;

}  // namespace mtlc::limits
