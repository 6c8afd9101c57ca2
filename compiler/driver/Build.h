// `mtlc build MODEL.mtl -o DIR`: compile a model ahead of time into DIR/<model>.o and the C99
// header DIR/<model>.h (compiler/aot/Aot.h), and write the embed runtime next to them
// (mtlc_embed.h, and DIR/lib<model>.a = the object and the runtime), so that a program embeds the
// model with DIR alone: `cc -std=c99 -I DIR main.c DIR/lib<model>.a -lm`. See docs/embedding.md.
#pragma once

#include "Options.h"

namespace mtlc::driver {

// Returns the exit status (0, 1 for errors in the program or a file, 2 for a bad option).
int runBuild(const Options &o);

}  // namespace mtlc::driver
