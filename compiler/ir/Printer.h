// Text form of the graph IR (`mtlc --emit=ir`): one line per node, SSA names %N, then the outputs.
#pragma once

#include "IR.h"

#include <ostream>

namespace mtlc::ir {

void print(const Module &m, std::ostream &os);
void print(const Module &m, const Function &f, std::ostream &os);

}  // namespace mtlc::ir
