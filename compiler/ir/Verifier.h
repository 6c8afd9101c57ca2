// Structural checks of the graph IR, run after every pass in tests: operands defined before use,
// arities, leaf indices within the module's tables, output types. Returns the problems found.
#pragma once

#include "IR.h"

#include <string>
#include <vector>

namespace mtlc::ir {

std::vector<std::string> verify(const Module &m);
std::vector<std::string> verify(const Module &m, const Function &f);

}  // namespace mtlc::ir
