// The pass pipeline over the graph IR. One file per pass:
//   fold-constants  FoldConstants.cpp         x·1, x+0, const∘const (loss weights into the gradient seeds)
//   cse             CommonSubexpressions.cpp  identical nodes merged
//   siblings        SiblingProducts.cpp       products of one input through adjacent weights as one
//   dce             DeadCode.cpp              nodes no output needs dropped
//   fusion          Fusion.cpp                nodes grouped into single kernels (a plan, not a rewrite)
// and one list, Pipeline.cpp, that orders them. Each rewrite changes one function in place and
// says whether it changed anything; runGraphPasses runs the rewrites once per function and, when
// asked (tests), runs the IR verifier after every pass. Fusion and the memory plan run last, once,
// in scheduleModule (Schedule.h), whose product codegen, the AOT build and the summary read.
// `--emit=ir-opt` prints the rewrites' result with the fusion groups marked.
//
// Settings: `-O0` turns every pass off, `--disable-pass=NAME` one of them (PassSettings).
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
// Sibling products whose weights lie back to back in the arena become one product over the span
// (SiblingProducts.cpp).
bool fuseSiblingProducts(const ir::Module &m, ir::Function &f);

struct GraphPass {
  const char *name;
  bool (*run)(const ir::Module &, ir::Function &);
};

// The rewrites in order: folding exposes common subexpressions, which shows siblings their one
// input; all of them leave dead nodes behind.
const std::vector<GraphPass> &graphPasses();

// The fusion planner's name in the pipeline (it runs after the rewrites, in scheduleModule).
inline constexpr const char *kFusionPass = "fusion";

// Every pass name, in pipeline order: the rewrites, then "fusion".
std::vector<std::string> passNames();

// Which passes run.
struct PassSettings {
  bool optimize = true;               // false (-O0): none of them
  std::vector<std::string> disabled;  // --disable-pass names (checked by checkPassNames)
  bool runs(const std::string &name) const;
};

// "" when every name is a pass; else a message naming the first unknown one and listing the
// known ones: "unknown pass 'cs' (known: fold-constants, cse, siblings, dce, fusion)".
std::string checkPassNames(const std::vector<std::string> &names);

// Runs every rewrite that `settings` enables on every function. With verifyEach, throws
// ir::IRError naming the pass after which the verifier first found a problem.
void runGraphPasses(ir::Module &m, const PassSettings &settings, bool verifyEach = false);
// All of them.
void runGraphPasses(ir::Module &m, bool verifyEach = false);

}  // namespace mtlc::passes
