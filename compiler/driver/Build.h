// `mtlc build MODEL.mtl -o DIR`: compile a model ahead of time into DIR/<model>.o and the C99
// header DIR/<model>.h (compiler/aot/Aot.h), for programs that embed it without LLVM.
#pragma once

#include "Options.h"

namespace mtlc::driver {

// Returns the exit status (0, 1 for errors in the program or a file, 2 for a bad option).
int runBuild(const Options &o);

}  // namespace mtlc::driver
