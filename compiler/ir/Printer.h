// Text form of the graph IR (`mtlc --emit=ir`): one line per node, SSA names %N, then the outputs.
#pragma once

#include "IR.h"

#include <functional>
#include <ostream>
#include <string>

namespace mtlc::ir {

// Text appended to a node's line ("" for none); `--emit=ir-opt` marks fusion groups this way.
using NodeNote = std::function<std::string(const Function &, const Node &)>;

void print(const Module &m, std::ostream &os, const NodeNote &note = {});
void print(const Module &m, const Function &f, std::ostream &os, const NodeNote &note = {});

}  // namespace mtlc::ir
