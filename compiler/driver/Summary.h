// What `mtlc MODEL.mtl` prints after a successful compile.
#pragma once

#include "Pipeline.h"

#include <ostream>

namespace mtlc::driver {

void printSummary(const CheckedProgram &checked, const CompiledProgram &compiled, std::ostream &os);

}  // namespace mtlc::driver
