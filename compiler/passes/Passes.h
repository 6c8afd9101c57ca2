// The graph passes and the one list that orders them. Each pass rewrites one function in place
// and says whether it changed anything; the pipeline runs the list once per function and, when
// asked (tests, `--verify-each`), runs the IR verifier after every pass.
//
// Fusion is not a rewrite: planFusion (Fusion.h) groups nodes for codegen and runs after these.
#pragma once

#include "ir/IR.h"

#include <string>
#include <vector>

namespace mtlc::passes {

// x*1, 1*x, x+0, const∘const → folded; returns true if the function changed.
bool foldConstants(ir::Function &f);
// Two nodes with the same op, operands and attributes become one.
bool eliminateCommonSubexpressions(ir::Function &f);
// Nodes no output depends on are dropped.
bool eliminateDeadCode(ir::Function &f);

struct GraphPass {
  const char *name;
  bool (*run)(ir::Function &);
};

// In order: folding exposes common subexpressions, and both leave dead nodes behind.
inline const std::vector<GraphPass> &graphPasses() {
  static const std::vector<GraphPass> list = {
      {"fold-constants", foldConstants},
      {"cse", eliminateCommonSubexpressions},
      {"dce", eliminateDeadCode},
  };
  return list;
}

// Runs every pass on every function. With verifyEach, throws ir::IRError naming the pass after
// which the verifier first found a problem.
void runGraphPasses(ir::Module &m, bool verifyEach = false);

}  // namespace mtlc::passes
