// Positions in a .mtl source, carried from the parse tree into the AST and the typed model so that
// every later error can point at the line and column it is about.
#pragma once

#include <cstdint>

namespace mtlc {

struct SourceLoc {
  int line = 0;    // 1-based; 0 = unknown
  int column = 0;  // 1-based
};

struct SourceRange {
  SourceLoc begin, end;  // end is inclusive (the last character of the construct)
};

}  // namespace mtlc
