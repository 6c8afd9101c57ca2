// `mtlc repl [MODEL.mtl]`: the interactive session (ReplSession.h, ReplCommands.cpp,
// ReplLineEditor.h). On a terminal: prompts, line editing, history in ~/.mtlc_history
// ($MTLC_HISTORY overrides), tab completion. Otherwise a script: no prompts, no colours, and the
// exit status is 1 when any line failed.
#pragma once

#include <string>

namespace mtlc::driver {

// `color`: auto | always | never. Returns the exit status.
int runRepl(const std::string &file, const std::string &color, bool optimize);

}  // namespace mtlc::driver
