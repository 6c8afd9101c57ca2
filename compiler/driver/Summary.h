// What `mtlc MODEL.mtl` prints after a successful compile.
#pragma once

#include "Pipeline.h"

#include <cstdint>
#include <ostream>

namespace mtlc::driver {

// The learnable parameters: the elements of every parameter tensor the optimizer updates (not
// those of a `freeze`d block, nor the arena's alignment padding).
int64_t learnableParameters(const rt::ModelSpec &spec);

void printSummary(const CheckedProgram &checked, const CompiledProgram &compiled, std::ostream &os);

}  // namespace mtlc::driver
