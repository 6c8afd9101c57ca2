// Where NaN or Inf first appeared when a training step went wrong. The trainer sees a loss (or a
// gradient norm) that is not finite; this says which tensor of the step produced it, so a user can
// tell an exploding layer from a log of zero or bad data.
//
// How: on the first call, the module is compiled once more without fusion and without LLVM's
// pipeline (fast to build, one kernel per node), with a hook after every kernel
// (codegen::CodegenOptions::nodeHook). The failing entry point runs again on the same arguments
// (its own activation arena; the parameters and batch are the step's, unchanged), and the first
// node in execution order whose values hold a non-finite number is reported with its op, layer,
// shape, operands, and the sample and element where it appeared.
#pragma once

#include "ir/IR.h"
#include "spec/abi.h"

#include <functional>
#include <string>

namespace mtlc::driver {

// `m` must outlive the returned function.
std::function<std::string(const char *entry, const mtlc_args &args)> makeNonFiniteLocator(const ir::Module &m);

}  // namespace mtlc::driver
